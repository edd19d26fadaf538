package batcher

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// lane is the state every batch buffer shares: the claim counter, the commit
// marks, and the bookkeeping the engine does under its mutex.
//
// A buffer's tail only grows while the buffer is current. The one claim that
// takes the tail from "open" to "not open" is the buffer's sealer of record:
// it queues the buffer for output and installs the next one. An external
// seal (timer, Flush, Close) does the same with a compare-and-swap that adds
// sealMark, so that exactly one party ever seals a given generation.
type lane struct {
	_    [64]byte // keep tail off the cache line of whatever precedes it
	tail atomic.Uint64
	// written counts the entries of the current generation that their
	// producers have finished copying in. It shares tail's cache line on
	// purpose: a producer commits while it still owns the line it claimed on.
	written atomic.Uint64
	// contended is set by a producer that claimed while an earlier claim
	// was not yet committed: producers are racing for this line.
	contended atomic.Bool
	_         [47]byte // keep these off the lines that follow

	// sealed is set when the buffer is sealed; it stops producers before
	// they claim. It is written once per batch, so it sits on a read-mostly
	// line that every core keeps a copy of, not on the contended tail line.
	sealed atomic.Bool
	start  atomic.Int64 // engine time of the first claim; 0 while empty

	// gen is the buffer's generation, bumped on every reuse. It is written
	// under the engine mutex before tail is reset, so producers that claim
	// from the reset tail observe the new value.
	gen uint32

	// Owned by the engine mutex.
	queued uint32 // gen at which the buffer was queued for output
}

// commit publishes the entries a producer claimed at old, and notes whether
// it found others racing for the buffer.
func (l *lane) commit(old, n uint64) {
	if l.written.Add(n) != old+n && !l.contended.Load() {
		l.contended.Store(true)
	}
}

// waitCommitted waits until the n entries of a sealed batch have been
// written by their producers. A producer is between its claim and its commit
// only for the time of a copy, so this spins, yielding the processor so that
// a preempted producer can finish.
func (l *lane) waitCommitted(n int) {
	for spin := 0; l.written.Load() != uint64(n); spin++ {
		if spin > 16 {
			runtime.Gosched()
		}
	}
}

func (l *lane) reset() {
	l.gen++
	if l.gen == 0 { // 0 is what fresh marks hold: never use it
		l.gen = 1
	}
	l.start.Store(0)
	l.sealed.Store(false)
	l.contended.Store(false)
	l.written.Store(0)
	l.tail.Store(0) // last: producers that claim from here see all of the above
}

// buffer is what the engine needs from a concrete batch buffer.
type buffer interface {
	ln() *lane
	// open reports whether a buffer whose tail is v still takes claims.
	open(v uint64) bool
	// entries is the number of entries in a batch whose tail is v: exact
	// once the batch is frozen, a snapshot while producers may still claim.
	entries(v uint64) int
	// freeze stops the claims of a batch whose tail was sealed at v and
	// returns its number of entries. Calling it again returns the same.
	freeze(v uint64) int
	// begin readies the buffer for a new batch with a fresh id; the engine
	// calls it under its mutex before it makes the buffer current.
	begin(id uint64)
	// emit waits for the batch sealed at v to be fully written and passes
	// it to the output function.
	emit(v uint64) error
	// sealMark is added to an open tail to seal it.
	sealMark() uint64
}

// job is one batch in the output queue: a sealed buffer, or an entry too big
// for any buffer (Bytes only), which its writer keeps alive until it is out.
type job[P any] struct {
	buf     P
	final   uint64
	big     []byte
	seq     uint64
	entries int
}

