package batcher

import (
	"fmt"
	"unsafe"
)

// Batcher gathers values of type T from many goroutines into batches of up to
// the batch size and passes each batch, in order, to its output function.
//
// Every value whose Add returned nil is passed to the output exactly once,
// and the values of one goroutine reach the output in the order it added
// them. A Batcher is safe for concurrent use. The creator must call Close,
// which delivers what is left and stops the output goroutine.
type Batcher[T any] struct {
	e    engine[itemBuf[T], *itemBuf[T]]
	size uint64
}

// itemBuf is one batch buffer of a Batcher. Its tail counts claimed slots.
type itemBuf[T any] struct {
	lane
	items []T
	out   func([]T) error
}

func (b *itemBuf[T]) ln() *lane            { return &b.lane }
func (b *itemBuf[T]) open(v uint64) bool   { return v < uint64(len(b.items)) }
func (b *itemBuf[T]) entries(v uint64) int { return int(min(v, uint64(len(b.items)))) }
func (b *itemBuf[T]) sealMark() uint64     { return 1 << 62 }
func (b *itemBuf[T]) freeze(v uint64) int  { return b.entries(v) }
func (b *itemBuf[T]) begin(uint64)         { b.lane.reset() }
func (b *itemBuf[T]) emit(v uint64) error {
	n := b.entries(v)
	b.waitCommitted(n)
	err := b.out(b.items[:n])
	clear(b.items[:n]) // let the garbage collector have what the items point to
	return err
}

