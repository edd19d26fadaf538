package batcher

import "sync"

// flushGroup is the Flushes that wait for one batch: those whose entries
// may be in it, and those that came when it was the last batch queued. They
// sleep on cond, broadcast when the batch has been through the output (or,
// to make them look again, when the output's state changes). Groups are
// reused, so that a Flush allocates nothing.
type flushGroup struct {
	queued   bool   // the batch is queued, as seq (or was sealed empty)
	seq      uint64 // the batch's sequence, once queued
	finished bool   // the batch is done; the group goes back to the pool when no Flush is left in it
	flushes  int    // Flushes in the group
	cond     sync.Cond
}

// newGroupLocked takes a group from the pool, or makes one.
func (e *engine[E, P]) newGroupLocked() *flushGroup {
	n := len(e.groupPool)
	if n == 0 {
		g := &flushGroup{}
		g.cond.L = &e.mu
		return g
	}
	g := e.groupPool[n-1]
	e.groupPool[n-1] = nil
	e.groupPool = e.groupPool[:n-1]
	return g
}

// putGroupLocked returns a finished group, which no Flush is in, to the pool.
func (e *engine[E, P]) putGroupLocked(g *flushGroup) {
	g.queued, g.seq, g.finished = false, 0, false
	e.groupPool = append(e.groupPool, g)
}

// flushGroupLocked returns the group the caller's Flush waits with, and
// counts the caller in it, or returns nil if there is nothing to wait for.
// If the current batch takes entries and holds some, or a producer is
// sealing it, the caller's entries may be in it: the Flush waits for it
// (the open group). Otherwise it waits for the last batch queued, if it is
// not done.
func (e *engine[E, P]) flushGroupLocked() *flushGroup {
	c := P(e.cur.Load())
	l := c.ln()
	v := l.tail.Load()
	queued := l.queued == l.gen && l.sealed.Load()
	var g *flushGroup
	switch n := len(e.groups); {
	case c != e.closedL && !queued && (!c.open(v) || v != 0):
		if e.openGroup == nil {
			e.openGroup = e.newGroupLocked()
		}
		g = e.openGroup
	case e.doneSeq >= e.sealedSeq:
		return nil // everything queued is done
	case n > 0 && e.groups[n-1].seq == e.sealedSeq:
		g = e.groups[n-1]
	default:
		g = e.newGroupLocked()
		g.queued, g.seq = true, e.sealedSeq
		e.groups = append(e.groups, g)
	}
	g.flushes++
	return g
}

// leaveGroupLocked counts a Flush out of g.
func (e *engine[E, P]) leaveGroupLocked(g *flushGroup) {
	g.flushes--
	if g.flushes == 0 && g.finished {
		e.putGroupLocked(g)
	}
}

// queueOpenGroupLocked moves the Flushes waiting for the current batch to
// the batch queued as seq: the current batch, just sealed, or, if it held
// no entry, the last batch before it.
func (e *engine[E, P]) queueOpenGroupLocked(seq uint64) {
	g := e.openGroup
	if g == nil {
		return
	}
	e.openGroup = nil
	g.queued, g.seq = true, seq
	e.groups = append(e.groups, g)
}

// releaseOpenGroupLocked is for a current batch sealed with no entry: the
// Flushes waiting for it wait for what was queued before it, and are done
// if that is.
func (e *engine[E, P]) releaseOpenGroupLocked() {
	if e.openGroup != nil {
		e.queueOpenGroupLocked(e.sealedSeq)
		e.finishGroupsLocked()
	}
}

// finishGroupsLocked wakes the Flushes whose batch is done.
func (e *engine[E, P]) finishGroupsLocked() {
	n := 0
	for _, g := range e.groups {
		if g.seq > e.doneSeq {
			break
		}
		g.finished = true
		if g.flushes == 0 { // every Flush in it left (OutputFailing)
			e.putGroupLocked(g)
		} else {
			g.cond.Broadcast()
		}
		n++
	}
	if n > 0 {
		clear(e.groups[:n])
		e.groups = append(e.groups[:0], e.groups[n:]...)
	}
}

// wakeFlushesLocked wakes every waiting Flush to look at the engine's state
// again (OutputFailing).
func (e *engine[E, P]) wakeFlushesLocked() {
	for _, g := range e.groups {
		g.cond.Broadcast()
	}
	if e.openGroup != nil {
		e.openGroup.cond.Broadcast()
	}
}
