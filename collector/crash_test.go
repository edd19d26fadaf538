package collector

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
)

// sendRaw sends batches first..last of stream (writeSeqs) on a new
// connection and waits for their acks.
func sendRaw(t *testing.T, addr string, stream uint64, name string, first, last uint64) {
	t.Helper()
	conn := handshake(t, addr, stream, name, "")
	defer conn.Close()
	writeSeqs(t, conn, stream, first, last)
	readAcks(t, conn, stream, last)
}

// writeSeqs writes batches first..last of stream to conn ("id=K\n", one
// entry each, K = seq-1).
func writeSeqs(t *testing.T, conn net.Conn, stream, first, last uint64) {
	t.Helper()
	var out []byte
	for seq := first; seq <= last; seq++ {
		out, _ = (&encoder.Encoder{}).AppendBatch(out, encoder.Batch{Stream: stream, Seq: seq, Entries: 1},
			fmt.Appendf(nil, "id=%d\n", seq-1), encoder.None)
	}
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
}

// sendThenCrash runs a collector on dir, sends batches 1..last of stream
// to it, and closes it; then takes the record of the clean close out of
// the journal, as a crash would have left it (the rest of what a crash
// leaves is made by hand).
func sendThenCrash(t *testing.T, dir string, stream uint64, name string, last uint64) {
	t.Helper()
	_, addr, stop := serve(t, Config{Dir: dir})
	sendRaw(t, addr, stream, name, 1, last)
	stop(false)
	jp := journalPath(dir, name)
	b, err := os.ReadFile(jp)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := parseRecord(b[len(b)-recordSize:]); !ok || r.stream != 0 || r.seq != closedSeq {
		t.Fatalf("the journal of %s does not end with a clean close: %+v", name, r)
	}
	if err := os.Truncate(jp, int64(len(b)-recordSize)); err != nil {
		t.Fatal(err)
	}
}

// After a crash, the journal tells a restarted collector what was written:
// a torn batch at the end of the file is cut, a torn journal record is
// skipped, and batches resent by the client are not written twice.
func TestRecoveryAfterCrash(t *testing.T) {
	dir := t.TempDir()
	sendThenCrash(t, dir, 42, "crash", 10)

	// What a crash can leave: half a batch after the last journaled one,
	// and half a journal record.
	live := filepath.Join(dir, "crash.log")
	f, _ := os.OpenFile(live, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`id=10` + "\n" + `{"torn":`)
	f.Close()
	jf, _ := os.OpenFile(journalPath(dir, "crash"), os.O_WRONLY|os.O_APPEND, 0)
	jf.Write(record{stream: 42, seq: 11, ino: 1, size: 999}.append(nil)[:17])
	jf.Close()

	// The restarted collector cuts both, and takes the resent batches 1-10
	// as duplicates and 11-20 as new.
	c2, addr := start(t, Config{Dir: dir})
	sendRaw(t, addr, 42, "crash", 1, 20)
	checkIDs(t, live, 20)
	if st := c2.Stats(); st.Duplicates != 10 {
		t.Fatalf("duplicates = %d, want 10", st.Duplicates)
	}
}

