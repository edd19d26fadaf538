//go:build !linux

package testfd

import "testing"

// Exhaust skips the test: it needs Linux's /proc/self/fd.
func Exhaust(tb testing.TB, spare int) (restore func()) {
	tb.Skip("testfd.Exhaust needs Linux")
	return func() {}
}