// engine is the machinery Batcher and Bytes share: the ring of buffers, the
// output goroutine, the window timer, Flush and Close. E is the buffer type.
type engine[E any, P interface {
	*E
	buffer
}] struct {
	cur atomic.Pointer[E]
	_   [56]byte
	cohort

	needInstall atomic.Bool    // cur is sealed and queued, and no buffer was free
	emitG       atomic.Uintptr // the goroutine (getg) running the output function, or 0
	dropped     atomic.Uint64
	stalls      atomic.Uint64
	delivered   atomic.Uint64
	batches     atomic.Uint64
	outErrors   atomic.Uint64

	window  int64
	drop    bool
	onError func(error)
	abort   func() error
	epoch   time.Time
	emitBig func([]byte) error
	closedL P        // permanently sealed stand-in installed by Close
	grow    func() P // makes one more buffer (WithMaxBuffers)

	mu          sync.Mutex
	installs    uint64 // ids given to batches; under mu
	cond        sync.Cond
	waiters     int
	closed      bool
	free        []P
	nBufs       int // buffers held; under mu
	maxBufs     int // most buffers grow may bring nBufs to
	baseBufs    int // buffers made by New: shrinking stops there
	shrinkEvery int64
	shrinkAt    int64 // end of the shrink period (engine clock); 0 while nBufs is baseBufs; under mu
	minFree     int   // fewest buffers free at once in the shrink period; under mu
	queue       []job[P]
	queuedItems int
	emitting    bool          // a goroutine is running the output; under mu
	outIdle     bool          // the output goroutine has not run since it went to sleep; under mu
	outWoke     chan struct{} // closed when it next runs (handOffLocked); under mu
	quiet       bool          // queue without waking the output goroutine; under mu
	sealedSeq   uint64        // sequence of the last batch queued
	doneSeq     uint64        // sequence of the last batch through the output
	errs        []error
	moreErrs    int
	failing     error         // set by an output that retries its batch (outputFailing); under mu
	openGroup   *flushGroup   // Flushes waiting for the current batch to be sealed; under mu
	groups      []*flushGroup // Flushes waiting for queued batches, in order; under mu
	flushWaits  int           // Flushes asleep on a group; under mu
	groupPool   []*flushGroup // finished groups, for reuse; under mu

	wake      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

const maxPendingErrs = 8

func (e *engine[E, P]) init(c *config, bufs []P, closed P, emitBig func([]byte) error, grow func() P) {
	e.window = int64(c.window)
	e.drop = c.overflow == DropNewest
	e.onError = c.onError
	e.abort = c.abort
	e.cohort.off = c.noCohort
	e.epoch = time.Now()
	e.emitBig = emitBig
	e.cond.L = &e.mu
	e.wake = make(chan struct{}, 1)
	e.done = make(chan struct{})

	e.closedL = closed
	cl := closed.ln()
	cl.sealed.Store(true)
	cl.tail.Store(closed.sealMark())

	for _, b := range bufs {
		b.ln().sealed.Store(true) // free buffers take no claims until installed
	}
	bufs[0].begin(e.nextID())
	e.cur.Store((*E)(bufs[0]))
	e.nBufs, e.maxBufs = len(bufs), max(c.maxBuffers, len(bufs))
	e.baseBufs, e.shrinkEvery = len(bufs), int64(c.shrinkAfter)
	e.grow = grow
	e.free = append(make([]P, 0, e.maxBufs), bufs[1:]...)
	e.queue = make([]job[P], 0, e.maxBufs+1)
	e.outIdle = true // until the goroutine first runs
	go e.run()
}

// nextID returns the id of the next batch: never 0, never repeated.
func (e *engine[E, P]) nextID() uint64 {
	e.installs++
	return e.installs
}

// inOutput reports whether the caller is the goroutine running the output
// function: a producer that must not wait for the output (ErrReentry).
func (e *engine[E, P]) inOutput() bool {
	return e.emitG.Load() == getg()
}

// now is the engine's clock: monotonic nanoseconds, never 0.
func (e *engine[E, P]) now() int64 { return int64(time.Since(e.epoch)) + 1 }

func (e *engine[E, P]) kick() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// started is called by the producer that claimed the first entry of a batch.
func (e *engine[E, P]) started(l *lane) {
	if e.window > 0 {
		l.start.Store(e.now())
		e.kick()
	}
}

func (e *engine[E, P]) waitLocked() {
	e.waiters++
	e.cond.Wait()
	e.waiters--
}

func (e *engine[E, P]) broadcastLocked() {
	if e.waiters > 0 {
		e.cond.Broadcast()
	}
}

// installLocked makes a free buffer current, or the closed stand-in after
// Close. With no free buffer it makes one more if WithMaxBuffers allows,
// and otherwise records that the output goroutine must install the next
// buffer it frees.
func (e *engine[E, P]) installLocked() {
	if !e.closed && len(e.free) == 0 && e.nBufs < e.maxBufs {
		b := e.grow()
		b.ln().sealed.Store(true)
		e.free = append(e.free, b)
		e.nBufs++
		if e.shrinkAt == 0 && e.shrinkEvery > 0 {
			e.shrinkAt = e.now() + e.shrinkEvery
		}
	}
	switch {
	case e.closed:
		e.cur.Store((*E)(e.closedL))
		e.needInstall.Store(false)
	case len(e.free) > 0:
		b := e.free[len(e.free)-1]
		e.free = e.free[:len(e.free)-1]
		e.minFree = min(e.minFree, len(e.free))
		b.begin(e.nextID())
		e.cur.Store((*E)(b))
		e.needInstall.Store(false)
	default:
		e.needInstall.Store(true)
	}
	e.broadcastLocked()
}

func (e *engine[E, P]) enqueueLocked(b P, final uint64) {
	l := b.ln()
	l.sealed.Store(true)
	l.queued = l.gen
	e.sealedSeq++
	e.queueOpenGroupLocked(e.sealedSeq)
	n := b.freeze(final)
	e.queue = append(e.queue, job[P]{buf: b, final: final, seq: e.sealedSeq, entries: n})
	e.queuedItems += n
	if !e.quiet {
		e.kick()
	}
}

// retireLocked takes buffer b, just sealed at tail v, out of service: it
// queues its batch for output, or puts it back on the free list if it
// holds no entry; then it installs the next buffer.
func (e *engine[E, P]) retireLocked(b P, v uint64) {
	// Sealed before frozen: a producer whose claim finds its chunk frozen
	// then sees the batch sealed and waits in waitRotation (yielding, then
	// asleep on the mutex). Frozen but not yet sealed, it retried its claim
	// in a loop that never yields, and with the mutex holder descheduled
	// here every producer kept a core busy until the scheduler preempted
	// it, 10 ms at a time.
	b.ln().sealed.Store(true)
	n := b.freeze(v)
	if testHookRetire != nil {
		testHookRetire()
	}
	if n > 0 {
		e.enqueueLocked(b, v)
	} else {
		e.free = append(e.free, b)
		e.releaseOpenGroupLocked() // chunks in it, and no entry
	}
	e.installLocked()
}

// testHookRetire, set by tests only, runs in retireLocked between freezing
// a batch and queuing it, with the engine mutex held.
var testHookRetire func()

// testHookOutputBusy, set by tests only, runs when the output goroutine,
// woken, finds ShipHere's caller running the output, with the engine mutex
// held.
var testHookOutputBusy func()

// rotate is called by the producer whose claim sealed b (its sealer of
// record): it queues b for output and installs the next buffer.
func (e *engine[E, P]) rotate(b P, final uint64) {
	e.mu.Lock()
	e.enqueueLocked(b, final)
	e.installLocked()
	e.unlockHandingOff()
}

// unlockHandingOff releases the mutex held by a producer that has just
// queued a full batch and, if the output goroutine was asleep, waits until
// it is up (see handOffLocked).
func (e *engine[E, P]) unlockHandingOff() {
	w := e.handOffLocked()
	e.mu.Unlock()
	if w != nil {
		<-w
	}
}

// handOffLocked is called, with the mutex held, by a producer that has just
// queued a full batch. If the output goroutine was asleep, the wake-up put
// it first in line on this producer's processor, where it runs only once
// the producer stops; producers that log in a loop stop only when
// preempted, every 10 ms. Until then the batch waited: 3-10 ms for most
// batches of zerolog + snail into a file at 64 goroutines on 2 cores, with
// all 16 buffers in use. So handOffLocked returns a channel for the
// producer to wait on, once it has released the mutex, until the output
// goroutine is up; it returns nil if that goroutine is busy (it takes the
// batch when done, without a wake-up).
//
// The producer does not yield (runtime.Gosched) instead: a yielding
// goroutine queues behind every runnable one, and with 64 goroutines
// logging its call took 5 ms or more, once per batch. Asleep on the
// channel, it is woken by the output goroutine into that goroutine's
// first place in line, and it needs no mutex to go on: woken on a
// condition variable, it had to take the mutex again, and waited for it
// behind producers that run until preempted.
func (e *engine[E, P]) handOffLocked() chan struct{} {
	if !e.outIdle || e.closed {
		return nil
	}
	if e.outWoke == nil {
		e.outWoke = make(chan struct{})
	}
	return e.outWoke
}

// awakeLocked is called by the output goroutine, with the mutex held, each
// time it wakes up: it releases the producers waiting in a hand-off.
func (e *engine[E, P]) awakeLocked() {
	if e.outIdle {
		e.outIdle = false
		if e.outWoke != nil {
			close(e.outWoke)
			e.outWoke = nil
		}
	}
}

// sealLocked seals the current buffer c from outside (timer, Flush) if it
// holds entries and is still open. It reports false when a producer has
// sealed c and not queued it yet: the caller must wait for that producer.
func (e *engine[E, P]) sealLocked(c P) bool {
	l := c.ln()
	for {
		if l.queued == l.gen && (*E)(c) == e.cur.Load() && l.sealed.Load() {
			return true // already queued, waiting for a free buffer
		}
		v := l.tail.Load()
		if !c.open(v) {
			return c == e.closedL
		}
		if v == 0 {
			return true // nothing claimed
		}
		if l.tail.CompareAndSwap(v, v+c.sealMark()) {
			// With lanes a batch may hold chunks and still no entry: it
			// goes back to the free list instead of to the output.
			e.retireLocked(c, v)
			return true
		}
	}
}

// waitRotation is the slow path of a producer whose claim on buffer c failed:
// it waits until c is no longer current or takes claims again (the same
// buffer may have been recycled and installed anew), or reports ErrClosed,
// or (when dropping) ErrDropped if no buffer is free.
func (e *engine[E, P]) waitRotation(c P, drop bool, n int) error {
	// The output goroutine itself (an error handler of the output that
	// logs) may wait for another producer to install the next buffer, but
	// not for the output to free one.
	self := e.inOutput()
	for spin := 0; ; spin++ {
		if e.rotated(c) {
			return nil
		}
		if c == e.closedL {
			return ErrClosed
		}
		if drop && e.needInstall.Load() {
			e.dropped.Add(uint64(n))
			return ErrDropped
		}
		if self && e.needInstall.Load() {
			return ErrReentry
		}
		if e.abort != nil {
			if err := e.abort(); err != nil {
				return err
			}
		}
		if spin < 8 {
			runtime.Gosched()
			continue
		}
		e.mu.Lock()
		if e.needInstall.Load() {
			e.stalls.Add(1)
		}
		for !e.rotated(c) && c != e.closedL && !((drop || self) && e.needInstall.Load()) {
			if e.abort != nil {
				if err := e.abort(); err != nil {
					e.mu.Unlock()
					return err
				}
			}
			e.waitLocked()
		}
		e.mu.Unlock()
	}
}

// rotated reports whether a producer that failed to claim in c should try
// again: c is no longer current, or it was recycled and is open again.
func (e *engine[E, P]) rotated(c P) bool {
	return P(e.cur.Load()) != c || (!c.ln().sealed.Load() && c.open(c.ln().tail.Load()))
}

// wakeProducers makes waiting producers check the abort function again.
func (e *engine[E, P]) wakeProducers() {
	e.mu.Lock()
	e.broadcastLocked()
	e.mu.Unlock()
}

// run is the output goroutine: it sends queued batches to the output in
// order and seals the current batch when its window has passed.
func (e *engine[E, P]) run() {
	defer close(e.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		e.mu.Lock()
		e.awakeLocked()
		if e.shrinkAt != 0 && e.now() >= e.shrinkAt {
			e.shrinkLocked()
		}
		if e.emitting {
			// ShipHere's caller is running the output: it takes every
			// batch queued meanwhile too.
			if testHookOutputBusy != nil {
				testHookOutputBusy()
			}
			e.mu.Unlock()
			<-e.wake
			continue
		}
		if len(e.queue) > 0 {
			j := e.popLocked()
			e.mu.Unlock()
			e.process(j)
			continue
		}
		if e.openGroup != nil {
			// Flushes that came while the output was busy wait for the
			// current batch: it leaves now, with all of their entries
			// (group commit).
			e.quiet = true
			e.sealForFlushesLocked()
			e.quiet = false
			if len(e.queue) > 0 {
				e.mu.Unlock()
				continue
			}
		}
		if e.closed && e.cur.Load() == (*E)(e.closedL) {
			e.mu.Unlock()
			return
		}
		e.outIdle = true
		shrinkAt := e.shrinkAt
		e.mu.Unlock()

		c := P(e.cur.Load())
		st := c.ln().start.Load()
		if e.window == 0 || st == 0 {
			if shrinkAt == 0 {
				<-e.wake
				continue
			}
			timer.Reset(time.Duration(max(shrinkAt-e.now(), 0)))
			select {
			case <-e.wake:
			case <-timer.C:
			}
			timer.Stop()
			continue
		}
		if d := st + e.window - e.now(); d > 0 {
			timer.Reset(time.Duration(d))
			select {
			case <-e.wake:
			case <-timer.C:
			}
			timer.Stop()
			continue
		}
		e.mu.Lock()
		e.awakeLocked()
		sealed := true
		if P(e.cur.Load()) == c && c.ln().start.Load() == st {
			sealed = e.sealLocked(c)
		}
		e.mu.Unlock()
		if !sealed {
			runtime.Gosched() // a producer is queuing it right now
		}
	}
}

// shrinkLocked ends a shrink period: the buffers past baseBufs that stayed
// free all through it are given back to the garbage collector. They are
// the bottom of the free list, which is used from its top (the buffers
// most recently used, likeliest in a cache).
func (e *engine[E, P]) shrinkLocked() {
	if k := min(e.minFree, e.nBufs-e.baseBufs); k > 0 {
		n := copy(e.free, e.free[k:])
		clear(e.free[n:])
		e.free = e.free[:n]
		e.nBufs -= k
	}
	e.minFree = len(e.free)
	e.shrinkAt = 0
	if e.nBufs > e.baseBufs {
		e.shrinkAt = e.now() + e.shrinkEvery
	}
}

// popLocked takes the first queued batch and marks the output busy.
func (e *engine[E, P]) popLocked() job[P] {
	j := e.queue[0]
	copy(e.queue, e.queue[1:])
	e.queue[len(e.queue)-1] = job[P]{}
	e.queue = e.queue[:len(e.queue)-1]
	e.emitting = true
	return j
}

func (e *engine[E, P]) process(j job[P]) {
	e.emitG.Store(getg())
	returned := false
	defer func() {
		if !returned {
			e.outputPanicked(j)
		}
	}()
	var err error
	if j.buf != nil {
		err = j.buf.emit(j.final)
		e.sawBatch(j.buf.ln().contended.Load())
	} else {
		err = e.emitBig(j.big)
	}
	e.delivered.Add(uint64(j.entries))
	e.batches.Add(1)
	if err != nil {
		e.outErrors.Add(1)
		if e.onError != nil {
			e.onError(err)
		}
	}
	e.emitG.Store(0)
	returned = true

	e.mu.Lock()
	e.doneLocked(j, err)
	e.mu.Unlock()
}

// doneLocked records that job j has been through the output, which
// returned err.
func (e *engine[E, P]) doneLocked(j job[P], err error) {
	if err != nil {
		if len(e.errs) < maxPendingErrs {
			e.errs = append(e.errs, err)
		} else {
			e.moreErrs++
		}
	}
	e.queuedItems -= j.entries
	e.doneSeq = j.seq
	e.emitting = false
	if j.buf != nil {
		e.free = append(e.free, j.buf)
		if e.needInstall.Load() {
			e.installLocked()
		}
	}
	e.finishGroupsLocked()
	e.broadcastLocked()
}

// outputPanicked cleans up after an output function that panicked on job j,
// before the panic goes on: on the output goroutine it ends the program, but
// a ShipHere caller that ran the output may recover, and the batcher must
// not be left waiting for an output that will never return.
// The batch counts as done, and Flush and Close report errOutputPanicked.
func (e *engine[E, P]) outputPanicked(j job[P]) {
	e.emitG.Store(0)
	e.delivered.Add(uint64(j.entries))
	e.batches.Add(1)
	e.outErrors.Add(1)
	e.mu.Lock()
	e.doneLocked(j, errOutputPanicked)
	e.handBackLocked()
	e.mu.Unlock()
}

// takeErrLocked returns and forgets the output errors not yet reported.
func (e *engine[E, P]) takeErrLocked() error {
	if len(e.errs) == 0 {
		return nil
	}
	errs := e.errs
	if e.moreErrs > 0 {
		errs = append(errs, fmt.Errorf("batcher: %d more output errors", e.moreErrs))
	}
	e.errs, e.moreErrs = nil, 0
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// flush seals the current batch and waits until every batch queued so far
// has been through the output.
//
// Group commit: while the output is busy, the current batch is not sealed
// at once. The Flush waits for it in the batch's group, and the output
// goroutine, once free, seals it with the entries of every Flush that came
// meanwhile. Sealed at once, each Flush made a batch of its own: with 64
// goroutines that each wrote an entry and then called Sync, batches of one
// entry each queued for every buffer, and the writers waited for a free
// one. Waiting costs a Flush no time: its batch would have waited in the
// queue for the output anyway.
//
// Each Flush sleeps on its group's condition variable, broadcast when the
// group's batch is done: one wake-up per Flush. Asleep on the engine's
// condition variable instead, every Flush woke at every batch and took the
// mutex again to look, and 64 goroutines that each wrote and synced an
// entry spent more time on the mutex than on writing.
//
// The Flush does not run the output itself when it is idle (as ShipHere
// does), although that would save two thread hand-offs: an output that
// retries a failed batch until its destination is back (OutputFailing)
// would hold the Flush for as long, where Flush must return the error.
func (e *engine[E, P]) flush() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if e.inOutput() {
		return ErrReentry
	}
	g := e.flushGroupLocked()
	if g == nil {
		return e.takeErrLocked()
	}
	defer e.leaveGroupLocked(g)
	for !g.finished {
		if e.failing != nil {
			return e.failing
		}
		if !e.emitting && len(e.queue) == 0 && g == e.openGroup && e.sealForFlushesLocked() {
			continue // queued (g.seq is set), or sealed empty
		}
		// Asleep until the batch is done or the output's state changes
		// (failing). A producer sealing the batch queues it and wakes the
		// output goroutine; with the output busy, the output goroutine
		// seals it once free.
		e.flushWaits++
		g.cond.Wait()
		e.flushWaits--
	}
	return e.takeErrLocked()
}

// sealForFlushesLocked seals the current batch, which Flushes wait for. It
// reports false when a producer is sealing it (it queues it).
func (e *engine[E, P]) sealForFlushesLocked() bool {
	if !e.sealLocked(P(e.cur.Load())) {
		return false
	}
	// Not queued (nothing was claimed in it after all): what they wait
	// for is what was queued before.
	e.releaseOpenGroupLocked()
	return true
}

// handBackLocked wakes the output goroutine, if needed, when a caller that
// ran the output itself (ShipHere) is done: for batches queued meanwhile
// (quietly, or while the output goroutine, woken, found the output busy),
// for a batch Flushes wait for, for Close, or to time the window of a
// batch that has started.
func (e *engine[E, P]) handBackLocked() {
	if !e.emitting && (len(e.queue) > 0 || e.openGroup != nil) || e.closed ||
		e.window > 0 && P(e.cur.Load()).ln().start.Load() != 0 {
		e.kick()
	}
}

// outputFailing records that the output is retrying a batch that failed
// with err (nil: it succeeded again), so that flush returns err instead of
// waiting for the retries.
func (e *engine[E, P]) outputFailing(err error) {
	e.mu.Lock()
	e.failing = err
	e.broadcastLocked()
	e.wakeFlushesLocked()
	e.mu.Unlock()
}

// ship seals the current batch so that it goes to the output as soon as the
// output goroutine is free, without waiting for it. A batch a producer is
// sealing right now is queued by that producer.
func (e *engine[E, P]) ship() {
	e.mu.Lock()
	if !e.closed {
		e.sealLocked(P(e.cur.Load()))
	}
	e.mu.Unlock()
}

// shipHere seals the current batch and, when no other goroutine is running
// the output, runs it in the caller for every queued batch, in order;
// otherwise it leaves them to the output goroutine, as ship does.
//
// It unlocks without defer: if the output panics, the panic leaves with
// the mutex released (process cleans up after it).
func (e *engine[E, P]) shipHere() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.quiet = true // this goroutine takes the batch
	e.sealLocked(P(e.cur.Load()))
	e.quiet = false
	for len(e.queue) > 0 && !e.emitting {
		j := e.popLocked()
		e.mu.Unlock()
		e.process(j)
		e.mu.Lock()
	}
	e.handBackLocked()
	e.mu.Unlock()
}

