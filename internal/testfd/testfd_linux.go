package testfd

import (
	"os"
	"strconv"
	"syscall"
	"testing"
)

// Exhaust lowers the process's open-file limit to a little above the
// descriptors open now and takes every free one below it but spare, so
// that the process's opens past those spare fail with EMFILE. The returned
// function gives them back and restores the limit; it runs at the test's
// cleanup too, and may be called more than once. The test skips when the
// limit cannot be read or lowered.
//
// The limit is the whole process's: no other test may run meanwhile (none
// of a package's tests that are not parallel overlaps another).
func Exhaust(tb testing.TB, spare int) (restore func()) {
	tb.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		tb.Skip("no RLIMIT_NOFILE:", err)
	}
	limit := old
	limit.Cur = uint64(highest(tb) + spare + 16)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &limit); err != nil {
		tb.Skip("cannot lower RLIMIT_NOFILE:", err)
	}
	var fillers []*os.File
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		for _, f := range fillers {
			f.Close()
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
			tb.Errorf("restoring RLIMIT_NOFILE: %v", err)
		}
	}
	tb.Cleanup(restore)
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break // EMFILE: every descriptor below the limit is taken
		}
		fillers = append(fillers, f)
	}
	if len(fillers) < spare {
		restore()
		tb.Fatalf("only %d descriptors were free below the limit, want %d spare", len(fillers), spare)
	}
	for _, f := range fillers[len(fillers)-spare:] {
		f.Close()
	}
	fillers = fillers[:len(fillers)-spare]
	return restore
}

// highest returns the highest file descriptor open in the process.
func highest(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skip("no /proc/self/fd:", err)
	}
	top := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > top {
			top = n
		}
	}
	return top
}
