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
