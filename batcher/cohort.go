package batcher

import (
	"runtime"
	"sync/atomic"
	_ "unsafe" // for go:linkname
)

// procPin and procUnpin give the id of the P (the scheduler's processor)
// the calling goroutine runs on. The runtime keeps them linkable on purpose
// for packages like this one (see go.dev/issue/67401).
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// cohortYields is how many times a producer on a core that does not own the
// claim counter yields before it takes the counter over.
const cohortYields = 3

// cohort keeps producers on one core at a time, in runs, so that the cache
// line holding a buffer's tail stays on one core for many claims instead of
// moving between cores on every claim (on two cores a move costs more than
// the whole claim). It is a hint only: claims are atomic and correct
// whatever the cohort says.
//
// The owner field is read on every claim and written only when ownership
// moves, so in the common case it sits in every core's cache, shared.
//
// The cohort is switched on only while producers contend: a producer that
// finds an earlier claim of its batch not yet committed marks the batch
// contended, and the output goroutine turns the cohort on or off after each
// batch. A lone producer never pays for it.
type cohort struct {
	_      [64]byte
	owner  atomic.Int32 // 1 + the P id of the owning core
	active atomic.Bool  // producers contended recently
	_      [59]byte
	clean  int  // batches in a row without contention; output goroutine only
	off    bool // WithCohort(false): never switched on
}

// cohortCooldown is how many batches in a row must see no contention before
// the cohort is switched off. With the cohort on, producers rarely collide,
// so a single clean batch says little.
const cohortCooldown = 64

// sawBatch records whether the batch just output saw contention. Only the
// output goroutine calls it.
func (c *cohort) sawBatch(contended bool) {
	if c.off {
		return
	}
	if contended {
		c.clean = 0
		if !c.active.Load() {
			c.active.Store(true)
		}
		return
	}
	if c.clean++; c.clean >= cohortCooldown && c.active.Load() {
		c.active.Store(false)
	}
}

// enter returns once the calling producer may claim: its core owns the
// cohort, or it has waited its turn.
func (c *cohort) enter() {
	if c.active.Load() {
		c.wait()
	}
}

func (c *cohort) wait() {
	me := int32(procPin()) + 1
	procUnpin()
	if c.owner.Load() == me {
		return
	}
	for range cohortYields {
		runtime.Gosched()
		me = int32(procPin()) + 1
		procUnpin()
		if c.owner.Load() == me {
			return
		}
	}
	c.owner.Store(me)
}
