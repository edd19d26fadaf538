package batcher

import (
	"errors"
	"fmt"
	"time"
)

// Overflow is what producers do when every buffer is full because the output
// cannot keep up.
type Overflow int

const (
	// Block makes producers wait until a buffer is free. Nothing is lost.
	Block Overflow = iota
	// DropNewest makes producers return ErrDropped at once; the item is
	// counted in Stats.Dropped. Producers never wait for the output.
	DropNewest
)

func (o Overflow) String() string {
	switch o {
	case Block:
		return "block"
	case DropNewest:
		return "drop-newest"
	}
	return fmt.Sprintf("Overflow(%d)", int(o))
}

// Defaults and limits of the options.
const (
	DefaultBatchSize   = 4096             // items per batch for Batcher
	DefaultBatchBytes  = 1 << 20          // bytes per batch for Bytes
	DefaultBuffers     = 3                // triple buffering
	DefaultWindow      = time.Millisecond // time a batch may wait for more items
	DefaultShrinkAfter = time.Minute      // period after which buffers made and not needed are given back

	maxBatchSize  = 1 << 24 // items (Batcher) or entries (Bytes) per batch
	maxBatchBytes = 1 << 30 // bytes per batch (Bytes)
	maxBuffers    = 1024
	maxBytesHeld  = 1 << 34 // bytes in all of a batcher's buffers (16 GiB): each option in range, their product may not be
)

type config struct {
	batchSize    int
	batchSizeSet bool
	batchBytes   int
	bytesSet     bool
	buffers      int
	buffersSet   bool
	maxBuffers   int
	shrinkAfter  time.Duration
	window       time.Duration
	overflow     Overflow
	onError      func(error)
	abort        func() error
	noCohort     bool
	lanes        bool
	keep         func([]byte, int) ([]byte, error)
	vec          func([][]byte, int) error
}

// Option configures a batcher. Options validate their value and New returns
// the error, wrapped in ErrInvalidOption.
type Option func(*config) error

// WithBatchSize sets the number of items in a full batch (Batcher), or the
// largest number of entries in one batch (Bytes). Defaults to 4096 items for
// Batcher and to one entry per 32 bytes of batch for Bytes. At most 1<<24.
func WithBatchSize(n int) Option {
	return func(c *config) error {
		if n < 1 || n > maxBatchSize {
			return fmt.Errorf("batch size %d out of range [1, %d]", n, maxBatchSize)
		}
		c.batchSize, c.batchSizeSet = n, true
		return nil
	}
}

// WithBatchBytes sets the size in bytes of one batch buffer of a Bytes
// batcher: a batch leaves when the next entry would not fit. Defaults to
// 1 MiB; at most 1 GiB. It is an error to use it with Batcher.
func WithBatchBytes(n int) Option {
	return func(c *config) error {
		if n < 1 || n > maxBatchBytes {
			return fmt.Errorf("batch bytes %d out of range [1, %d]", n, maxBatchBytes)
		}
		c.batchBytes, c.bytesSet = n, true
		return nil
	}
}

// WithBuffers sets how many batch buffers the batcher owns: one filling while
// the others wait for or go through the output. Defaults to 3 (triple
// buffering); at least 2, at most 1024. Memory is buffers x batch size, at
// most 16 GiB (with WithMaxBuffers, the larger count counts).
func WithBuffers(n int) Option {
	return func(c *config) error {
		if n < 2 || n > maxBuffers {
			return fmt.Errorf("buffers %d out of range [2, %d]", n, maxBuffers)
		}
		c.buffers, c.buffersSet = n, true
		return nil
	}
}

// WithMaxBuffers lets the batcher make more buffers when producers would
// otherwise wait, up to n in all: when a batch is sealed and no buffer is
// free (the output is busy, or its goroutine not yet scheduled), the batcher
// allocates one more instead of making producers wait. Memory is then
// bounded by n x batch size, and the overflow policy applies once n
// buffers are full; buffers made for a burst are given back once it is
// over (WithShrinkAfter). Defaults
// to WithBuffers' count (no growth); at least 2, at most 1024. Given alone
// below the default count of buffers, it lowers that count to n.
func WithMaxBuffers(n int) Option {
	return func(c *config) error {
		if n < 2 || n > maxBuffers {
			return fmt.Errorf("max buffers %d out of range [2, %d]", n, maxBuffers)
		}
		c.maxBuffers = n
		return nil
	}
}

// WithShrinkAfter sets the period over which a batcher that made buffers
// past WithBuffers' count (WithMaxBuffers) checks whether it still needs
// them: the buffers that stayed free for a whole period are given back at
// its end, down to WithBuffers' count, so that a burst does not keep its
// memory for the life of the batcher. Defaults to 1 minute; 0 keeps them.
func WithShrinkAfter(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("shrink period %v is negative", d)
		}
		c.shrinkAfter = d
		return nil
	}
}

