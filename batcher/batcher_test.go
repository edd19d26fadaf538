package batcher

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// collector records every batch an output function receives.
type collector[T any] struct {
	mu      sync.Mutex
	batches [][]T
}

func (c *collector[T]) out(b []T) error {
	c.mu.Lock()
	c.batches = append(c.batches, append([]T(nil), b...))
	c.mu.Unlock()
	return nil
}

func (c *collector[T]) all() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	var r []T
	for _, b := range c.batches {
		r = append(r, b...)
	}
	return r
}

func (c *collector[T]) nbatches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.batches)
}

func TestNewOptions(t *testing.T) {
	out := func([]int) error { return nil }
	for _, tc := range []struct {
		name string
		opts []Option
		ok   bool
	}{
		{"defaults", nil, true},
		{"nil option", []Option{nil}, true},
		{"batch size 1", []Option{WithBatchSize(1)}, true},
		{"batch size 0", []Option{WithBatchSize(0)}, false},
		{"batch size negative", []Option{WithBatchSize(-5)}, false},
		{"batch size huge", []Option{WithBatchSize(1 << 30)}, false},
		{"buffers 2", []Option{WithBuffers(2)}, true},
		{"buffers 1", []Option{WithBuffers(1)}, false},
		{"buffers 5000", []Option{WithBuffers(5000)}, false},
		{"max buffers 16", []Option{WithMaxBuffers(16)}, true},
		{"max buffers 2 lowers the default count", []Option{WithMaxBuffers(2)}, true},
		{"max buffers 1", []Option{WithMaxBuffers(1)}, false},
		{"max buffers 5000", []Option{WithMaxBuffers(5000)}, false},
		{"max buffers below buffers", []Option{WithBuffers(4), WithMaxBuffers(3)}, false},
		{"max buffers equal to buffers", []Option{WithBuffers(4), WithMaxBuffers(4)}, true},
		{"shrink after a second", []Option{WithMaxBuffers(8), WithShrinkAfter(time.Second)}, true},
		{"shrink never", []Option{WithShrinkAfter(0)}, true},
		{"shrink period negative", []Option{WithShrinkAfter(-time.Second)}, false},
		{"window 0", []Option{WithWindow(0)}, true},
		{"window negative", []Option{WithWindow(-time.Second)}, false},
		{"overflow drop", []Option{WithOverflow(DropNewest)}, true},
		{"overflow unknown", []Option{WithOverflow(Overflow(7))}, false},
		{"batch bytes on Batcher", []Option{WithBatchBytes(1024)}, false},
		{"buffers x batch size over the memory bound", []Option{WithBatchSize(1 << 24), WithMaxBuffers(1024)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(out, tc.opts...)
			if tc.ok {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if err := b.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("New = %v, want ErrInvalidOption", err)
			}
			if b != nil {
				t.Fatal("New returned a batcher with an error")
			}
		})
	}
	if _, err := New[int](nil); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("New(nil) = %v, want ErrInvalidOption", err)
	}
	if _, err := NewBytes(nil); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("NewBytes(nil) = %v, want ErrInvalidOption", err)
	}
	if _, err := NewBytes(func([]byte, int) error { return nil }, WithBatchBytes(0)); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("NewBytes(WithBatchBytes(0)) = %v, want ErrInvalidOption", err)
	}
	// Each in range, together 1 TiB: refused, not a fatal out-of-memory.
	if _, err := NewBytes(func([]byte, int) error { return nil }, WithBatchBytes(1<<30), WithBuffers(1024)); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("NewBytes of 1024 buffers of 1 GiB = %v, want ErrInvalidOption", err)
	}
}

// checkDelivery asserts that got holds every id of producers x perProducer
// exactly once, and each producer's ids in increasing order. An id is
// producer<<32 | seq.
func checkDelivery(t *testing.T, got []uint64, producers, perProducer int) {
	t.Helper()
	if len(got) != producers*perProducer {
		t.Fatalf("delivered %d items, want %d", len(got), producers*perProducer)
	}
	next := make([]uint64, producers)
	for _, id := range got {
		p, s := id>>32, id&(1<<32-1)
		if int(p) >= producers {
			t.Fatalf("unknown producer in id %x", id)
		}
		if s != next[p] {
			t.Fatalf("producer %d: got seq %d, want %d (lost, duplicated or reordered)", p, s, next[p])
		}
		next[p]++
	}
}

