package batcher

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFlushWaitsForItsOwnEntries: goroutines that each add an entry and
// Flush in a loop, with others that only Flush and others that fill whole
// batches, find their entry delivered every time Flush returns. Flushes
// wait in groups, one per batch, and are woken by the batch they wait for,
// not by every batch: one woken too early would return before its entry is
// out.
func TestFlushWaitsForItsOwnEntries(t *testing.T) {
	for _, bytesBatcher := range []bool{false, true} {
		for _, window := range []time.Duration{0, 50 * time.Microsecond} {
			t.Run(fmt.Sprintf("bytes=%v/window=%v", bytesBatcher, window), func(t *testing.T) {
				testFlushWaitsForItsOwnEntries(t, bytesBatcher, window)
			})
		}
	}
}

func testFlushWaitsForItsOwnEntries(t *testing.T, bytesBatcher bool, window time.Duration) {
	const (
		flushers = 16
		rounds   = 300
		fillers  = 2
		fill     = 20000
	)
	var seen [flushers * rounds]atomic.Bool
	var delivered atomic.Int64
	mark := func(id uint32) {
		if id != ^uint32(0) { // the fillers' entries
			seen[id].Store(true)
		}
		delivered.Add(1)
	}
	var add func(id uint32) error
	var flush, closeB func() error
	if bytesBatcher {
		b, err := NewBytes(func(batch []byte, n int) error {
			for range n {
				mark(binary.LittleEndian.Uint32(batch))
				batch = batch[4:]
			}
			return nil
		}, WithBatchBytes(1<<10), WithBuffers(4), WithWindow(window))
		if err != nil {
			t.Fatal(err)
		}
		add = func(id uint32) error {
			var p [4]byte
			binary.LittleEndian.PutUint32(p[:], id)
			_, err := b.Write(p[:])
			return err
		}
		flush, closeB = b.Flush, b.Close
	} else {
		b, err := New(func(batch []uint32) error {
			for _, id := range batch {
				mark(id)
			}
			return nil
		}, WithBatchSize(256), WithBuffers(4), WithWindow(window))
		if err != nil {
			t.Fatal(err)
		}
		add, flush, closeB = b.Add, b.Flush, b.Close
	}
	var wg sync.WaitGroup
	for g := range flushers {
		wg.Go(func() {
			for r := range rounds {
				id := uint32(g*rounds + r)
				if err := add(id); err != nil {
					t.Error(err)
					return
				}
				if err := flush(); err != nil {
					t.Error(err)
					return
				}
				if !seen[id].Load() {
					t.Errorf("Flush returned before entry %d was delivered", id)
					return
				}
			}
		})
	}
	for range fillers {
		wg.Go(func() {
			for range fill {
				if err := add(^uint32(0)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() { // Flushes with no entry of their own
		for range rounds {
			if err := flush(); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	if err := closeB(); err != nil {
		t.Fatal(err)
	}
	if got, want := delivered.Load(), int64(flushers*rounds+fillers*fill); got != want {
		t.Fatalf("%d entries delivered, want %d", got, want)
	}
}

// TestShipHereOutputPanics: an output function that panics in a ShipHere
// caller that recovers (an HTTP server recovers its handlers' panics) does
// not leave the batcher waiting for it: later batches go out, and Flush
// reports the panic once.
func TestShipHereOutputPanics(t *testing.T) {
	var out []int
	b, err := New(func(batch []int) error {
		if batch[0] == 13 {
			panic("bad batch")
		}
		out = append(out, batch...)
		return nil
	}, WithWindow(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add(13); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if r := recover(); r != "bad batch" {
				t.Errorf("recovered %v, want the output's panic", r)
			}
		}()
		b.ShipHere()
	}()
	if err := b.Add(1); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); !errors.Is(err, errOutputPanicked) {
		t.Fatalf("Flush after the panic = %v, want %v", err, errOutputPanicked)
	}
	if err := b.Add(2); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close = %v, want the panic reported once, by Flush", err)
	}
	if fmt.Sprint(out) != "[1 2]" {
		t.Fatalf("output got %v, want [1 2]", out)
	}
	if st := b.Stats(); st.OutputErrors != 1 || st.Delivered != 3 {
		t.Fatalf("stats %+v, want 1 output error and 3 delivered", st)
	}
}

// TestFlushDoesNotAllocate: a Flush with entries to wait for, and one with
// none, allocate nothing (their groups are reused): an application that
// syncs its log after every entry pays no garbage for it.
func TestFlushDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	b, err := NewBytes(func([]byte, int) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	line := []byte("an entry\n")
	if n := testing.AllocsPerRun(10000, func() { _, _ = b.Write(line); _ = b.Flush() }); n != 0 {
		t.Errorf("Write and Flush: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(10000, func() { _ = b.Flush() }); n != 0 {
		t.Errorf("Flush with nothing written: %v allocs, want 0", n)
	}
}
