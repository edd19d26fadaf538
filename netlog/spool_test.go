package netlog

import (
	"encoding/binary"
	"os"
	"path/filepath"
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

// What recovery cuts from a segment is described for the error handler,
// with the batch its header names when the header is there.
func TestCutNote(t *testing.T) {
	rec := appendSpoolRec(nil, 7, []byte("entry\n"))
	for _, tc := range []struct {
		name  string
		data  []byte
		acked uint64
		want  []string
	}{
		{"half a header", rec[:10], 0, []string{"cut 10 bytes at byte 0", "entries in it are lost"}},
		{"header, half the payload", rec[:spoolRecHeader+2], 0, []string{"batch 7 of 1 entries", "lost"}},
		{"header of an acked batch", rec[:spoolRecHeader+2], 7, []string{"batch 7 by its header, which was acked"}},
		{"not a record", []byte("garbage, not a record header"), 0, []string{"cut 28 bytes", "lost"}},
	} {
		got := cutNote("/x/seg-1.spool", tc.data, 0, tc.acked)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tc.name, got, w)
			}
		}
	}
}

// Every sequence number the spool gives out is below the one its state
// file says a restarted client starts from, and that value was fsynced
// before the number was given out (a block at a time): a crash of the
// machine, losing the state file's later writes, cannot make a restarted
// client reuse a number the collector has seen.
func TestSpoolReservesAhead(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<20, SpoolBlock)
	if err != nil {
		t.Fatal(err)
	}
	stored := func() uint64 {
		b, err := os.ReadFile(filepath.Join(dir, "state"))
		if err != nil || len(b) != spoolStateSize {
			t.Fatalf("state: %d bytes, %v", len(b), err)
		}
		return binary.LittleEndian.Uint64(b[12:])
	}
	var synced uint64 // what the state file said when it was last fsynced
	testHookStateSynced = func() { synced = stored() }
	defer func() { testHookStateSynced = nil }()
	var last uint64
	for range 3 * seqBlock {
		seq, err := sp.take()
		if err != nil {
			t.Fatal(err)
		}
		if seq <= last {
			t.Fatalf("sequence number %d after %d", seq, last)
		}
		last = seq
		if synced <= seq {
			t.Fatalf("gave out %d with the state file fsynced at %d", seq, synced)
		}
	}
	sp.closeFiles()
	sp, err = openSpool(dir, 1<<20, SpoolBlock)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.closeFiles()
	if seq, _ := sp.take(); seq <= last {
		t.Fatalf("after a restart: %d, after %d given out before", seq, last)
	}
}