// New returns a Batcher that passes batches to output, one call at a time,
// from a goroutine of its own. The slice passed to output is reused once
// output returns: output must not keep it. An error from output is returned
// by the next Flush or Close and passed to the error handler; it does not
// stop the batcher.
func New[T any](output func(batch []T) error, opts ...Option) (*Batcher[T], error) {
	if output == nil {
		return nil, fmt.Errorf("%w: nil output function", ErrInvalidOption)
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if c.bytesSet {
		return nil, fmt.Errorf("%w: WithBatchBytes applies to Bytes only", ErrInvalidOption)
	}
	if c.lanes {
		return nil, fmt.Errorf("%w: WithLanes applies to Bytes only", ErrInvalidOption)
	}
	if c.vec != nil {
		return nil, fmt.Errorf("%w: WithVectors applies to Bytes only", ErrInvalidOption)
	}
	if c.keep != nil {
		return nil, fmt.Errorf("%w: WithKeep applies to Bytes only", ErrInvalidOption)
	}
	size := DefaultBatchSize
	if c.batchSizeSet {
		size = c.batchSize
	}
	if held := int64(size) * int64(unsafe.Sizeof(*new(T))) * int64(max(c.buffers, c.maxBuffers)); held > maxBytesHeld {
		return nil, fmt.Errorf("%w: %d buffers of %d items would hold %d bytes, over %d", ErrInvalidOption,
			max(c.buffers, c.maxBuffers), size, held, int64(maxBytesHeld))
	}
	b := &Batcher[T]{size: uint64(size)}
	newBuf := func() *itemBuf[T] { return &itemBuf[T]{items: make([]T, size), out: output} }
	bufs := make([]*itemBuf[T], c.buffers)
	for i := range bufs {
		bufs[i] = newBuf()
	}
	closed := &itemBuf[T]{out: output}
	b.e.init(&c, bufs, closed, nil, newBuf)
	return b, nil
}

// Add adds v to the current batch. With the Block policy it waits while
// every buffer is full; with DropNewest it returns ErrDropped instead. After
// Close it returns ErrClosed.
func (b *Batcher[T]) Add(v T) error { return b.add(v, b.e.drop) }

// TryAdd is Add that never waits for the output: when every buffer is full
// it returns ErrDropped, whatever the overflow policy.
func (b *Batcher[T]) TryAdd(v T) error { return b.add(v, true) }

func (b *Batcher[T]) add(v T, drop bool) error {
	b.e.enter()
	for {
		// No sealed pre-check here, unlike Bytes: a failed claim adds 1 to
		// a tail with 2^62 of headroom above the seal mark.
		c := b.e.cur.Load()
		if i := c.tail.Add(1) - 1; i < b.size {
			c.items[i] = v
			c.commit(i, 1)
			if i == 0 {
				b.e.started(&c.lane)
			}
			if i == b.size-1 {
				b.e.rotate(c, b.size)
			}
			return nil
		}
		if err := b.e.waitRotation(c, drop, 1); err != nil {
			return err
		}
	}
}

// AddMany adds the values of vs in order, as if by one Add each, but claims
// space for as many as fit with one atomic operation. On ErrDropped or
// ErrClosed the values before the failing one were added.
func (b *Batcher[T]) AddMany(vs []T) error {
	b.e.enter()
	for len(vs) > 0 {
		c := b.e.cur.Load()
		if !c.sealed.Load() {
			k := uint64(len(vs))
			old := c.tail.Add(k) - k
			if old < b.size {
				m := min(k, b.size-old)
				copy(c.items[old:old+m], vs[:m])
				c.commit(old, m)
				if old == 0 {
					b.e.started(&c.lane)
				}
				if old+k >= b.size {
					b.e.rotate(c, b.size)
				}
				vs = vs[m:]
				continue
			}
		}
		if err := b.e.waitRotation(c, b.e.drop, len(vs)); err != nil {
			return err
		}
	}
	return nil
}

// Flush seals the current batch and returns once every value added before
// the call has been through the output function. While the output is busy
// it waits for it before sealing, so that Flushes from many goroutines
// share one batch (group commit) instead of making a batch each. It
// returns the output errors not reported yet, ErrClosed after Close,
// ErrReentry from the output function, or, while the output retries a
// failed batch (OutputFailing), that error at once.
func (b *Batcher[T]) Flush() error { return b.e.flush() }

// Ship seals the current batch so that it leaves as soon as the output is
// free, without waiting for it: a request-response protocol calls it when it
// has nothing more to read, so that replies gathered so far leave at once
// instead of at the end of the window.
func (b *Batcher[T]) Ship() { b.e.ship() }

// ShipHere is Ship, except that when the output goroutine is idle the
// batch goes through the output in the calling goroutine, before ShipHere
// returns. It saves waking the output goroutine, which costs more than a
// small batch on a machine where waking a thread is expensive; the caller
// must be free to run the output (hold nothing the output needs). The
// output's errors are reported as usual (Flush, Close, WithErrorHandler); a
// panic in it reaches the caller and leaves the batcher unusable.
func (b *Batcher[T]) ShipHere() { b.e.shipHere() }

// Close delivers every value added, stops the output goroutine and returns
// the output errors not reported yet. Later calls return the same result.
// Add and Flush return ErrClosed afterwards. From the output function it
// does nothing and returns ErrReentry: it would wait for itself.
func (b *Batcher[T]) Close() error { return b.e.close() }

// InOutput reports whether the caller is the goroutine running the output
// function (or a function it calls, such as an error handler), which must
// not wait for the output: Close and Flush return ErrReentry there.
func (b *Batcher[T]) InOutput() bool { return b.e.inOutput() }

// Wake makes producers waiting for a free buffer consult the WithAbort
// function again.
func (b *Batcher[T]) Wake() { b.e.wakeProducers() }

// OutputFailing tells the batcher that the output failed on its batch with
// err and is trying it again (it has not returned): Flush, waiting or
// called later, returns err at once instead of waiting for the retries,
// while the batch stays in line. Call it with nil once the output
// succeeds again. An output that gives a batch up returns its error
// instead, which the next Flush or Close returns.
func (b *Batcher[T]) OutputFailing(err error) { b.e.outputFailing(err) }

// Stats returns the batcher's counters.
func (b *Batcher[T]) Stats() Stats { return b.e.stats() }
