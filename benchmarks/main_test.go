package benchmarks

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain removes the collector binary BenchmarkNet builds, and checks
// that no goroutine outlives the benchmarks: every target closes what it
// started (snail's sinks and Streams, the diode).
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		// lumberjack starts a goroutine to compress and prune backups on
		// its first rotation and never stops it: the peer's, not ours.
		if err := goleak.Find(goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// maxWarm is the most warmPages writes: below the 1 GiB of free pages
// that sets off a report on this VM (below).
const maxWarm = 768 << 20

// warmPages, when SNAIL_BENCH_WARM=1, writes n bytes (at most maxWarm)
// into a scratch file and deletes it just before a measurement, so that
// the measured writes land in page-cache pages the kernel has just freed.
//
// This VM's balloon driver reports free pages to the host (dmesg: "Free
// page reporting enabled"), which takes them back, and the first write
// into such a page faults on the host: dd measured 0.61-0.68 s of system
// CPU per GiB into reported pages against 0.13 s right after a delete.
// Its kernel reports as soon as more than 1 GiB is free
// (/sys/module/page_reporting/parameters: min_free_ms=0,
// max_waiting_mib=1024), so a benchmark that frees more than that at a
// time, as the collector rows do, writes into cold pages, while a logger
// on a machine whose page cache is full reuses pages reclaimed from its
// own old data, the warm case. The default stays cold, the harder case;
// the README's tables say which one each ran. A measurement that writes
// more than maxWarm meets cold pages for the rest.
func warmPages(b *testing.B, n int64) {
	if os.Getenv("SNAIL_BENCH_WARM") != "1" {
		return
	}
	n = min(n, maxWarm)
	f, err := os.CreateTemp(b.TempDir(), "warm-")
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		b.Fatal(err)
	}
}
