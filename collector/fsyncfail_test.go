package collector

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/netlog"
)

// failFsyncs makes every group fsync fail while the returned flag is set.
func failFsyncs(t *testing.T) *atomic.Bool {
	var fail atomic.Bool
	fail.Store(true)
	injected := errors.New("injected fsync failure")
	testHookFsync = func(string) error {
		if fail.Load() {
			return injected
		}
		return nil
	}
	t.Cleanup(func() { testHookFsync = nil })
	return &fail
}

// sendSeqs sends batches first..last of stream on conn ("id=K\n", one entry
// each, K = seq-1) and returns the status each was answered with.
func sendSeqs(t *testing.T, conn net.Conn, stream, first, last uint64) map[uint64]encoder.Status {
	t.Helper()
	writeSeqs(t, conn, stream, first, last)
	got := map[uint64]encoder.Status{}
	for uint64(len(got)) < last-first+1 {
		f := readFrame(t, conn)
		if f.Kind != encoder.KindAck || f.Stream != stream {
			t.Fatalf("got %v for %x", f.Kind, f.Stream)
		}
		for seq := f.Seq; seq <= f.LastSeq; seq++ {
			got[seq] = f.Status
		}
	}
	return got
}

// countIDs returns how many times each id 0..n-1 is in the file at path.
func countIDs(t *testing.T, path string, n int) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int, n)
	for _, l := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		k, err := strconv.Atoi(string(bytes.TrimPrefix(l, []byte("id="))))
		if err != nil || k < 0 || k >= n {
			t.Fatalf("bad line %q", l)
		}
		counts[k]++
	}
	return counts
}

func wantStatus(t *testing.T, got map[uint64]encoder.Status, want encoder.Status) {
	t.Helper()
	for seq, st := range got {
		if st != want {
			t.Fatalf("batch %d answered %v, want %v (all: %v)", seq, st, want, got)
		}
	}
}

// With AckFsync, a failed group fsync leaves every batch written since the
// last fsync that succeeded unacked: Linux may have dropped what it could
// not write, and reports that once. Sent again, those batches are written
// again instead of being taken for duplicates; sent once more after an
// fsync that succeeded, they are duplicates.
func TestFailedFsyncWritesBatchesAgain(t *testing.T) {
	fail := failFsyncs(t)
	dir := t.TempDir()
	c, addr := start(t, Config{Dir: dir, Ack: AckFsync})
	const stream = 9
	// A connection that stays keeps the output open, and its state in
	// memory, from one round to the next.
	keep := handshake(t, addr, 10, "f", "")
	defer keep.Close()
	round := func(want encoder.Status) {
		t.Helper()
		conn := handshake(t, addr, stream, "f", "")
		defer conn.Close()
		wantStatus(t, sendSeqs(t, conn, stream, 1, 3), want)
	}
	round(encoder.StatusUnavailable)
	fail.Store(false)
	round(encoder.StatusOK) // written again
	round(encoder.StatusOK) // duplicates
	for id, n := range countIDs(t, filepath.Join(dir, "f.log"), 3) {
		if n != 2 {
			t.Fatalf("id %d is in the file %d times, want 2 (once before the failed fsync, once after)", id, n)
		}
	}
	if st := c.Stats(); st.Entries != 6 || st.Duplicates != 3 {
		t.Fatalf("stats %+v: want 6 entries written and 3 duplicates", st)
	}
}

// The batches a failed fsync leaves to be written again are journaled: a
// collector started after it on the same directory writes them again too.
func TestFailedFsyncSurvivesRestart(t *testing.T) {
	fail := failFsyncs(t)
	dir := t.TempDir()
	const stream = 9
	_, addr, stop := serve(t, Config{Dir: dir, Ack: AckFsync})
	conn := handshake(t, addr, stream, "f", "")
	wantStatus(t, sendSeqs(t, conn, stream, 1, 3), encoder.StatusUnavailable)
	conn.Close()
	stop(false)

	fail.Store(false)
	_, addr = start(t, Config{Dir: dir, Ack: AckFsync})
	conn = handshake(t, addr, stream, "f", "")
	defer conn.Close()
	wantStatus(t, sendSeqs(t, conn, stream, 1, 3), encoder.StatusOK)
	for id, n := range countIDs(t, filepath.Join(dir, "f.log"), 3) {
		if n != 2 {
			t.Fatalf("id %d is in the file %d times, want 2", id, n)
		}
	}
}