// close seals the current batch, installs the closed stand-in, waits for the
// output goroutine to drain every batch and stop, and returns the output
// errors not yet reported. Later calls return the same result.
func (e *engine[E, P]) close() error {
	if e.inOutput() {
		return ErrReentry // it would wait for its own goroutine to stop
	}
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		for {
			c := P(e.cur.Load())
			l := c.ln()
			if c == e.closedL {
				break
			}
			if l.queued == l.gen && l.sealed.Load() {
				e.installLocked() // queued, waiting for a free buffer
				break
			}
			v := l.tail.Load()
			if !c.open(v) {
				break // its sealer of record will install the stand-in
			}
			if l.tail.CompareAndSwap(v, v+c.sealMark()) {
				e.retireLocked(c, v)
				break
			}
		}
		e.broadcastLocked()
		e.kick()
		e.mu.Unlock()

		<-e.done

		e.mu.Lock()
		e.closeErr = e.takeErrLocked()
		e.mu.Unlock()
	})
	return e.closeErr
}

// Stats are a batcher's counters. Added and Delivered are exact once Flush
// or Close has returned; while producers run they are a snapshot.
type Stats struct {
	Added        uint64 // items accepted: delivered, queued or in the current batch
	Delivered    uint64 // items passed to the output (including failed outputs)
	Batches      uint64 // calls of the output function
	Dropped      uint64 // items refused by DropNewest or TryAdd/TryWrite
	OutputErrors uint64 // output calls that returned an error
	// Stalls counts producers that had to sleep because every buffer was
	// full (back-pressure: the output was behind), once per wait.
	Stalls uint64
	// Buffers is the number of batch buffers the batcher holds: WithBuffers'
	// count, plus those made under WithMaxBuffers and not given back yet
	// (WithShrinkAfter).
	Buffers int
}

func (e *engine[E, P]) stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	pending := uint64(e.queuedItems)
	c := P(e.cur.Load())
	if v := c.ln().tail.Load(); c.open(v) {
		pending += uint64(c.entries(v))
	}
	d := e.delivered.Load()
	return Stats{
		Added:        d + pending,
		Delivered:    d,
		Batches:      e.batches.Load(),
		Dropped:      e.dropped.Load(),
		OutputErrors: e.outErrors.Load(),
		Stalls:       e.stalls.Load(),
		Buffers:      e.nBufs,
	}
}