// A journal record damaged in place (a bad sector) is skipped, not taken
// for the end of the journal: recovery must not cut the live file back to
// the record before it, which would delete batches acked long ago (their
// clients do not have them any more).
func TestRecoveryPastADamagedJournalRecord(t *testing.T) {
	dir := t.TempDir()
	sendThenCrash(t, dir, 42, "rot", 10)
	jp := journalPath(dir, "rot")
	b, _ := os.ReadFile(jp)
	b[5*recordSize+10] ^= 0x01 // the record of batch 5 (after the first one, made at open)
	os.WriteFile(jp, b, 0o640)
	logs := new(lockedBuffer)
	_, addr := start(t, Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	sendRaw(t, addr, 42, "rot", 11, 20) // only new batches: 1-10 were acked
	checkIDs(t, filepath.Join(dir, "rot.log"), 20)
	if !strings.Contains(logs.String(), "skipped damaged records in the state journal") {
		t.Fatalf("the damaged record not logged:\n%s", logs)
	}
}

// A crash after the first batch is written and before it is journaled: the
// restart cuts the batch, which the client sends again, back to the
// journal's first record, made before the collector first wrote to the
// file. What the file held before then stays.
func TestRecoveryBeforeFirstBatchRecord(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "first.log")
	if err := os.WriteFile(live, []byte("before snail\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	sendThenCrash(t, dir, 5, "first", 0) // opens the output, sends nothing
	f, _ := os.OpenFile(live, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("id=0\n") // batch 1 written, then the crash: not journaled
	f.Close()
	_, addr := start(t, Config{Dir: dir})
	sendRaw(t, addr, 5, "first", 1, 2)
	if b, _ := os.ReadFile(live); string(b) != "before snail\nid=0\nid=1\n" {
		t.Fatalf("live file %q", b)
	}
}

// A file rotated after the last journal record holds nothing acked: a
// restart empties it rather than keep a batch the client will send again.
func TestRecoveryOfRotatedFile(t *testing.T) {
	dir := t.TempDir()
	sendThenCrash(t, dir, 7, "rot", 3)
	live := filepath.Join(dir, "rot.log")
	os.Rename(live, live+".1")
	os.WriteFile(live, []byte("id=3\n"), 0o640) // written, then the crash: not journaled
	_, addr := start(t, Config{Dir: dir})
	sendRaw(t, addr, 7, "rot", 1, 4)
	if b, _ := os.ReadFile(live); string(b) != "id=3\n" {
		t.Fatalf("live file %q", b)
	}
	checkIDs(t, live+".1", 3)
}

// A live file replaced while the collector was stopped (sed -i, an editor,
// a restore from a backup: another inode) is the operator's: a restart
// after a clean stop cuts nothing of it, and one after a crash cuts it only
// if it could be a file rotated just before (at most one batch).
func TestRestartKeepsAReplacedFile(t *testing.T) {
	replace := func(t *testing.T, live string) []byte {
		b, err := os.ReadFile(live)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.Replace(b, []byte("id=3\n"), []byte("id=3 redacted\n"), 1)
		if err := os.WriteFile(live+".new", b, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(live+".new", live); err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Run("after a clean stop", func(t *testing.T) {
		dir := t.TempDir()
		_, addr, stop := serve(t, Config{Dir: dir})
		sendRaw(t, addr, 42, "app", 1, 10)
		if err, _ := stop(true); err != nil {
			t.Fatal(err)
		}
		live := filepath.Join(dir, "app.log")
		edited := replace(t, live)
		_, addr = start(t, Config{Dir: dir})
		sendRaw(t, addr, 42, "app", 1, 12) // 1-10 again, as a client might: duplicates
		if b, _ := os.ReadFile(live); string(b) != string(edited)+"id=10\nid=11\n" {
			t.Fatalf("live file %q", b)
		}
	})
	t.Run("after a crash", func(t *testing.T) {
		dir := t.TempDir()
		sendThenCrash(t, dir, 42, "app", 2000)
		live := filepath.Join(dir, "app.log")
		edited := replace(t, live) // 11 kB: more than a batch of 1 kB
		logs := new(lockedBuffer)
		_, addr := start(t, Config{Dir: dir, MaxDecompressedSize: 1024, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		sendRaw(t, addr, 42, "app", 2001, 2001)
		if b, _ := os.ReadFile(live); string(b) != string(edited)+"id=2000\n" {
			t.Fatalf("live file of %d bytes, want the %d edited and one batch", len(b), len(edited))
		}
		if !strings.Contains(logs.String(), "kept as is") {
			t.Fatalf("not logged:\n%s", logs)
		}
	})
}

// An output file deleted while the collector runs is followed: the next
// batch goes to a new file at the path rather than into the deleted one,
// without a SIGHUP.
func TestDeletedOutputIsFollowed(t *testing.T) {
	dir := t.TempDir()
	_, addr := start(t, Config{Dir: dir})
	sendRaw(t, addr, 42, "app", 1, 5)
	live := filepath.Join(dir, "app.log")
	if err := os.Remove(live); err != nil {
		t.Fatal(err)
	}
	sendRaw(t, addr, 42, "app", 6, 7)
	if b, _ := os.ReadFile(live); string(b) != "id=5\nid=6\n" {
		t.Fatalf("live file %q", b)
	}
}

// The output directory deleted under a running collector (rm -rf of the
// log directory) is made again at the next write: writing resumes there at
// once, with its state journal (the marks the collector holds: a batch
// sent again is not written twice) and its lock. A state directory deleted
// alone is made again by the janitor.
func TestDeletedDirectoryIsMadeAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	_, addr := start(t, Config{Dir: dir})
	sendRaw(t, addr, 42, "app", 1, 5)
	sendRaw(t, addr, 43, "other", 1, 2)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	sendRaw(t, addr, 42, "app", 6, 7)
	sendRaw(t, addr, 42, "app", 7, 7) // sent again: acked, not written
	live := filepath.Join(dir, "app.log")
	if b, err := os.ReadFile(live); string(b) != "id=5\nid=6\n" {
		t.Fatalf("live file %q (%v), want the batches written since", b, err)
	}
	lastMark := func() record {
		t.Helper()
		b, err := os.ReadFile(journalPath(dir, "app"))
		if err != nil || len(b) < recordSize {
			t.Fatalf("state journal: %d bytes, %v", len(b), err)
		}
		r, ok := parseRecord(b[len(b)-recordSize:])
		if !ok {
			t.Fatal("damaged last record")
		}
		return r
	}
	if r := lastMark(); r.stream != 42 || r.seq != 7 {
		t.Fatalf("last record in the new journal %+v, want stream 42 at 7", r)
	}
	if _, err := New(Config{Dir: dir, Logger: quiet()}); !errors.Is(err, ErrDirInUse) {
		t.Fatalf("a second collector on the directory made again: %v, want ErrDirInUse", err)
	}

	if err := os.RemoveAll(filepath.Join(dir, stateDir)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(dir, stateDir, "lock")); return err == nil })
	sendRaw(t, addr, 42, "app", 8, 8)
	if r := lastMark(); r.stream != 42 || r.seq != 8 {
		t.Fatalf("last record in the journal made again %+v, want stream 42 at 8", r)
	}
}

func TestJournalCompaction(t *testing.T) {
	dir := t.TempDir()
	seen := map[uint64]uint64{}
	j, _, err := openJournal(dir, "c", seen, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= compactAt+10; i++ {
		r := record{stream: i%3 + 1, seq: i, ino: 5, size: int64(i)}
		if err := j.add(r, func() []idMark { return marksOf(seen) }); err != nil {
			t.Fatal(err)
		}
		seen[r.stream] = r.seq
	}
	j.close()
	if fi, _ := os.Stat(journalPath(dir, "c")); fi.Size() > 20*recordSize {
		t.Fatalf("journal not compacted: %d bytes", fi.Size())
	}
	got := map[uint64]uint64{}
	j2, found, err := openJournal(dir, "c", got, nil)
	if err != nil || !found {
		t.Fatal(err)
	}
	j2.close()
	for id, seq := range seen {
		if got[id] != seq {
			t.Fatalf("stream %d: %d after compaction, want %d", id, got[id], seq)
		}
	}
	if j2.last.size != compactAt+10 {
		t.Fatalf("last record %+v", j2.last)
	}
}

// proxy forwards connections to a target. The test can cut them all
// (cutAll) and hold back what the target sends (holdReplies); a faulty one
// also misbehaves by itself: it cuts connections at random points
// (mid-frame), flips or drops bytes, and delays them; a slow one (rate)
// passes the client's bytes at rate bytes a second, as a slow link does.
type proxy struct {
	l      net.Listener
	target string
	faulty bool
	rate   int // bytes a second from the client; 0: full speed
	wg     sync.WaitGroup
	mu     sync.Mutex
	cond   *sync.Cond // on mu: held or cuts changed
	conns  []net.Conn
	faults int
	held   bool // bytes from the target wait
	cuts   int  // cutAll calls so far
}

func newProxy(t *testing.T, target string, faulty bool) *proxy {
	return newProxyAt(t, "127.0.0.1:0", target, faulty, 0)
}

// newProxyAt is newProxy listening on addr, passing the client's bytes at
// rate bytes a second (0: at full speed).
func newProxyAt(t *testing.T, addr, target string, faulty bool, rate int) *proxy {
	t.Helper()
	l := listenAt(t, addr)
	p := &proxy{l: l, target: target, faulty: faulty, rate: rate}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for n := 0; ; n++ {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			if rate > 0 {
				// A small window, as a slow link's: the client's writes
				// wait for the link once its send buffer is full.
				in.(*net.TCPConn).SetReadBuffer(64 << 10)
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			up, down := uint64(2*n), uint64(2*n+1)
			p.wg.Add(2)
			go func() { defer p.wg.Done(); p.pipe(out, in, up, false); in.Close(); out.Close() }()
			go func() { defer p.wg.Done(); p.pipe(in, out, down, true); in.Close(); out.Close() }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		p.cutAll()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) cutAll() {
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.cuts++
	p.cond.Broadcast()
	p.mu.Unlock()
}

// holdReplies makes what the target sends (acks) wait in the proxy until
// it is called with false, or the connection is cut: the client's
// batches stay unacked meanwhile.
func (p *proxy) holdReplies(on bool) {
	p.mu.Lock()
	p.held = on
	p.cond.Broadcast()
	p.mu.Unlock()
}

// pipe copies src to dst in chunks; after a random amount it does one
// fault: cut, corrupt a byte, drop a chunk, or stall, then carries on (if
// the connection survived). fromTarget chunks wait while replies are held.
func (p *proxy) pipe(dst, src net.Conn, seed uint64, fromTarget bool) {
	p.mu.Lock()
	gen := p.cuts
	p.mu.Unlock()
	r := rand.New(rand.NewPCG(seed, 2))
	buf := make([]byte, 32<<10)
	slow := p.rate > 0 && !fromTarget
	if slow {
		buf = make([]byte, max(p.rate/20, 1))
	}
	budget := 4<<10 + r.IntN(256<<10) // bytes before the next fault
	for {
		n, err := src.Read(buf[:1+r.IntN(len(buf))])
		if n > 0 {
			chunk := buf[:n]
			if budget -= n; p.faulty && budget < 0 {
				budget = 4<<10 + r.IntN(256<<10)
				p.mu.Lock()
				p.faults++
				p.mu.Unlock()
				switch r.IntN(4) {
				case 0: // cut mid-stream
					dst.Write(chunk[:r.IntN(n)])
					return
				case 1: // corrupt a byte
					chunk[r.IntN(n)] ^= 0x5a
				case 2: // lose bytes
					chunk = chunk[:r.IntN(n)]
				case 3: // stall
					time.Sleep(time.Duration(r.IntN(50)) * time.Millisecond)
				}
			}
			if fromTarget {
				p.mu.Lock()
				for p.held && p.cuts == gen {
					p.cond.Wait()
				}
				p.mu.Unlock()
			}
			if _, err := dst.Write(chunk); err != nil {
				return
			}
			if slow {
				time.Sleep(time.Duration(n) * time.Second / time.Duration(p.rate))
			}
		}
		if err != nil {
			return
		}
	}
}

// Through a proxy that cuts connections mid-frame, corrupts, drops and
// delays bytes, every entry arrives exactly once and uncorrupted: the CRC
// catches what the proxy breaks, the client reconnects and resends, the
// collector deduplicates.
func TestFaultyNetwork(t *testing.T) {
	dir := t.TempDir()
	c, addr := start(t, Config{Dir: dir})
	p := newProxy(t, addr, true)
	s, err := netlog.Dial(p.addr(), netlog.WithStreamName("faulty"),
		netlog.WithBackoff(time.Millisecond, 20*time.Millisecond), netlog.WithAckTimeout(2*time.Second), netlog.WithWindow(16, 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	const n = 1_000_000
	deliver(t, s, n, 2000)
	checkIDs(t, filepath.Join(dir, "faulty.log"), n)
	p.mu.Lock()
	faults := p.faults
	p.mu.Unlock()
	st := s.Stats()
	if faults < 20 || st.Reconnects == 0 {
		t.Fatalf("the proxy did too little: %d faults, %d reconnects", faults, st.Reconnects)
	}
	t.Logf("%d faults, %d reconnects, %d frames resent, %d duplicates skipped, rejects %v",
		faults, st.Reconnects, st.Resent, c.Stats().Duplicates, c.Stats().Rejects)
}

// TestErrorHandlersThatLogThroughTheStream: the client's error handlers
// (the sink's and netlog's) log each error through the same Writer, as an
// application that logs "cannot ship the log" with its own logger does,
// over a faulty link whose acks are held back until the window and every
// buffer are full, then cut. Nothing hangs, every entry of the writers
// arrives once, and each of the handlers' entries arrives or is refused.
func TestErrorHandlersThatLogThroughTheStream(t *testing.T) {
	dir := t.TempDir()
	c, addr := start(t, Config{Dir: dir})
	p := newProxy(t, addr, true)
	var wp atomic.Pointer[sink.Writer]
	var reported, refused atomic.Int64
	logErr := func(err error) {
		reported.Add(1)
		w := wp.Load()
		if w == nil {
			return
		}
		if _, err := fmt.Fprintf(w, "handler: %q\n", err.Error()); err != nil {
			refused.Add(1)
		}
	}
	s, err := netlog.Dial(p.addr(), netlog.WithStreamName("handlers"),
		netlog.WithBackoff(time.Millisecond, 20*time.Millisecond), netlog.WithAckTimeout(time.Second),
		netlog.WithReportAfter(50*time.Millisecond), netlog.WithWindow(4, 1<<20), netlog.WithErrorHandler(logErr))
	if err != nil {
		t.Fatal(err)
	}
	w, err := sink.New(s, sink.WithBatchBytes(16<<10), sink.WithMaxBuffers(4), sink.WithErrorHandler(logErr))
	if err != nil {
		t.Fatal(err)
	}
	wp.Store(w)
	stop := make(chan struct{})
	var faults sync.WaitGroup
	faults.Go(func() {
		for range 4 {
			p.holdReplies(true) // the window fills, then every buffer
			select {
			case <-stop:
				p.holdReplies(false)
				return
			case <-time.After(300 * time.Millisecond):
			}
			p.cutAll()
			p.holdReplies(false)
			time.Sleep(100 * time.Millisecond)
		}
	})
	const g, n = 8, 25_000
	var hung atomic.Bool
	var writers sync.WaitGroup
	for i := range g {
		writers.Go(func() {
			for j := range n {
				for k := 0; ; k++ {
					// Refused while the collector is unreachable (after the
					// report delay): written again, as a caller that must not
					// lose it does.
					if _, err := fmt.Fprintf(w, "id=%d\n", i*n+j); err == nil {
						break
					}
					if k == 10_000 {
						if !hung.Load() { // else the test has ended, and said why
							t.Errorf("id %d refused for 10 s", i*n+j)
						}
						return
					}
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	done := make(chan error, 1)
	go func() {
		writers.Wait()
		close(stop)
		faults.Wait()
		done <- w.Close()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		hung.Store(true)
		var stacks bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Fatalf("hung: %d errors reported, %d of the handlers' entries refused; client %+v, writer %+v; goroutines:\n%s",
			reported.Load(), refused.Load(), s.Stats(), w.Stats(), stacks.String())
	}
	data, err := os.ReadFile(filepath.Join(dir, "handlers.log"))
	if err != nil {
		t.Fatal(err)
	}
	var ids bytes.Buffer
	fromHandlers := 0
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "handler: ") {
			fromHandlers++
			continue
		}
		ids.WriteString(line)
	}
	only := filepath.Join(t.TempDir(), "ids.log")
	if err := os.WriteFile(only, ids.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d errors reported: %d of the handlers' entries written, %d refused (some reported before the Writer existed or after Close); client %+v; writer %+v; collector %+v",
		reported.Load(), fromHandlers, refused.Load(), s.Stats(), w.Stats(), c.Stats())
	if missing := missingIDs(ids.Bytes(), g*n); missing != "" {
		t.Logf("missing: %s", missing)
	}
	checkIDs(t, only, g*n)
	if reported.Load() == 0 {
		t.Fatal("no error was reported: the test did not test")
	}
}

// missingIDs describes the ids below n that lines "id=K" of data lack, as
// ranges, or returns "" if none is missing.
func missingIDs(data []byte, n int) string {
	seen := make([]bool, n)
	for line := range strings.Lines(string(data)) {
		if k, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "id="))); err == nil && k >= 0 && k < n {
			seen[k] = true
		}
	}
	var b strings.Builder
	for k := 0; k < n; k++ {
		if seen[k] {
			continue
		}
		j := k
		for j+1 < n && !seen[j+1] {
			j++
		}
		fmt.Fprintf(&b, "%d-%d ", k, j)
		k = j
	}
	return b.String()
}
