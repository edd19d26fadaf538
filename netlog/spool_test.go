package netlog

import (
	"strings"
	"testing"
	"time"
)

// One spool directory, one Stream: a second one (another process, or the
// same) is refused while the first holds it, and takes it once it closed.
func TestSpoolInUse(t *testing.T) {
	dir := t.TempDir()
	opts := []ClientOption{WithSpool(dir, 1<<20, SpoolBlock), WithDrainTimeout(10 * time.Millisecond)}
	s, err := Dial("127.0.0.1:1", opts...)
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := Dial("127.0.0.1:1", opts...); err == nil || !strings.Contains(err.Error(), "in use") {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second Stream on the spool: %v", err)
	}
	s.Close()
	s2, err := Dial("127.0.0.1:1", opts...)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	if s2.id != s.id {
		t.Fatalf("stream id %x, then %x: the spool keeps it", s.id, s2.id)
	}
	s2.Close()
}
