package batcher

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"
)

// The fan-in benchmarks compare snail's batcher with its peers (see
// peers_test.go) in one run, with the same workload: b.N items in all,
// shared out between G producer goroutines, each adding one item at a time.
// The clock stops once every item has been through the output. Compare
// with benchstat -col /impl.

var producerCounts = []int{1, 8, 64, 1024}

const (
	benchBatch      = 4096
	benchBatchBytes = 1 << 20
	benchBuffers    = 3
)

// runProducers runs b.N calls of add, split between g goroutines, and
// reports items/s.
func runProducers(b *testing.B, g int, add func(i int)) {
	var wg sync.WaitGroup
	per, extra := b.N/g, b.N%g
	start := make(chan struct{})
	for p := range g {
		n := per
		if p < extra {
			n++
		}
		wg.Go(func() {
			<-start
			for i := range n {
				add(i)
			}
		})
	}
	b.ResetTimer()
	close(start)
	wg.Wait()
}

func report(b *testing.B, elapsed time.Duration) {
	b.ReportMetric(float64(b.N)/elapsed.Seconds()/1e6, "Mitems/s")
}

func BenchmarkFanInInt(b *testing.B) {
	impls := []struct {
		name string
		make func(out func([]int)) fanIn[int]
	}{
		{"snail", func(out func([]int)) fanIn[int] {
			s, err := New(func(batch []int) error { out(batch); return nil },
				WithBatchSize(benchBatch), WithBuffers(benchBuffers))
			if err != nil {
				b.Fatal(err)
			}
			return snailFanIn[int]{s}
		}},
		{"chan", func(out func([]int)) fanIn[int] { return newChanPeer(benchBatch, benchBuffers, out) }},
		{"mutex", func(out func([]int)) fanIn[int] { return newLockPeer(benchBatch, benchBuffers, false, out) }},
		{"spin", func(out func([]int)) fanIn[int] { return newLockPeer(benchBatch, benchBuffers, true, out) }},
	}
	for _, g := range producerCounts {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("producers=%d/impl=%s", g, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				got := 0
				f := impl.make(func(batch []int) { got += len(batch) })
				t0 := time.Now()
				runProducers(b, g, func(i int) { f.add(i) })
				f.close()
				report(b, time.Since(t0))
				if got != b.N {
					b.Fatalf("%s delivered %d of %d items", impl.name, got, b.N)
				}
			})
		}
	}
}

type snailFanIn[T any] struct{ b *Batcher[T] }

func (s snailFanIn[T]) add(v T) {
	if err := s.b.Add(v); err != nil {
		panic(err)
	}
}
func (s snailFanIn[T]) close() {
	if err := s.b.Close(); err != nil {
		panic(err)
	}
}

// entryWriter is what the entry benchmarks drive.
type entryWriter interface {
	write([]byte)
	close()
}

type snailBytes struct{ b *Bytes }

func (s snailBytes) write(p []byte) {
	if _, err := s.b.Write(p); err != nil {
		panic(err)
	}
}
func (s snailBytes) close() {
	if err := s.b.Close(); err != nil {
		panic(err)
	}
}

// BenchmarkFanInEntry adds 200-byte log entries; MB/s counts entry bytes.
func BenchmarkFanInEntry(b *testing.B) {
	line := append(bytes.Repeat([]byte("x"), 199), '\n')
	impls := []struct {
		name string
		make func(out func([]byte, int)) entryWriter
	}{
		{"snail", func(out func([]byte, int)) entryWriter {
			s, err := NewBytes(func(batch []byte, n int) error { out(batch, n); return nil },
				WithBatchBytes(benchBatchBytes), WithBuffers(benchBuffers))
			if err != nil {
				b.Fatal(err)
			}
			return snailBytes{s}
		}},
		{"snail-lanes", func(out func([]byte, int)) entryWriter {
			s, err := NewBytes(func(batch []byte, n int) error { out(batch, n); return nil },
				WithBatchBytes(benchBatchBytes), WithBuffers(benchBuffers), WithLanes(true), WithCohort(false))
			if err != nil {
				b.Fatal(err)
			}
			return snailBytes{s}
		}},
		{"chan", func(out func([]byte, int)) entryWriter { return newChanBytesPeer(benchBatchBytes, benchBuffers, out) }},
		{"mutex", func(out func([]byte, int)) entryWriter {
			return newLockBytesPeer(benchBatchBytes, benchBuffers, false, out)
		}},
		{"spin", func(out func([]byte, int)) entryWriter {
			return newLockBytesPeer(benchBatchBytes, benchBuffers, true, out)
		}},
	}
	for _, g := range producerCounts {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("producers=%d/impl=%s", g, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(line)))
				got, size := 0, 0
				w := impl.make(func(batch []byte, n int) { got += n; size += len(batch) })
				t0 := time.Now()
				runProducers(b, g, func(int) { w.write(line) })
				w.close()
				report(b, time.Since(t0))
				if got != b.N || size != b.N*len(line) {
					b.Fatalf("%s delivered %d entries, %d bytes; want %d", impl.name, got, size, b.N)
				}
			})
		}
	}
}
