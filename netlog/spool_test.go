package netlog

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
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
	sp, err := openSpool(dir, 1<<20, SpoolBlock, DefaultStreamName)
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
	sp, err = openSpool(dir, 1<<20, SpoolBlock, DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.closeFiles()
	if seq, _ := sp.take(); seq <= last {
		t.Fatalf("after a restart: %d, after %d given out before", seq, last)
	}
}

// A record damaged in place (a bad sector, not an append torn by a crash)
// costs only its own batch when its length still leads to the next record:
// the records after it are still sent. Damage to its length cuts the
// segment there, as a torn record does.
func TestSpoolSkipsADamagedRecord(t *testing.T) {
	var seg []byte
	starts := make([]int, 6)
	for seq := uint64(1); seq <= 5; seq++ {
		starts[seq] = len(seg)
		seg = appendSpoolRec(seg, seq, []byte(strings.Repeat("entry\n", int(seq))))
	}
	for _, tc := range []struct {
		name   string
		damage int // offset of the byte flipped
		queued []uint64
		note   string
	}{
		{"payload of 3", starts[3] + spoolRecHeader + 2, []uint64{1, 2, 4, 5}, "skipped 50 bytes at byte"},
		{"sequence number of 3", starts[3] + 5, []uint64{1, 2, 4, 5}, "a damaged record"},
		{"length of 3", starts[3] + 24, []uint64{1, 2}, "cut"},
		{"payload of 5, the last", starts[5] + spoolRecHeader, []uint64{1, 2, 3, 4}, "cut 62 bytes"},
	} {
		dir := t.TempDir()
		data := bytes.Clone(seg)
		data[tc.damage] ^= 0x40
		if err := os.WriteFile(filepath.Join(dir, "seg-00000000000000000001.spool"), data, 0o640); err != nil {
			t.Fatal(err)
		}
		sp, err := openSpool(dir, 1<<20, SpoolBlock, DefaultStreamName)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, r := range sp.queue {
			got = append(got, r.seq)
		}
		if !slices.Equal(got, tc.queued) || len(sp.cuts) != 1 || !strings.Contains(sp.cuts[0], tc.note) {
			t.Errorf("%s: queued %v, reported %q; want %v and %q", tc.name, got, sp.cuts, tc.queued, tc.note)
		}
		if seq, _ := sp.take(); seq <= tc.queued[len(tc.queued)-1] {
			t.Errorf("%s: next sequence number %d, after %v queued", tc.name, seq, tc.queued)
		}
		sp.closeFiles()
	}
}