// WithWindow sets how long a batch may wait for more items after its first
// item arrived before it leaves anyway. Defaults to 1ms. Zero disables
// time-based flushing: batches then leave only when full or on Flush/Close.
func WithWindow(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("window %v is negative", d)
		}
		c.window = d
		return nil
	}
}

// WithOverflow sets the overflow policy. Defaults to Block.
func WithOverflow(o Overflow) Option {
	return func(c *config) error {
		if o != Block && o != DropNewest {
			return fmt.Errorf("unknown overflow policy %d", int(o))
		}
		c.overflow = o
		return nil
	}
}

// WithErrorHandler sets a function called with every error the output
// function returns, on the goroutine that ran the output (the output
// goroutine, or a ShipHere caller). The same errors are also returned from
// the next Flush or Close. It may add to the batcher: where that would wait
// for the output (no free buffer, Flush, Close), it gets ErrReentry.
func WithErrorHandler(f func(error)) Option {
	return func(c *config) error {
		c.onError = f
		return nil
	}
}

// WithCohort turns the per-core cohort on or off (default on). When
// producers collide, the cohort makes those on the core that does not hold
// the claim counter yield a few times before they claim, so that claims
// come in runs from one core and the counter's cache line stays put. That
// pays when adding is most of what producers do (fan-in of small items),
// and costs when producers do real work between adds (encoding log
// entries): there, turn it off.
func WithCohort(on bool) Option {
	return func(c *config) error {
		c.noCohort = !on
		return nil
	}
}

// WithLanes gives each P (the scheduler's processor, about a core) a lane
// of its own in every batch buffer of a Bytes batcher: producers claim
// space in chunks of the buffer that belong to their lane, so that
// producers on different cores never touch the same cache line, and a
// chunk is taken under a mutex once per few hundred entries. Each goroutine
// stays in one lane for the whole of a batch, so per-goroutine order holds
// even when the scheduler moves it between cores. The batch is moved
// together before it is output (one memmove per chunk). Measured here on
// 2 cores, against a single shared tail in the same run: 1.5x to 1.8x the
// entries per second with 8 to 1024 goroutines logging through zerolog
// into a file, 2.4x to 2.9x for goroutines doing nothing but write
// 200-byte entries; 0.86x for a lone producer of those. A chunk is a
// quarter of the batch buffer divided by the number of lanes, between 4 KiB
// and 256 KiB: on machines with many cores, raise WithBatchBytes so that
// chunks stay large and batches full. Bytes only; not with WithBatchSize;
// on architectures other than amd64 and arm64 it is ignored.
func WithLanes(on bool) Option {
	return func(c *config) error {
		c.lanes = on
		return nil
	}
}

// WithKeep lets a Bytes batcher's destination keep batch buffers instead of
// copying them, for destinations that must hold a batch after they return
// (until a peer acknowledges it). Each batch from the buffers then goes to
// keep instead of the output function. keep either keeps the batch and
// returns a spare buffer, which the batcher fills next in its place, or
// returns nil and leaves the batch with the batcher, as the output function
// does. A spare with less capacity than the batch buffer size is dropped and
// a new buffer allocated. Entries larger than a batch buffer still go to the
// output function: their slice is the writer's. Errors are handled as the
// output function's. Bytes only.
func WithKeep(keep func(batch []byte, entries int) (spare []byte, err error)) Option {
	return func(c *config) error {
		if keep == nil {
			return errors.New("nil keep function")
		}
		c.keep = keep
		return nil
	}
}

// WithVectors passes each batch that lanes left in several pieces of its
// buffer to vec, as those pieces in order, instead of moving them together
// and passing the result to the output function: a destination that writes
// a vector of buffers with one system call (writev) saves the batcher a
// copy of most of the batch. Batches in one piece, and entries larger than
// a batch buffer, still go to the output function. vec must not keep the
// slices. It applies with WithLanes only, and not with WithKeep. Bytes
// only.
func WithVectors(vec func(bufs [][]byte, entries int) error) Option {
	return func(c *config) error {
		if vec == nil {
			return errors.New("nil vectors function")
		}
		c.vec = vec
		return nil
	}
}

// WithAbort sets a function that producers waiting for a free buffer (the
// Block policy) consult when they wake: if it returns an error, Add or
// Write gives up and returns it. Call Wake after the condition changes.
// A sink uses it to release producers when its destination fails, instead
// of holding them until the destination recovers.
func WithAbort(f func() error) Option {
	return func(c *config) error {
		c.abort = f
		return nil
	}
}

func newConfig(opts []Option) (config, error) {
	c := config{buffers: DefaultBuffers, window: DefaultWindow, overflow: Block, shrinkAfter: DefaultShrinkAfter}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&c); err != nil {
			return c, fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
	}
	if c.maxBuffers > 0 && c.maxBuffers < c.buffers {
		if c.buffersSet {
			return c, fmt.Errorf("%w: max buffers %d below buffers %d", ErrInvalidOption, c.maxBuffers, c.buffers)
		}
		c.buffers = c.maxBuffers
	}
	return c, nil
}
