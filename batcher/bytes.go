package batcher

import (
	"fmt"
	"runtime"
	"sync/atomic"
)

// Bytes gathers byte entries (log lines, records) from many goroutines into
// large contiguous buffers, so that a batch leaves as one []byte holding its
// entries back to back, with their count: ready for one write() or one frame.
//
// Write copies the entry: the caller may reuse its slice as soon as Write
// returns. An entry is never split across batches. An entry larger than the
// batch buffer is passed to the output as a batch of its own; the writer then
// waits until the output has seen it (so that its slice is not kept), and
// memory stays bounded by buffers x batch bytes (max buffers with
// WithMaxBuffers).
//
// Every entry whose Write returned without error is passed to the output
// exactly once, in per-goroutine order. Bytes is safe for concurrent use; the
// creator must call Close.
type Bytes struct {
	e          engine[byteBuf, *byteBuf]
	capBytes   uint64
	maxEntries uint64
	out        func([]byte, int) error

	// With lanes (WithLanes): the chunk size, the number of lanes and
	// the table binding goroutines to lanes for the current batch.
	chunk  uint64
	nLanes int
	owners []atomic.Uint64
}

// A Bytes tail packs the entry count above the byte offset, so that one
// atomic add claims both an entry index and a byte range.
const (
	countShift = 40
	bytesMask  = 1<<countShift - 1
	bytesSeal  = 1 << 38 // added to the byte offset to seal; above any batch size
)

// byteBuf is one batch buffer of a Bytes batcher.
type byteBuf struct {
	lane
	data       []byte
	size       uint64 // len(data), which WithKeep may swap: read this
	maxEntries uint64
	out        func([]byte, int) error
	keep       func([]byte, int) ([]byte, error) // WithKeep, or nil
	vec        func([][]byte, int) error         // WithVectors (with lanes), or nil
	pieces     [][]byte                          // reused by emit for vec
	// lanes is the chunk state with WithLanes, nil otherwise.
	lanes *laneSet
}

func (b *byteBuf) ln() *lane { return &b.lane }
func (b *byteBuf) open(v uint64) bool {
	if b.lanes != nil {
		return v&bytesMask < bytesSeal // chunks are handed out up to the end
	}
	return v&bytesMask < b.size && v>>countShift < b.maxEntries
}
func (b *byteBuf) entries(v uint64) int {
	if b.lanes != nil {
		return b.lanes.entries(v)
	}
	return int(v >> countShift)
}
func (b *byteBuf) freeze(v uint64) int {
	if b.lanes != nil {
		return b.lanes.freeze(v)
	}
	return b.entries(v)
}
func (b *byteBuf) begin(id uint64) {
	if b.lanes != nil {
		b.lanes.begin(id)
	}
	b.lane.reset()
}
func (b *byteBuf) sealMark() uint64 { return bytesSeal }
func (b *byteBuf) emit(v uint64) error {
	if b.lanes != nil {
		if b.vec != nil {
			var n int
			b.pieces, n = b.lanes.pieces(b.data, v, b.pieces[:0])
			switch len(b.pieces) {
			case 0:
				return b.out(b.data[:0], n)
			case 1:
				return b.out(b.pieces[0], n) // in one piece after all
			}
			return b.vec(b.pieces, n)
		}
		length, n := b.lanes.compact(b.data, v)
		return b.deliver(length, n)
	}
	n := b.entries(v)
	b.waitCommitted(n)
	return b.deliver(int(v&bytesMask), n)
}

// deliver passes the first length bytes of the buffer, n entries, to the
// output, or to keep, which may take the buffer and give a spare in return.
// Producers touch data only after a claim in this batch succeeded, and
// every such claim is committed before emit: swapping data here races with
// none of them.
func (b *byteBuf) deliver(length, n int) error {
	if b.keep == nil {
		return b.out(b.data[:length], n)
	}
	spare, err := b.keep(b.data[:length], n)
	if spare != nil {
		if cap(spare) >= int(b.size) {
			b.data = spare[:b.size]
		} else {
			b.data = make([]byte, b.size)
		}
	}
	return err
}

