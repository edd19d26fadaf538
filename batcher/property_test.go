package batcher

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestPropertyDelivery draws random producer counts, item counts, batch
// sizes, buffer counts, windows and Flush interleavings, and checks that
// every item is delivered exactly once, in per-producer order, in batches
// that are never empty nor larger than the batch size, and that a
// producer's items are all delivered when its Flush returns.
func TestPropertyDelivery(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		producers := rapid.IntRange(1, 24).Draw(rt, "producers")
		per := rapid.IntRange(0, 1500).Draw(rt, "perProducer")
		size := rapid.IntRange(1, 300).Draw(rt, "batchSize")
		buffers := rapid.IntRange(2, 6).Draw(rt, "buffers")
		window := time.Duration(rapid.IntRange(0, 200).Draw(rt, "windowMicros")) * time.Microsecond
		flushEvery := rapid.IntRange(0, 400).Draw(rt, "flushEvery")
		manyChunk := rapid.IntRange(0, 40).Draw(rt, "addManyChunk")

		var mu sync.Mutex
		var got []uint64
		var bad error
		out := make([]int, producers) // items of each producer delivered, under mu
		b, err := New(func(batch []uint64) error {
			mu.Lock()
			defer mu.Unlock()
			if len(batch) == 0 || len(batch) > size {
				bad = errors.New("batch size out of bounds")
			}
			got = append(got, batch...)
			for _, id := range batch {
				out[id>>32]++
			}
			return nil
		}, WithBatchSize(size), WithBuffers(buffers), WithWindow(window), growShrink(rt, buffers))
		if err != nil {
			rt.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, producers)
		for p := range producers {
			wg.Go(func() {
				var chunk []uint64
				for s := range per {
					id := uint64(p)<<32 | uint64(s)
					var err error
					if manyChunk > 0 {
						chunk = append(chunk, id)
						if len(chunk) == manyChunk || s == per-1 {
							err = b.AddMany(chunk)
							chunk = chunk[:0]
						}
					} else {
						err = b.Add(id)
					}
					if err == nil && flushEvery > 0 && s%flushEvery == flushEvery-1 {
						if err = b.Flush(); err == nil && manyChunk == 0 {
							mu.Lock()
							n := out[p]
							mu.Unlock()
							if n != s+1 {
								err = fmt.Errorf("producer %d: %d items delivered when Flush returned, want %d", p, n, s+1)
							}
						}
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			rt.Fatal(err)
		}
		if err := b.Close(); err != nil {
			rt.Fatal(err)
		}
		if bad != nil {
			rt.Fatal(bad)
		}
		if len(got) != producers*per {
			rt.Fatalf("delivered %d, want %d", len(got), producers*per)
		}
		next := make([]uint64, producers)
		for _, id := range got {
			p, s := id>>32, id&(1<<32-1)
			if s != next[p] {
				rt.Fatalf("producer %d: seq %d, want %d", p, s, next[p])
			}
			next[p]++
		}
	})
}

// TestPropertyBytes is the same property for Bytes with random entry sizes,
// some larger than a whole batch, with and without lanes.
func TestPropertyBytes(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		producers := rapid.IntRange(1, 16).Draw(rt, "producers")
		per := rapid.IntRange(0, 800).Draw(rt, "perProducer")
		capBytes := rapid.IntRange(16, 4096).Draw(rt, "batchBytes")
		maxEntries := rapid.IntRange(1, 200).Draw(rt, "maxEntries")
		buffers := rapid.IntRange(2, 5).Draw(rt, "buffers")
		flushEvery := rapid.IntRange(0, 300).Draw(rt, "flushEvery")
		bigPct := rapid.IntRange(0, 5).Draw(rt, "bigPercent")
		mode := rapid.SampledFrom([]string{"tail", "lanes"}).Draw(rt, "mode")
		opts := []Option{WithBatchBytes(capBytes), WithBuffers(buffers), WithWindow(50 * time.Microsecond), growShrink(rt, buffers)}
		switch mode {
		case "lanes":
			// More lanes than cores, so that goroutines share cores and
			// move between Ps while bound to a lane.
			procs := rapid.IntRange(1, 8).Draw(rt, "procs")
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			opts = append(opts, WithLanes(true))
		default:
			opts = append(opts, WithBatchSize(maxEntries))
		}

		col := &lineCollector{t: t, capBytes: capBytes}
		b, err := NewBytes(col.out, opts...)
		if err != nil {
			rt.Fatal(err)
		}
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				var buf []byte
				for s := range per {
					pad := (p*31 + s*17) % 24
					if bigPct > 0 && (p+s)%100 < bigPct {
						pad = capBytes
					}
					buf = entry(buf, p, s, pad)
					if _, err := b.Write(buf); err != nil {
						t.Error(err)
						return
					}
					if flushEvery > 0 && s%flushEvery == 0 {
						if err := b.Flush(); err != nil {
							t.Error(err)
							return
						}
						if n := col.delivered(p); n != s+1 {
							t.Errorf("producer %d: %d lines delivered when Flush returned, want %d", p, n, s+1)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		if err := b.Close(); err != nil {
			rt.Fatal(err)
		}
		checkLines(t, col.lines, producers, per)
	})
}

// growShrink draws whether the batcher makes buffers past its count, up to
// how many, and how soon it gives them back (down to every 10 µs, so that
// shrinking runs between and during the producers' claims).
func growShrink(rt *rapid.T, buffers int) Option {
	most := rapid.IntRange(buffers, buffers+6).Draw(rt, "maxBuffers")
	shrink := time.Duration(rapid.IntRange(0, 2000).Draw(rt, "shrinkMicros")) * time.Microsecond
	return func(c *config) error {
		if err := WithMaxBuffers(most)(c); err != nil {
			return err
		}
		return WithShrinkAfter(shrink)(c)
	}
}
