package benchmarks

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/sink"
)

// BenchmarkFileSync measures what a caller of Sync waits for into a local
// file: each goroutine writes one entry, then calls Sync. Without fsync,
// Sync returns once the entry is written to the operating system; the peer
// is one write() per entry behind a mutex, which is as far as that entry
// got when Write returned (zap's unbuffered file, without its fsync). With
// fsync, Sync returns once the entry is on disk; the peer is write() and
// fsync per entry behind a mutex (zap's unbuffered file, whose Sync is
// fsync). Concurrent Syncs share a batch, so that snail makes fewer writes
// than Syncs (writes/sync).
func BenchmarkFileSync(b *testing.B) {
	for _, fsync := range []bool{false, true} {
		for _, g := range []int{1, 64} {
			b.Run(fmt.Sprintf("fsync=%v/goroutines=%d/impl=snail", fsync, g), func(b *testing.B) {
				p := filepath.Join(b.TempDir(), "snail.log")
				opts := []filelog.Option{}
				if fsync {
					opts = append(opts, filelog.WithFsync(filelog.FsyncBatch))
				}
				f, err := filelog.Open(p, opts...)
				if err != nil {
					b.Fatal(err)
				}
				w, err := sink.New(f)
				if err != nil {
					b.Fatal(err)
				}
				elapsed := writeAndSync(b, g, w)
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				if got := countLines(b, p); got != b.N {
					b.Fatalf("%d of %d entries in the file", got, b.N)
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "syncs/s")
				b.ReportMetric(float64(f.Stats().Writes)/float64(b.N), "writes/sync")
			})
			b.Run(fmt.Sprintf("fsync=%v/goroutines=%d/impl=mutex", fsync, g), func(b *testing.B) {
				p := filepath.Join(b.TempDir(), "mutex.log")
				f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
				if err != nil {
					b.Fatal(err)
				}
				var mu sync.Mutex
				b.ResetTimer()
				t0 := time.Now()
				spread(b.N, g, func(i int) {
					mu.Lock()
					defer mu.Unlock()
					if _, err := f.Write(rawLines[i&(len(rawLines)-1)]); err != nil {
						b.Error(err)
					}
					if fsync {
						if err := f.Sync(); err != nil {
							b.Error(err)
						}
					}
				})
				elapsed := time.Since(t0)
				b.StopTimer()
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
				if got := countLines(b, p); got != b.N {
					b.Fatalf("%d of %d entries in the file", got, b.N)
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "syncs/s")
				b.ReportMetric(1, "writes/sync")
			})
		}
	}
}

// writeAndSync is the timed part of the Sync benchmarks: b.N entries from
// g goroutines, each written, then synced. It returns the time they took.
func writeAndSync(b *testing.B, g int, w *sink.Writer) time.Duration {
	b.ResetTimer()
	t0 := time.Now()
	spread(b.N, g, func(i int) {
		w.Write(rawLines[i&(len(rawLines)-1)])
		if err := w.Sync(); err != nil {
			b.Error(err)
		}
	})
	elapsed := time.Since(t0)
	b.StopTimer()
	return elapsed
}
