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
// that sets off a report here.
const maxWarm = 768 << 20

// warmPages, when SNAIL_BENCH_WARM=1, writes n bytes into a scratch file
// and deletes it just before a measurement, so that the measured writes
// land in page-cache pages the kernel has just freed. On a VM whose
// balloon driver reports free pages to the host (dmesg: "Free page
// reporting enabled"), the first write into a page that has sat free for
// a few seconds faults on the host: dd measured 0.61-0.68 s of system CPU
// per GiB into such pages against 0.13 s right after a delete. A logger
// that has run for a while reuses pages the kernel reclaims from its own
// old data, the warm case; a benchmark writing a fresh file on an idle
// machine meets the cold one. The default stays cold (the harder case);
// the README's tables say which one each ran.
//
// The warm pages last only so long: this VM's kernel reports free pages
// at once (page_reporting's min_free_ms=0) whenever more than
// max_waiting_mib (1024) wait, so warmPages frees at most maxWarm, and a
// measurement that writes more than that meets cold pages for the rest
// (and the files it deletes, over 1 GiB, set off the next report).
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