func TestExactlyOnceInOrder(t *testing.T) {
	for _, tc := range []struct {
		producers, per, size, buffers int
		many                          bool
	}{
		{1, 10000, 64, 2, false},
		{8, 5000, 100, 3, false},
		{64, 1000, 7, 2, false},
		{64, 1000, 4096, 3, false},
		{200, 200, 1, 2, false},
		{16, 3000, 50, 4, true},
	} {
		t.Run(fmt.Sprintf("p%d_n%d_size%d_buf%d_many%v", tc.producers, tc.per, tc.size, tc.buffers, tc.many), func(t *testing.T) {
			var col collector[uint64]
			var maxBatch atomic.Int64
			b, err := New(func(batch []uint64) error {
				if int64(len(batch)) > maxBatch.Load() {
					maxBatch.Store(int64(len(batch)))
				}
				if len(batch) == 0 {
					t.Error("empty batch")
				}
				return col.out(batch)
			}, WithBatchSize(tc.size), WithBuffers(tc.buffers))
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for p := range tc.producers {
				wg.Go(func() {
					if tc.many {
						chunk := make([]uint64, 0, 37)
						for s := range tc.per {
							chunk = append(chunk, uint64(p)<<32|uint64(s))
							if len(chunk) == cap(chunk) || s == tc.per-1 {
								if err := b.AddMany(chunk); err != nil {
									t.Error(err)
									return
								}
								chunk = chunk[:0]
							}
						}
						return
					}
					for s := range tc.per {
						if err := b.Add(uint64(p)<<32 | uint64(s)); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			checkDelivery(t, col.all(), tc.producers, tc.per)
			if maxBatch.Load() > int64(tc.size) {
				t.Fatalf("batch of %d items, size is %d", maxBatch.Load(), tc.size)
			}
			st := b.Stats()
			want := uint64(tc.producers * tc.per)
			if st.Added != want || st.Delivered != want || st.Dropped != 0 || st.Batches != uint64(col.nbatches()) {
				t.Fatalf("stats %+v, want %d added and delivered in %d batches", st, want, col.nbatches())
			}
		})
	}
}

func TestFlushDeliversEverythingAddedBefore(t *testing.T) {
	var delivered atomic.Int64
	b, err := New(func(batch []int) error {
		delivered.Add(int64(len(batch)))
		return nil
	}, WithBatchSize(1000), WithWindow(0))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 2500 {
				if err := b.Add(i); err != nil {
					t.Error(err)
					return
				}
				if i%500 == 0 {
					// Everything this goroutine added is out once Flush returns.
					if err := b.Flush(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	for range 3 {
		if err := b.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := delivered.Load(); got != 20000 {
			t.Fatalf("after Flush, %d delivered, want 20000", got)
		}
	}
	if err := b.Add(1); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil || delivered.Load() != 20001 {
		t.Fatalf("Flush = %v with %d delivered, want 20001", err, delivered.Load())
	}
}

// TestFlushesWhileOutputBusyShareABatch: goroutines that each add an
// entry and call Flush while the output is busy get one batch between
// them once it is free (group commit), not a batch each. With a batch
// each, writers that log and Sync in a loop waited for free buffers, and
// over a network each Sync's one-entry batch waited for a frame's room in
// the window: 64 goroutines made no more Syncs a second than one.
func TestFlushesWhileOutputBusyShareABatch(t *testing.T) {
	for _, bytesBatcher := range []bool{false, true} {
		t.Run(fmt.Sprintf("bytes=%v", bytesBatcher), func(t *testing.T) {
			gate := make(chan struct{})
			var mu sync.Mutex
			var sizes []int
			output := func(n int) error {
				mu.Lock()
				first := len(sizes) == 0
				sizes = append(sizes, n)
				mu.Unlock()
				if first {
					<-gate // busy with the first batch until released
				}
				return nil
			}
			var add func(int) error
			var flush func() error
			var waiters func() int
			var closeB func() error
			if bytesBatcher {
				b, err := NewBytes(func(_ []byte, n int) error { return output(n) }, WithBatchBytes(1<<16), WithWindow(0))
				if err != nil {
					t.Fatal(err)
				}
				add = func(int) error { _, err := b.Write([]byte("entry\n")); return err }
				flush, closeB = b.Flush, b.Close
				waiters = func() int { b.e.mu.Lock(); defer b.e.mu.Unlock(); return b.e.flushWaits }
			} else {
				b, err := New(func(batch []int) error { return output(len(batch)) }, WithBatchSize(1000), WithWindow(0))
				if err != nil {
					t.Fatal(err)
				}
				add, flush, closeB = b.Add, b.Flush, b.Close
				waiters = func() int { b.e.mu.Lock(); defer b.e.mu.Unlock(); return b.e.flushWaits }
			}
			defer closeB()
			var release sync.Once
			defer release.Do(func() { close(gate) }) // before Close, if the test fails
			if err := add(0); err != nil {
				t.Fatal(err)
			}
			first := make(chan error, 1)
			go func() { first <- flush() }() // the output takes this batch and blocks
			waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
			const g = 32
			var wg sync.WaitGroup
			for i := range g {
				wg.Go(func() {
					if err := add(i); err != nil {
						t.Error(err)
					}
					if err := flush(); err != nil {
						t.Error(err)
					}
				})
			}
			waitFor(t, func() bool { return waiters() >= g+1 }) // every Flush waits, the first for the batch the output holds
			release.Do(func() { close(gate) })
			wg.Wait()
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			total := 0
			for _, n := range sizes {
				total += n
			}
			if total != g+1 {
				t.Fatalf("batches %v hold %d entries, want %d", sizes, total, g+1)
			}
			if len(sizes) != 2 {
				t.Errorf("batches %v: the %d Flushes that came while the output was busy made %d batches, want 1", sizes, g, len(sizes)-1)
			}
		})
	}
}

func TestOutputErrorsAreReported(t *testing.T) {
	boom := errors.New("disk on fire")
	var handled []error
	var mu sync.Mutex
	fail := atomic.Bool{}
	fail.Store(true)
	b, err := New(func(batch []int) error {
		if fail.Load() {
			return fmt.Errorf("write %d items: %w", len(batch), boom)
		}
		return nil
	}, WithBatchSize(10), WithErrorHandler(func(err error) {
		mu.Lock()
		handled = append(handled, err)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 25 { // two full batches and a partial one
		if err := b.Add(i); err != nil {
			t.Fatal(err)
		}
	}
	err = b.Flush()
	if !errors.Is(err, boom) {
		t.Fatalf("Flush = %v, want %v", err, boom)
	}
	if err := b.Flush(); err != nil {
		t.Fatalf("second Flush = %v, want nil: errors are reported once", err)
	}
	mu.Lock()
	if len(handled) != 3 {
		t.Fatalf("error handler saw %d errors, want 3", len(handled))
	}
	mu.Unlock()
	if st := b.Stats(); st.OutputErrors != 3 || st.Delivered != 25 {
		t.Fatalf("stats %+v, want 3 output errors, 25 delivered", st)
	}

	// Many failures are summarised, not kept without bound.
	for i := range 200 {
		_ = b.Add(i)
	}
	if err := b.Flush(); err == nil || !errors.Is(err, boom) {
		t.Fatalf("Flush = %v", err)
	}

	_ = b.Add(1)
	if err := b.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close = %v, want the unreported output error", err)
	}
	if err := b.Close(); !errors.Is(err, boom) {
		t.Fatalf("second Close = %v, want the same result", err)
	}
}

func TestClosed(t *testing.T) {
	var col collector[int]
	b, err := New(col.out)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		_ = b.Add(i)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(col.all()); got != 10 {
		t.Fatalf("Close delivered %d items, want 10", got)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := b.Add(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close = %v, want ErrClosed", err)
	}
	if err := b.TryAdd(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("TryAdd after Close = %v, want ErrClosed", err)
	}
	if err := b.AddMany([]int{1, 2}); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddMany after Close = %v, want ErrClosed", err)
	}
	if err := b.Flush(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close = %v, want ErrClosed", err)
	}
}

// TestCloseRacingAdds checks that an Add that returned nil is delivered even
// when Close runs at the same time, and that the rest get ErrClosed.
// TestCloseRacingAdds: producers that add, and some that also Flush after
// every add, while Close comes: every add accepted is delivered, and every
// Flush returns (nil, or ErrClosed once Close has begun), none left waiting
// in a group for a batch Close took.
func TestCloseRacingAdds(t *testing.T) {
	for round := range 20 {
		var col collector[uint64]
		b, err := New(col.out, WithBatchSize(16), WithBuffers(2))
		if err != nil {
			t.Fatal(err)
		}
		var accepted atomic.Int64
		var wg sync.WaitGroup
		for p := range 8 {
			flushes := p%2 == 1
			wg.Go(func() {
				for s := 0; ; s++ {
					err := b.Add(uint64(p)<<32 | uint64(s))
					if err == nil {
						accepted.Add(1)
						if flushes {
							err = b.Flush()
						}
					}
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		for accepted.Load() < int64(100*(round+1)) {
			time.Sleep(10 * time.Microsecond)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		got := col.all()
		if int64(len(got)) != accepted.Load() {
			t.Fatalf("round %d: delivered %d, accepted %d", round, len(got), accepted.Load())
		}
	}
}

func TestWindowFlushesPartialBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var col collector[int]
		b, err := New(col.out, WithBatchSize(100), WithWindow(10*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		// An idle batcher sends nothing: the window timer never fires empty batches.
		time.Sleep(time.Second)
		synctest.Wait()
		if n := col.nbatches(); n != 0 {
			t.Fatalf("%d batches while idle, want 0", n)
		}

		_ = b.Add(1)
		time.Sleep(5 * time.Millisecond)
		_ = b.Add(2)
		time.Sleep(4 * time.Millisecond)
		synctest.Wait()
		if n := col.nbatches(); n != 0 {
			t.Fatalf("batch left after 9ms of a 10ms window")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := col.all(); len(got) != 2 || col.nbatches() != 1 {
			t.Fatalf("after the window: %d batches, items %v; want 1 batch [1 2]", col.nbatches(), got)
		}

		// The window is measured from the batch's first item.
		time.Sleep(time.Hour)
		_ = b.Add(3)
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if col.nbatches() != 2 {
			t.Fatalf("second batch did not leave on time")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if col.nbatches() != 2 {
			t.Fatalf("empty batches after the window")
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestWindowZeroWaitsForFullOrFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var col collector[int]
		b, _ := New(col.out, WithBatchSize(4), WithWindow(0))
		for i := range 6 {
			_ = b.Add(i)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if col.nbatches() != 1 {
			t.Fatalf("%d batches, want only the full one", col.nbatches())
		}
		if err := b.Flush(); err != nil || len(col.all()) != 6 {
			t.Fatalf("Flush = %v, %d items", err, len(col.all()))
		}
		_ = b.Close()
	})
}

// TestBlockWaitsForOutput shows back-pressure: with every buffer full and the
// output stuck, Add waits, and goes on once the output moves.
func TestBlockWaitsForOutput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		var col collector[int]
		b, _ := New(func(batch []int) error {
			<-gate
			return col.out(batch)
		}, WithBatchSize(10), WithBuffers(3), WithWindow(0))
		for i := range 30 { // fills all three buffers
			if err := b.Add(i); err != nil {
				t.Fatal(err)
			}
		}
		if st := b.Stats(); st.Stalls != 0 {
			t.Fatalf("%d stalls before any buffer was short", st.Stalls)
		}
		var done atomic.Bool
		go func() {
			_ = b.Add(30)
			done.Store(true)
		}()
		synctest.Wait()
		if done.Load() {
			t.Fatal("Add returned while every buffer was full")
		}
		close(gate)
		synctest.Wait()
		if !done.Load() {
			t.Fatal("Add still blocked after the output moved")
		}
		if st := b.Stats(); st.Stalls != 1 {
			t.Fatalf("%d stalls, want the one Add that waited", st.Stalls)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if got := len(col.all()); got != 31 {
			t.Fatalf("delivered %d, want 31", got)
		}
	})
}

// TestDropNewestBoundsMemory: with the output stuck, producers never wait,
// the number of items held is at most buffers x batch size, and everything
// accepted is delivered once the output moves.
func TestDropNewestBoundsMemory(t *testing.T) {
	const size, buffers = 100, 3
	gate := make(chan struct{})
	var col collector[uint64]
	b, err := New(func(batch []uint64) error {
		<-gate
		return col.out(batch)
	}, WithBatchSize(size), WithBuffers(buffers), WithOverflow(DropNewest), WithWindow(0))
	if err != nil {
		t.Fatal(err)
	}
	var accepted, dropped atomic.Int64
	var wg sync.WaitGroup
	for p := range 16 {
		wg.Go(func() {
			for s := range 10000 {
				switch err := b.Add(uint64(p)<<32 | uint64(s)); {
				case err == nil:
					accepted.Add(1)
				case errors.Is(err, ErrDropped):
					dropped.Add(1)
				default:
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait() // returns although the output never moved: nobody waited
	if got := accepted.Load(); got > size*buffers {
		t.Fatalf("accepted %d items with the output stuck; bound is %d", got, size*buffers)
	}
	if st := b.Stats(); st.Dropped != uint64(dropped.Load()) || st.Dropped == 0 {
		t.Fatalf("Stats.Dropped = %d, producers saw %d", st.Dropped, dropped.Load())
	}
	close(gate)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(col.all()); int64(got) != accepted.Load() {
		t.Fatalf("delivered %d, accepted %d", got, accepted.Load())
	}
}

// TestMaxBuffersGrowsThenBounds: with the output stuck, producers fill the
// buffers made up front, then the batcher makes more, one at a time up to
// WithMaxBuffers, and only then applies the overflow policy. Everything
// accepted is delivered once the output moves.
func TestMaxBuffersGrowsThenBounds(t *testing.T) {
	const size, buffers, most = 10, 2, 6
	gate := make(chan struct{})
	var col collector[uint64]
	b, err := New(func(batch []uint64) error {
		<-gate
		return col.out(batch)
	}, WithBatchSize(size), WithBuffers(buffers), WithMaxBuffers(most), WithOverflow(DropNewest), WithWindow(0))
	if err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Buffers != buffers {
		t.Fatalf("Stats.Buffers = %d before any add, want %d", st.Buffers, buffers)
	}
	var accepted uint64
	for s := range 1000 {
		switch err := b.Add(uint64(s)); {
		case err == nil:
			accepted++
		case errors.Is(err, ErrDropped):
		default:
			t.Fatal(err)
		}
	}
	// Each full batch but the one the stuck output holds waits in a buffer;
	// the current one takes size more.
	if accepted < size*(most-1) || accepted > size*most {
		t.Fatalf("accepted %d with the output stuck, want %d..%d", accepted, size*(most-1), size*most)
	}
	st := b.Stats()
	if st.Buffers != most || st.Dropped != 1000-accepted {
		t.Fatalf("stats %+v: want %d buffers and %d dropped", st, most, 1000-accepted)
	}
	close(gate)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, col.all(), accepted)
}

// checkSequence fails t unless got is 0, 1, ... n-1: every item delivered,
// once, in order.
func checkSequence(t *testing.T, got []uint64, n uint64) {
	t.Helper()
	if uint64(len(got)) != n {
		t.Fatalf("delivered %d of %d", len(got), n)
	}
	for i, v := range got {
		if v != uint64(i) {
			t.Fatalf("item %d is %d: out of order or lost", i, v)
		}
	}
}

// Buffers made for a burst are given back once a whole shrink period goes
// by without needing them, down to WithBuffers' count; the next burst makes
// them again, and nothing is lost on the way.
func TestShrinkAfterBurst(t *testing.T) {
	const size, buffers, most = 10, 2, 6
	gate := make(chan struct{}, 1000)
	var col collector[uint64]
	b, err := New(func(batch []uint64) error {
		<-gate
		return col.out(batch)
	}, WithBatchSize(size), WithBuffers(buffers), WithMaxBuffers(most), WithWindow(0), WithShrinkAfter(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var next uint64
	burst := func() {
		t.Helper()
		for range size*(most-1) + 1 { // every buffer taken with the output stuck
			if err := b.Add(next); err != nil {
				t.Fatal(err)
			}
			next++
		}
		if got := b.Stats().Buffers; got != most {
			t.Fatalf("%d buffers after a burst, want %d", got, most)
		}
		for range most {
			gate <- struct{}{}
		}
		if err := b.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	waitBuffers := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second) // far above the period
		for b.Stats().Buffers != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d buffers, want %d", b.Stats().Buffers, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	burst()
	waitBuffers(buffers)
	burst() // they come back when needed
	waitBuffers(buffers)

	// Steady use across many periods, shrinking and growing as the
	// periods fall: every batch still leaves whole and in order.
	stop := time.Now().Add(150 * time.Millisecond)
	for time.Now().Before(stop) {
		for range 3*size + 1 { // one batch in the output, two queued, one begun
			if err := b.Add(next); err != nil {
				t.Fatal(err)
			}
			next++
		}
		if got := b.Stats().Buffers; got != 4 {
			t.Fatalf("%d buffers while 4 are in use", got)
		}
		for range 4 {
			gate <- struct{}{}
		}
		if err := b.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, col.all(), next)
}

func TestTryAddNeverWaits(t *testing.T) {
	gate := make(chan struct{})
	b, _ := New(func([]int) error { <-gate; return nil }, WithBatchSize(5), WithBuffers(2), WithWindow(0))
	n := 0
	for i := range 100 {
		if err := b.TryAdd(i); err == nil {
			n++
		} else if !errors.Is(err, ErrDropped) {
			t.Fatal(err)
		}
	}
	if n != 10 {
		t.Fatalf("TryAdd accepted %d with the output stuck, want 10 (2 buffers x 5)", n)
	}
	close(gate)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAddDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	b, _ := New(func([]int) error { return nil }, WithBatchSize(1024))
	defer b.Close()
	if n := testing.AllocsPerRun(100000, func() { _ = b.Add(1) }); n != 0 {
		t.Fatalf("Add: %v allocs per item, want 0", n)
	}
	many := make([]int, 100)
	if n := testing.AllocsPerRun(10000, func() { _ = b.AddMany(many) }); n != 0 {
		t.Fatalf("AddMany: %v allocs per call, want 0", n)
	}
}

// TestAbortReleasesBlockedProducers: producers waiting for a buffer give up
// with the abort error once Wake is called.
func TestAbortReleasesBlockedProducers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		var failed atomic.Bool
		stuck := errors.New("output is failing")
		b, _ := New(func([]int) error { <-gate; return nil }, WithBatchSize(2), WithBuffers(2), WithWindow(0),
			WithAbort(func() error {
				if failed.Load() {
					return stuck
				}
				return nil
			}))
		for i := range 4 {
			_ = b.Add(i)
		}
		errc := make(chan error, 1)
		go func() { errc <- b.Add(99) }()
		synctest.Wait()
		select {
		case err := <-errc:
			t.Fatalf("Add returned %v with every buffer full", err)
		default:
		}
		failed.Store(true)
		b.Wake()
		synctest.Wait()
		if err := <-errc; !errors.Is(err, stuck) {
			t.Fatalf("Add = %v, want the abort error", err)
		}
		close(gate)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestShipSendsWithoutWaiting(t *testing.T) {
	for _, kind := range []string{"Batcher", "Bytes"} {
		t.Run(kind, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				got := make(chan int, 4)
				var add func() error
				var ship, closeFn func()
				if kind == "Batcher" {
					b, err := New(func(batch []int) error { got <- len(batch); return nil }, WithWindow(0))
					if err != nil {
						t.Fatal(err)
					}
					add, ship, closeFn = func() error { return b.Add(1) }, b.Ship, func() { b.Close() }
				} else {
					b, err := NewBytes(func(batch []byte, n int) error { got <- n; return nil }, WithWindow(0))
					if err != nil {
						t.Fatal(err)
					}
					add, ship, closeFn = func() error { _, err := b.Write([]byte("x\n")); return err }, b.Ship, func() { b.Close() }
				}
				defer closeFn()
				ship() // nothing to ship: no empty batch
				for range 3 {
					if err := add(); err != nil {
						t.Fatal(err)
					}
				}
				synctest.Wait()
				select {
				case n := <-got:
					t.Fatalf("a batch of %d left with the window off and no Ship", n)
				default:
				}
				ship()
				synctest.Wait()
				select {
				case n := <-got:
					if n != 3 {
						t.Fatalf("shipped batch has %d items, want 3", n)
					}
				default:
					t.Fatal("Ship did not send the batch")
				}
			})
		})
	}
}

// goroutineID returns the calling goroutine's id, for tests that check which
// goroutine ran the output.
func goroutineID() string {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	f := strings.Fields(string(buf[:n]))
	return f[1] // "goroutine N [running]:"
}

// ShipHere runs the output in the caller when the output goroutine is
// idle, and never next to it: with producers filling batches (which the
// output goroutine takes) and a goroutine calling ShipHere in a loop, the
// output never runs twice at once, and every value arrives exactly once,
// in order per producer.
func TestShipHere(t *testing.T) {
	t.Run("idle output runs in the caller", func(t *testing.T) {
		var ranIn string
		b, err := New(func(batch []int) error { ranIn = goroutineID(); return nil }, WithWindow(0))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		b.ShipHere() // nothing to ship
		if ranIn != "" {
			t.Fatal("ShipHere sent an empty batch")
		}
		for i := range 3 {
			if err := b.Add(i); err != nil {
				t.Fatal(err)
			}
		}
		b.ShipHere()
		if me := goroutineID(); ranIn != me {
			t.Fatalf("the output ran in goroutine %q, want the caller's %q", ranIn, me)
		}
		if st := b.Stats(); st.Delivered != 3 {
			t.Fatalf("delivered %d before ShipHere returned, want 3", st.Delivered)
		}
	})
	t.Run("contended", func(t *testing.T) {
		const producers, per = 16, 3000
		var col collector[uint64]
		var running atomic.Int32
		b, err := New(func(batch []uint64) error {
			if running.Add(1) != 1 {
				t.Error("the output ran twice at once")
			}
			defer running.Add(-1)
			return col.out(batch)
		}, WithBatchSize(64), WithBuffers(2), WithWindow(0))
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		shipper := make(chan struct{})
		go func() {
			defer close(shipper)
			for {
				select {
				case <-stop:
					return
				default:
					b.ShipHere()
					runtime.Gosched()
				}
			}
		}()
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for s := range per {
					if err := b.Add(uint64(p)<<32 | uint64(s)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(stop)
		<-shipper
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		checkDelivery(t, col.all(), producers, per)
	})
	t.Run("window still runs", func(t *testing.T) {
		// A batch that starts while ShipHere's caller runs the output still
		// leaves when its window ends: the output goroutine, woken to time
		// it while the caller was busy, must not miss it.
		busy := make(chan struct{}, 16)
		testHookOutputBusy = func() {
			select {
			case busy <- struct{}{}:
			default:
			}
		}
		defer func() { testHookOutputBusy = nil }()
		var b *Batcher[int]
		delivered := make(chan int, 8)
		first := true
		b, err := New(func(batch []int) error {
			if first {
				first = false
				for len(busy) > 0 {
					<-busy
				}
				if err := b.Add(2); err != nil { // starts the next batch
					t.Error(err)
				}
				// The output goroutine, woken to time it, finds this one
				// running the output and goes back to waiting.
				select {
				case <-busy:
				case <-time.After(5 * time.Second):
					t.Error("the output goroutine did not wake for the new batch")
				}
			}
			for _, v := range batch {
				delivered <- v
			}
			return nil
		}, WithWindow(10*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if err := b.Add(1); err != nil {
			t.Fatal(err)
		}
		b.ShipHere()
		for _, want := range []int{1, 2} {
			select {
			case v := <-delivered:
				if v != want {
					t.Fatalf("delivered %d, want %d", v, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("value %d not delivered: its window never ended", want)
			}
		}
	})
	t.Run("racing Close", func(t *testing.T) {
		for range 200 {
			var n atomic.Int64
			b, err := NewBytes(func(batch []byte, entries int) error { n.Add(int64(entries)); return nil }, WithWindow(0))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Write([]byte("x\n")); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { defer close(done); b.ShipHere() }()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			<-done
			b.ShipHere() // after Close: nothing happens
			if n.Load() != 1 {
				t.Fatalf("delivered %d entries, want 1", n.Load())
			}
		}
	})
}

// A producer that fills a batch hands the processor to the output goroutine
// it woke: with one processor and a producer that never blocks, every batch
// goes out before the next one fills, so the batcher never needs more than
// the buffers it started with. Without the hand-off the output goroutine
// waited for the producer's time slice to end, and each batch took a new
// buffer.
func TestFullBatchHandsOffToOutput(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	opts := []Option{WithBuffers(2), WithMaxBuffers(64), WithWindow(0)}
	writeBytes := func(t *testing.T, more ...Option) Stats {
		b, err := NewBytes(func([]byte, int) error { return nil }, append(opts, more...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		entry := make([]byte, 100)
		for range 2000 {
			if _, err := b.Write(entry); err != nil {
				t.Fatal(err)
			}
		}
		return b.Stats()
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T) Stats
	}{
		{"Batcher", func(t *testing.T) Stats {
			b, err := New(func([]int) error { return nil }, append(opts, WithBatchSize(160))...)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			for i := range 2000 {
				if err := b.Add(i); err != nil {
					t.Fatal(err)
				}
			}
			return b.Stats()
		}},
		{"Bytes", func(t *testing.T) Stats { return writeBytes(t, WithBatchBytes(16<<10)) }},
		{"Bytes with lanes", func(t *testing.T) Stats { return writeBytes(t, WithBatchBytes(16<<10), WithLanes(true)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.run(t)
			if st.Batches < 10 {
				t.Fatalf("%d batches out while the producer ran, want at least 10: the output waited", st.Batches)
			}
			if st.Buffers > 3 {
				t.Fatalf("the batcher made %d buffers for one producer: the output did not run between batches", st.Buffers)
			}
		})
	}
}

// The hand-off waits only for an output goroutine that is asleep: while it
// is busy with an earlier batch, producers that fill batches go on into the
// free buffers.
func TestHandOffSkipsBusyOutput(t *testing.T) {
	for _, lanes := range []bool{false, true} {
		t.Run(fmt.Sprintf("lanes=%v", lanes), func(t *testing.T) {
			release := make(chan struct{})
			busy := make(chan struct{})
			var outs atomic.Int64
			b, err := NewBytes(func([]byte, int) error {
				if outs.Add(1) == 1 {
					close(busy)
					<-release
				}
				return nil
			}, WithBatchBytes(16<<10), WithBuffers(4), WithWindow(0), WithLanes(lanes))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			entry := make([]byte, 100)
			write := func(n int) error {
				for range n {
					if _, err := b.Write(entry); err != nil {
						return err
					}
				}
				return nil
			}
			if err := write(200); err != nil { // fills the first batch: the output takes it and blocks
				t.Fatal(err)
			}
			<-busy
			done := make(chan struct{})
			go func() {
				defer close(done)
				if err := write(300); err != nil { // two more batches, into free buffers
					t.Error(err)
				}
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("a producer waited for a busy output with buffers free")
			}
			close(release)
			if err := b.Flush(); err != nil {
				t.Fatal(err)
			}
			if st := b.Stats(); st.Delivered != 500 || st.Stalls != 0 {
				t.Fatalf("delivered %d of 500, %d stalls, want 0", st.Delivered, st.Stalls)
			}
		})
	}
}

// waitFor polls cond until it holds, for at most 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
	}
}

// TestReentryFromOutput: the output function (an error handler it calls
// that logs, say) writing into its own batcher gets ErrReentry where it
// would wait for the output, which only it could end, instead of hanging:
// with every buffer full, for an entry too big for a buffer, for Flush and
// for Close (which then closes nothing). With room it writes as any
// producer does.
func TestReentryFromOutput(t *testing.T) {
	type result struct {
		taken                   int
		full, big, flush, close error
		in                      bool
	}
	res := make(chan result, 1)
	var b *Bytes
	first := true
	var delivered atomic.Int64
	b, err := NewBytes(func(batch []byte, n int) error {
		delivered.Add(int64(n))
		if !first {
			return nil
		}
		first = false
		var r result
		entry := []byte("from the output\n")
		for range 1000 { // 2 buffers of 64 B: room for a few entries only
			if _, err := b.Write(entry); err != nil {
				r.full = err
				break
			}
			r.taken++
		}
		_, r.big = b.Write(make([]byte, 200))
		r.flush = b.Flush()
		r.close = b.Close()
		r.in = b.InOutput()
		res <- r
		return nil
	}, WithBatchBytes(64), WithBuffers(2), WithWindow(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write([]byte("first\n")); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- b.Flush() }()
	var r result
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("the output function hung writing into its own batcher")
	}
	if r.taken == 0 || !errors.Is(r.full, ErrReentry) {
		t.Errorf("with room: %d entries taken, then %v; want some, then ErrReentry", r.taken, r.full)
	}
	if !errors.Is(r.big, ErrReentry) || !errors.Is(r.flush, ErrReentry) || !errors.Is(r.close, ErrReentry) {
		t.Errorf("big entry: %v, Flush: %v, Close: %v; want ErrReentry", r.big, r.flush, r.close)
	}
	if !r.in || b.InOutput() {
		t.Errorf("InOutput: %v in the output function, %v outside; want true, false", r.in, b.InOutput())
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := delivered.Load(); got != int64(1+r.taken) {
		t.Errorf("%d entries delivered, want %d: the first and the %d the output wrote", got, 1+r.taken, r.taken)
	}
}