// NewBytes returns a Bytes batcher that passes each batch and its entry count
// to output, one call at a time, from a goroutine of its own. The batch slice
// is reused once output returns: output must not keep it (WithKeep lets a
// destination keep batches without a copy). Errors from output are returned
// by the next Flush or Close and passed to the error handler.
//
// WithBatchBytes sets the buffer size (default 1 MiB) and WithBatchSize the
// most entries in one batch (default one per 32 bytes of buffer).
func NewBytes(output func(batch []byte, entries int) error, opts ...Option) (*Bytes, error) {
	if output == nil {
		return nil, fmt.Errorf("%w: nil output function", ErrInvalidOption)
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	capBytes := DefaultBatchBytes
	if c.bytesSet {
		capBytes = c.batchBytes
	}
	if held := int64(capBytes) * int64(max(c.buffers, c.maxBuffers)); held > maxBytesHeld {
		// Each option is in range, but together they would take more
		// memory than any machine gives a log: a fatal out-of-memory
		// at New or later, not an error.
		return nil, fmt.Errorf("%w: %d buffers of %d bytes would hold %d bytes, over %d", ErrInvalidOption,
			max(c.buffers, c.maxBuffers), capBytes, held, int64(maxBytesHeld))
	}
	maxEntries := max(capBytes/32, 1)
	if c.batchSizeSet {
		maxEntries = c.batchSize
	}
	b := &Bytes{capBytes: uint64(capBytes), maxEntries: uint64(maxEntries), out: output}
	if c.vec != nil && c.keep != nil {
		return nil, fmt.Errorf("%w: WithVectors does not go with WithKeep", ErrInvalidOption)
	}
	lanes := c.lanes && fastGetg
	if lanes {
		if c.batchSizeSet {
			return nil, fmt.Errorf("%w: WithLanes does not take WithBatchSize", ErrInvalidOption)
		}
		b.nLanes = min(runtime.GOMAXPROCS(0), maxLanes)
		b.chunk = uint64(chunkSize(capBytes, b.nLanes))
		b.maxEntries = uint64(capBytes)
		b.owners = make([]atomic.Uint64, 1<<ownerBits)
	}
	newBuf := func() *byteBuf {
		nb := &byteBuf{data: make([]byte, capBytes), size: uint64(capBytes), maxEntries: uint64(maxEntries), out: output, keep: c.keep}
		if lanes {
			nb.lanes = newLaneSet(b.nLanes, capBytes/int(b.chunk)+2)
			nb.vec = c.vec
		}
		return nb
	}
	bufs := make([]*byteBuf, c.buffers)
	for i := range bufs {
		bufs[i] = newBuf()
	}
	closed := &byteBuf{maxEntries: 1, out: output}
	b.e.init(&c, bufs, closed, func(p []byte) error { return output(p, 1) }, newBuf)
	return b, nil
}

// Write adds p as one entry. It implements io.Writer: it returns len(p) and
// nil when the entry was accepted; ErrDropped (DropNewest policy, all buffers
// full) or ErrClosed otherwise. An empty p is accepted and writes nothing.
func (b *Bytes) Write(p []byte) (int, error) {
	if err := b.add(p, b.e.drop); err != nil {
		return 0, err
	}
	return len(p), nil
}

// TryWrite adds p as one entry without waiting for the output: when every
// buffer is full it returns ErrDropped, whatever the overflow policy.
func (b *Bytes) TryWrite(p []byte) error { return b.add(p, true) }

func (b *Bytes) add(p []byte, drop bool) error {
	n := uint64(len(p))
	if n == 0 {
		if b.e.cur.Load() == b.e.closedL {
			return ErrClosed
		}
		return nil
	}
	if n > b.capBytes || b.owners != nil && n > chunkMaxBytes {
		return b.addBig(p, drop)
	}
	if b.owners != nil {
		return b.addLane(p, drop)
	}
	delta := n | 1<<countShift
	b.e.enter()
	for {
		c := b.e.cur.Load()
		if !c.sealed.Load() {
			old := c.tail.Add(delta) - delta
			off, idx := old&bytesMask, old>>countShift
			if off+n <= b.capBytes && idx < b.maxEntries {
				copy(c.data[off:off+n], p)
				c.commit(idx, 1)
				if idx == 0 {
					b.e.started(&c.lane)
				}
				if off+n == b.capBytes || idx+1 == b.maxEntries {
					b.e.rotate(c, old+delta) // filled it exactly
				}
				return nil
			}
			if off < b.capBytes && idx < b.maxEntries {
				b.e.rotate(c, old) // crossed the end: seal without this entry
			}
		}
		if err := b.e.waitRotation(c, drop, 1); err != nil {
			return err
		}
	}
}

// addBig passes an entry larger than a batch buffer to the output as its own
// batch, after every batch sealed before it, and waits until it is out.
func (b *Bytes) addBig(p []byte, drop bool) error {
	e := &b.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inOutput() {
		return ErrReentry // it would wait for itself to output the entry
	}
	for {
		if e.closed {
			return ErrClosed
		}
		if drop && e.needInstall.Load() {
			e.dropped.Add(1)
			return ErrDropped
		}
		if e.sealLocked(e.cur.Load()) {
			break
		}
		e.waitLocked() // a producer is queuing the current batch
	}
	e.sealedSeq++
	seq := e.sealedSeq
	e.queue = append(e.queue, job[*byteBuf]{big: p, seq: seq, entries: 1})
	e.queuedItems++
	e.kick()
	for e.doneSeq < seq {
		e.waitLocked()
	}
	return nil
}

// Flush seals the current batch and returns once every entry written before
// the call has been through the output function. While the output is busy
// it waits for it before sealing, so that Flushes from many goroutines
// share one batch (group commit) instead of making a batch each. It
// returns the output errors not reported yet, ErrClosed after Close,
// ErrReentry from the output function, or, while the output retries a
// failed batch (OutputFailing), that error at once.
func (b *Bytes) Flush() error { return b.e.flush() }

// Ship seals the current batch so that it leaves as soon as the output is
// free, without waiting for it: a request-response protocol calls it when it
// has nothing more to read, so that replies gathered so far leave at once
// instead of at the end of the window.
func (b *Bytes) Ship() { b.e.ship() }

// ShipHere is Ship, except that when the output goroutine is idle the
// batch goes through the output in the calling goroutine before ShipHere
// returns (see Batcher.ShipHere).
func (b *Bytes) ShipHere() { b.e.shipHere() }

// Close delivers every entry written, stops the output goroutine and returns
// the output errors not reported yet. Later calls return the same result.
// From the output function it does nothing and returns ErrReentry: it
// would wait for itself.
func (b *Bytes) Close() error { return b.e.close() }

// InOutput reports whether the caller is the goroutine running the output
// function (or a function it calls, such as an error handler), which must
// not wait for the output: Close and Flush return ErrReentry there.
func (b *Bytes) InOutput() bool { return b.e.inOutput() }

// Wake makes producers waiting for a free buffer consult the WithAbort
// function again.
func (b *Bytes) Wake() { b.e.wakeProducers() }

// OutputFailing tells the batcher that the output failed on its batch with
// err and is trying it again (it has not returned): Flush, waiting or
// called later, returns err at once instead of waiting for the retries,
// while the batch stays in line. Call it with nil once the output
// succeeds again. An output that gives a batch up returns its error
// instead, which the next Flush or Close returns.
func (b *Bytes) OutputFailing(err error) { b.e.outputFailing(err) }

// Stats returns the batcher's counters; counts are entries.
func (b *Bytes) Stats() Stats { return b.e.stats() }

// Limits returns the batch buffer size in bytes and the most entries one
// batch holds.
func (b *Bytes) Limits() (batchBytes, maxEntries int) {
	return int(b.capBytes), int(b.maxEntries)
}