// A stream's mark, which the journal keeps (and a compaction rewrites),
// stops below the first batch waiting to be written again.
func TestMarkStopsBelowRedo(t *testing.T) {
	o := &output{seen: map[uint64]uint64{1: 5, 2: 7}, used: map[uint64]uint64{1: 2, 2: 1}, redo: map[uint64][]uint64{1: {4, 3}}}
	if got, want := o.marks(), []idMark{{2, 7}, {1, 2}}; !slices.Equal(got, want) { // least recently written first
		t.Fatalf("marks %v, want %v", got, want)
	}
	o.doneRedo(1, 3)
	if got := o.mark(1); got != 3 {
		t.Fatalf("mark after 3 is written again: %d, want 3", got)
	}
	o.doneRedo(1, 4)
	if got := o.mark(1); got != 5 || len(o.redo) != 0 {
		t.Fatalf("mark after 4 is written again: %d (redo %v), want 5", got, o.redo)
	}
}

// Under load, four clients at once, with every third group fsync failing,
// every id reaches the file. A batch is in it once more for each failed fsync that covered it
// (the collector wrote it again each time), always whole: every id of a
// batch is there as many times, and the lines add up to the entries the
// collector counts written.
func TestFailedFsyncsUnderLoad(t *testing.T) {
	var rounds atomic.Int64
	injected := errors.New("injected fsync failure")
	testHookFsync = func(string) error {
		if rounds.Add(1)%3 == 0 {
			return injected
		}
		return nil
	}
	t.Cleanup(func() { testHookFsync = nil })
	dir := t.TempDir()
	c, addr := start(t, Config{Dir: dir, Ack: AckFsync})
	// Four clients share the output, each with its quarter of the ids.
	const clients, n, per = 4, 20000, 50
	errs := make(chan error, clients)
	for k := range clients {
		go func() {
			errs <- func() error {
				s, err := netlog.Dial(addr, netlog.WithStreamName("load"))
				if err != nil {
					return err
				}
				for first := k * n / clients; first < (k+1)*n/clients; first += per {
					var b []byte
					for id := first; id < first+per; id++ {
						b = fmt.Appendf(b, "id=%d\n", id)
					}
					if err := s.WriteBatch(b, per); err != nil {
						s.Close()
						return err
					}
				}
				return errors.Join(s.Sync(), s.Close())
			}()
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	lines, again := 0, 0
	counts := countIDs(t, filepath.Join(dir, "load.log"), n)
	for id, k := range counts {
		if k == 0 {
			t.Fatalf("id %d is missing", id)
		}
		if k != counts[id-id%per] {
			t.Fatalf("id %d is in the file %d times, the first of its batch %d times", id, k, counts[id-id%per])
		}
		lines += k
		if k > 1 && id%per == 0 {
			again += k - 1
		}
	}
	if st := c.Stats(); int(st.Entries) != lines {
		t.Fatalf("collector wrote %d entries; the file has %d lines", st.Entries, lines)
	}
	if rounds.Load() < 3 || again == 0 {
		t.Fatalf("%d fsync rounds, %d batches written again: no failure was exercised", rounds.Load(), again)
	}
	t.Logf("%d fsync rounds; %d batches, written again %d times in all", rounds.Load(), n/per, again)
}

// An output remembers at most maxClientIDs client stream ids, forgetting
// those that wrote least lately, and keeps that order across a restart
// (the journal's compaction writes it): the latest clients' batches sent
// again are still recognised, a forgotten client's are written again.
func TestClientIDsBounded(t *testing.T) {
	old := maxClientIDs
	t.Cleanup(func() { maxClientIDs = old }) // after the collectors stop
	maxClientIDs = 8
	dir := t.TempDir()
	write := func(addr string, id uint64) {
		t.Helper()
		conn := handshake(t, addr, id, "b", "")
		defer conn.Close()
		wantStatus(t, sendSeqs(t, conn, id, 1, 1), encoder.StatusOK)
	}
	check := func(c *Collector) {
		t.Helper()
		c.mu.Lock()
		o := c.outputs["b"]
		c.mu.Unlock()
		o.mu.Lock()
		defer o.mu.Unlock()
		if len(o.seen) > maxClientIDs {
			t.Fatalf("%d client ids remembered, bound %d", len(o.seen), maxClientIDs)
		}
		for id := uint64(17); id <= 20; id++ {
			if _, ok := o.seen[id]; !ok {
				t.Fatalf("client %d, among the last to write, forgotten: %v", id, o.seen)
			}
		}
		if _, ok := o.seen[1]; ok {
			t.Fatalf("client 1, the first to write, still remembered: %v", o.seen)
		}
	}
	c, addr, stop := serve(t, Config{Dir: dir})
	for id := uint64(1); id <= 20; id++ {
		write(addr, id)
	}
	check(c)
	if err, _ := stop(true); err != nil {
		t.Fatal(err)
	}

	c2, addr2 := start(t, Config{Dir: dir})
	write(addr2, 20) // sent again: acked, not written
	check(c2)
	write(addr2, 1) // forgotten: written again
	data, _ := os.ReadFile(filepath.Join(dir, "b.log"))
	if n := bytes.Count(data, []byte("\n")); n != 21 {
		t.Fatalf("%d lines, want 20 and client 1's batch again", n)
	}
}
