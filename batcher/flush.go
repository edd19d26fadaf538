package batcher

// flushGroup is the Flushes that wait for one batch: those whose entries
// may be in it, and those that came when it was the last batch queued. They
// sleep on wake, which is closed when the batch has been through the output
// (or, to make them look again, when the output's state changes).
type flushGroup struct {
	queued bool   // the batch is queued, as seq (or was sealed empty)
	seq    uint64 // the batch's sequence, once queued
	wake   chan struct{}
}

// flushGroupLocked returns the group the caller's Flush waits with. If the
// current batch takes entries and holds some, or a producer is sealing it,
// the caller's entries may be in it: the Flush waits for it (the open
// group). Otherwise it waits for the last batch queued, if it is not done.
func (e *engine[E, P]) flushGroupLocked() *flushGroup {
	c := P(e.cur.Load())
	l := c.ln()
	v := l.tail.Load()
	queued := l.queued == l.gen && l.sealed.Load()
	if c != e.closedL && !queued && (!c.open(v) || v != 0) {
		if e.openGroup == nil {
			e.openGroup = &flushGroup{wake: make(chan struct{})}
		}
		return e.openGroup
	}
	if n := len(e.groups); n > 0 && e.groups[n-1].seq == e.sealedSeq {
		return e.groups[n-1]
	}
	g := &flushGroup{queued: true, seq: e.sealedSeq, wake: make(chan struct{})}
	if e.doneSeq < g.seq {
		e.groups = append(e.groups, g)
	}
	return g
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

// finishGroupsLocked wakes the Flushes whose batch is done.
func (e *engine[E, P]) finishGroupsLocked() {
	n := 0
	for _, g := range e.groups {
		if g.seq > e.doneSeq {
			break
		}
		close(g.wake)
		n++
	}
	if n > 0 {
		clear(e.groups[:n])
		e.groups = append(e.groups[:0], e.groups[n:]...)
	}
}

// wakeFlushesLocked wakes every waiting Flush to look at the engine's state
// again (OutputFailing): each group gets a fresh channel to sleep on.
func (e *engine[E, P]) wakeFlushesLocked() {
	for _, g := range e.groups {
		g.rewake()
	}
	if e.openGroup != nil {
		e.openGroup.rewake()
	}
}

// rewake wakes the group's Flushes and gives it a fresh channel.
func (g *flushGroup) rewake() {
	close(g.wake)
	g.wake = make(chan struct{})
}
