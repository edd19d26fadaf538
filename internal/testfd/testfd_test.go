package testfd

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestExhaust: with 2 descriptors spare, two opens succeed and the third
// fails with EMFILE; after restore, opens succeed again.
func TestExhaust(t *testing.T) {
	restore := Exhaust(t, 2)
	var opened []*os.File
	for range 2 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			restore()
			t.Fatalf("a spare descriptor: %v", err)
		}
		opened = append(opened, f)
	}
	_, err := os.Open(os.DevNull)
	restore()
	restore() // twice is fine
	for _, f := range opened {
		f.Close()
	}
	if !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("open past the spare ones: %v, want EMFILE", err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatalf("after restore: %v", err)
	}
	f.Close()
}
