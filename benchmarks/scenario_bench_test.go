package benchmarks

import (
	"fmt"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"
)

var goroutineCounts = []int{1, 8, 64, 1024}

// BenchmarkLog logs b.N entries, shared out between G goroutines, through
// each target into a real file, then closes it and counts the lines in the
// file: entries/s counts only entries that reached the file. Reports
// allocs per entry, write syscalls per 1000 entries, the share lost, and
// the cores kept busy.
func BenchmarkLog(b *testing.B) {
	all := slices.Concat(zapTargets, zerologTargets, slogTargets)
	for _, g := range goroutineCounts {
		for _, tg := range all {
			b.Run(fmt.Sprintf("goroutines=%d/impl=%s", g, tg.name), func(b *testing.B) {
				runTarget(b, g, tg.make(b), false)
			})
		}
	}
}

// BenchmarkLatency measures how long one log call takes at 64 goroutines:
// p50, p99 and p99.9 of a sample of calls.
func BenchmarkLatency(b *testing.B) {
	all := slices.Concat(zapTargets, zerologTargets, slogTargets)
	for _, tg := range all {
		b.Run("goroutines=64/impl="+tg.name, func(b *testing.B) {
			runTarget(b, 64, tg.make(b), true)
		})
	}
}

// gcCycles returns the count of garbage collections completed so far.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func runTarget(b *testing.B, g int, t target, latency bool) {
	b.ReportAllocs()
	samples := make([][]time.Duration, g)
	var wg sync.WaitGroup
	start := make(chan struct{})
	per, extra := b.N/g, b.N%g
	id := 0
	for k := range g {
		n := per
		if k < extra {
			n++
		}
		first := id
		id += n
		wg.Go(func() {
			var s []time.Duration
			if latency {
				s = make([]time.Duration, 0, n/8+1)
			}
			<-start
			for i := first; i < first+n; i++ {
				if latency && i%8 == 0 {
					t0 := time.Now()
					t.log(i)
					s = append(s, time.Since(t0))
					continue
				}
				t.log(i)
			}
			samples[k] = s
		})
	}
	warmPages(b, int64(b.N)*256)
	sys0, gc0 := writeSyscalls(), gcCycles()
	b.ResetTimer()
	cpu0, t0 := selfCPU(), time.Now()
	close(start)
	wg.Wait()
	tf := time.Now()
	p := t.finish()
	elapsed := time.Since(t0)
	finish := time.Since(tf)
	cpu := selfCPU() - cpu0
	b.StopTimer()
	sys, gcs := writeSyscalls()-sys0, gcCycles()-gc0

	written := b.N
	if p != "" {
		written = countLines(b, p)
	}
	if t.lost == nil && written != b.N {
		b.Fatalf("%d of %d entries in the file", written, b.N)
	}
	b.ReportMetric(float64(written)/elapsed.Seconds(), "entries/s")
	// close-ms is the part of the time after the last log call: Close
	// (or Sync) writing what was still buffered, inside the measurement.
	b.ReportMetric(float64(finish.Microseconds())/1e3, "close-ms")
	b.ReportMetric(100*float64(b.N-written)/float64(b.N), "%lost")
	if t.stalls != nil {
		// Writes that slept waiting for a free buffer: where snail's
		// back-pressure shows in the latency tail.
		b.ReportMetric(float64(t.stalls())*1e6/float64(b.N), "stalls/1M")
		b.ReportMetric(float64(t.bufs()), "buffers")
	}
	if p != "" {
		b.ReportMetric(float64(sys)*1000/float64(b.N), "writes/1k")
	}
	// The process's CPU over the wall time: below 2 on this 2-core
	// machine, cores sat idle (writers asleep, the output waiting on I/O).
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cores-busy")
	// Garbage collections per million entries: the allocating loggers'
	// tails follow them, and a sink's buffers space them out.
	b.ReportMetric(float64(gcs)*1e6/float64(b.N), "gc/1M")
	if latency {
		all := slices.Concat(samples...)
		slices.Sort(all)
		if len(all) > 0 {
			q := func(f float64) float64 { return float64(all[int(f*float64(len(all)-1))].Nanoseconds()) / 1e3 }
			b.ReportMetric(q(0.5), "p50-us")
			b.ReportMetric(q(0.99), "p99-us")
			b.ReportMetric(q(0.999), "p99.9-us")
			b.ReportMetric(q(0.9999), "p99.99-us")
			// Calls of a millisecond or more: a goroutine that stopped
			// mid-call (asleep, yielding, preempted) waits behind every
			// runnable goroutine, each running until preempted.
			i, _ := slices.BinarySearch(all, time.Millisecond)
			b.ReportMetric(float64(len(all)-i)*1e6/float64(len(all)), "over-1ms/1M")
		}
	}
}
