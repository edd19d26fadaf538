package collector

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/internal/testcert"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
)

// TestAnnouncedFramesDoNotStallOthers: clients announce large compressed
// frames, send a few bytes of each and then nothing. They hold at most
// half of the frame memory (and a step each past that), so that a
// well-behaved client goes on at once instead of waiting for their frame
// timeout (5 minutes here), and every entry it sent is written once.
func TestAnnouncedFramesDoNotStallOthers(t *testing.T) {
	dir := t.TempDir()
	const maxMem = 8 << 20
	c, addr := start(t, Config{Dir: dir, MaxFrameSize: 1 << 20, MaxDecompressedSize: 1 << 20, MaxMemory: maxMem,
		FrameTimeout: 5 * time.Minute, IdleTimeout: 5 * time.Minute})

	// A frame of 900 KiB of random hex lines: about 900 KiB compressed
	// too, so each claims about 1.8 MiB (frame and decompression).
	raw := make([]byte, 450<<10)
	rand.Read(raw)
	payload := []byte(hex.EncodeToString(raw))
	for i := 100; i < len(payload); i += 100 {
		payload[i] = '\n'
	}
	payload[len(payload)-1] = '\n'
	const attackers = 12
	var hold int64 // what one announced frame claims whole
	for i := range attackers {
		conn := handshake(t, addr, uint64(1000+i), "evil", "")
		defer conn.Close()
		frame, err := (&encoder.Encoder{}).AppendBatch(nil, encoder.Batch{Stream: uint64(1000 + i), Seq: 1, Entries: 1}, payload, encoder.S2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(frame[:encoder.HeaderSize+10]); err != nil {
			t.Fatal(err)
		}
		h, err := c.dec.ParseHeader(frame)
		if err != nil {
			t.Fatal(err)
		}
		hold = encoder.HeaderSize + int64(h.PayloadLen)
		if h.Compression != encoder.None {
			hold += int64(h.RawLen)
		}
	}
	// Wait until the collector has read every header and claimed what it
	// claims: frames whole while half of the memory stays free, then a
	// step for each of the others, whose first bytes are here.
	want := int64(maxMem)
	for range attackers {
		if want-hold >= maxMem/2 {
			want -= hold
		} else {
			want -= firstStep
		}
	}
	waitFor(t, func() bool { return c.mem.available() <= want })
	if free := c.mem.available(); free < maxMem/2-attackers*firstStep || free > maxMem {
		t.Fatalf("%d bytes of frame memory free with %d frames announced; want about half of %d", free, attackers, maxMem)
	}

	done := make(chan struct{})
	const n = 20_000
	go func() {
		defer close(done)
		s, err := netlog.Dial(addr, netlog.WithStreamName("good"))
		if err != nil {
			t.Error(err)
			return
		}
		send(t, s, 0, n, 1000)
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the good client is held up by the announced frames")
	}
	checkIDs(t, filepath.Join(dir, "good.log"), n)
	if free := c.mem.available(); free < 0 {
		t.Fatalf("frame memory overdrawn: %d", free)
	}
}

// A budget gives what is free, whole while half stays free, waits for the
// rest, and gives up after the wait it is given.
func TestBudget(t *testing.T) {
	// In a bubble the goroutines below release or abort only once the
	// acquirer waits, and the timeout runs on the bubble's clock.
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(100)
		if !b.acquireIfPlenty(50) || b.acquireIfPlenty(1) {
			t.Fatal("acquireIfPlenty: want 50 taken, then nothing past half")
		}
		if r := b.acquireWithin(50, 0); r != claimed {
			t.Fatalf("acquireWithin(50) = %v with 50 free", r)
		}
		start := time.Now()
		if r := b.acquireWithin(1, 50*time.Millisecond); r != timedOut || time.Since(start) < 50*time.Millisecond {
			t.Fatalf("acquireWithin(1) with nothing free = %v after %v, want timedOut after 50ms", r, time.Since(start))
		}
		go func() {
			time.Sleep(20 * time.Millisecond)
			b.release(10)
		}()
		if r := b.acquireWithin(10, 10*time.Second); r != claimed {
			t.Fatalf("acquireWithin(10) while 10 are released = %v", r)
		}
		go func() {
			time.Sleep(20 * time.Millisecond)
			b.abort()
		}()
		if r := b.acquireWithin(10, 0); r != stopped {
			t.Fatalf("acquireWithin(10) at abort = %v", r)
		}
	})
}

// choppy reads at most a random few bytes at a time, as a slow network
// gives a frame.
type choppy struct {
	r   io.Reader
	rnd *mrand.Rand
}

func (c *choppy) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), 1+c.rnd.IntN(40<<10))])
}

// Frames read while half the memory is held take theirs in steps as
// their bytes arrive (in pieces of random sizes here): each is read whole
// and right, in order, and every byte claimed is given back.
func TestFramesReadInSteps(t *testing.T) {
	c, err := New(Config{Dir: t.TempDir(), Logger: quiet(), MaxFrameSize: 1 << 20, MaxDecompressedSize: 2 << 20, MaxMemory: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	held := c.cfg.MaxMemory / 2
	c.mem.acquireWithin(held, 0)
	enc, _ := encoder.NewEncoder()
	hello, _ := netlog.AppendHello(nil, netlog.Hello{Version: netlog.ProtocolVersion, StreamID: 3, Name: "steps"})
	var stream []byte
	var want [][]byte
	for i, size := range []int{10, 16 << 10, 16<<10 + 1, 100 << 10, 1000 << 10, 1900 << 10} {
		var payload []byte
		for k := 0; len(payload) < size; k++ {
			payload = fmt.Appendf(payload, "entry %d of frame %d\n", k, i)
		}
		comp := encoder.None
		if size > 1<<20 {
			comp = encoder.Zstd // over the frame limit but for compression
		}
		stream, err = enc.AppendBatch(stream, encoder.Batch{Stream: 3, Seq: uint64(i + 1), Entries: 1}, payload, comp)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, payload)
	}
	br := bufio.NewReader(&choppy{r: io.MultiReader(bytes.NewReader(hello), bytes.NewReader(stream)), rnd: mrand.New(mrand.NewPCG(1, 2))})
	sc, err := (&codec{c: c}).Accept(fakeConn{}, br)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		r, err := sc.ReadRequest()
		if err != nil || r.goodbye != nil {
			t.Fatalf("frame %d: %v %+v", i, err, r)
		}
		if !bytes.Equal(r.payload, w) {
			t.Fatalf("frame %d: %d bytes read, want %d", i, len(r.payload), len(w))
		}
		sc.(*sconn).release(r)
	}
	sc.Close(nil)
	c.mem.release(held)
	if free := c.mem.available(); free != c.cfg.MaxMemory {
		t.Fatalf("%d of %d bytes free after the frames", free, c.cfg.MaxMemory)
	}
}

// A connection that waits for frame memory longer than stepWait with part
// of a frame read ends with a reason (no_memory); its client connects
// again and sends the frame again, and once memory is free every entry is
// written once.
func TestWaitingForFrameMemoryEnds(t *testing.T) {
	dir := t.TempDir()
	c, addr := start(t, Config{Dir: dir, MaxFrameSize: 1 << 20, MaxDecompressedSize: 1 << 20, MaxMemory: 4 << 20})
	held := c.cfg.MaxMemory - firstStep - 1024 // room for a first step, not a second
	c.mem.acquireWithin(held, 0)
	s, err := netlog.Dial(addr, netlog.WithStreamName("starved"), netlog.WithBackoff(100*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	const n = 6000 // one batch of about 47 KiB: three steps
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		send(t, s, 0, n, n)
	}()
	waitFor(t, func() bool { return value(c.metrics.rejects.WithLabelValues("no_memory")) > 0 })
	c.mem.release(held)
	<-sent
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkIDs(t, filepath.Join(dir, "starved.log"), n)
	if free := c.mem.available(); free != c.cfg.MaxMemory {
		t.Fatalf("%d of %d bytes free at the end", free, c.cfg.MaxMemory)
	}
}

// Clients whose frames together need far more than the frame memory (8
// clients sending 256 KiB frames, some compressed, into 2 MiB) are served
// in turn: frames claimed in steps wait for each other or end (no_memory)
// and are sent again, and every entry of every client is written once.
func TestFramesContendForMemory(t *testing.T) {
	dir := t.TempDir()
	c, addr := start(t, Config{Dir: dir, MaxFrameSize: 1 << 20, MaxDecompressedSize: 1 << 20, MaxMemory: 2<<20 + 64})
	const clients, n = 8, 400_000
	errs := make(chan error, clients)
	for k := range clients {
		go func() {
			comp := encoder.None
			if k%2 == 1 {
				comp = encoder.S2
			}
			s, err := netlog.Dial(addr, netlog.WithStreamName(fmt.Sprintf("c%d", k)), netlog.WithCompression(comp),
				netlog.WithBackoff(10*time.Millisecond, 200*time.Millisecond))
			if err != nil {
				errs <- err
				return
			}
			send(t, s, 0, n, 25_000) // about 256 KiB a batch
			errs <- s.Close()
		}()
	}
	for range clients {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(3 * time.Minute):
			t.Fatal("the clients did not finish")
		}
	}
	for k := range clients {
		checkIDs(t, filepath.Join(dir, fmt.Sprintf("c%d.log", k)), n)
	}
	if free := c.mem.available(); free != c.cfg.MaxMemory {
		t.Fatalf("%d of %d bytes free at the end", free, c.cfg.MaxMemory)
	}
	t.Logf("no_memory rejects: %d", value(c.metrics.rejects.WithLabelValues("no_memory")))
}

// A collector whose frame limit is below the client's batches (here 64
// KiB against 1 MiB) tells the client its limits in the welcome, and the
// client sends each batch in pieces that fit, cut between lines: nothing
// is refused, every entry is written once, in order. (Before, each batch
// was refused as too large and lost.)
func TestBatchesCutToTheCollectorsFrameLimit(t *testing.T) {
	for _, comp := range []encoder.Compression{encoder.None, encoder.S2} {
		t.Run(comp.String(), func(t *testing.T) {
			dir := t.TempDir()
			c, addr := start(t, Config{Dir: dir, MaxFrameSize: 64 << 10, MaxDecompressedSize: 64 << 10})
			s, err := netlog.Dial(addr, netlog.WithStreamName("cut"), netlog.WithCompression(comp))
			if err != nil {
				t.Fatal(err)
			}
			send(t, s, 0, 1, 1) // connected: the welcome said the limits
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			const n = 300_000
			var batch []byte
			for k := 1; k < n; k++ {
				batch = fmt.Appendf(batch, "id=%d\n", k)
				if len(batch) >= 1<<20 || k == n-1 {
					buf := make([]byte, len(batch), 1<<20+64) // as the sink's buffers
					copy(buf, batch)
					if _, err := s.KeepBatch(buf, bytes.Count(buf, []byte{'\n'})); err != nil {
						t.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			checkIDs(t, filepath.Join(dir, "cut.log"), n)
			if st.Rejected != 0 || st.Lost != 0 || value(c.metrics.rejects.WithLabelValues("too_large")) != 0 {
				t.Fatalf("stats %+v, %d refused as too large", st, value(c.metrics.rejects.WithLabelValues("too_large")))
			}
		})
	}
}

// A batch sent in pieces whose second piece fails (the collector went
// away, the window is full) is tried again by the sink as a whole: the try
// goes on after the piece already taken, so that each entry is written
// once.
func TestBatchInPiecesTriedAgain(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxFrameSize: 64 << 10, MaxDecompressedSize: 64 << 10}
	_, addr1, stop := serve(t, cfg)
	addr2 := unusedAddr(t)
	s, err := netlog.Dial(addr1+","+addr2, netlog.WithStreamName("again"), netlog.WithWindow(1, 1<<20),
		netlog.WithReportAfter(50*time.Millisecond), netlog.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		netlog.WithErrorHandler(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	send(t, s, 0, 1, 1) // the welcome says the limits
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err, _ := stop(true); err != nil {
		t.Fatal(err)
	}
	var batch []byte
	const n = 20_000 // about 190 KiB: 3 pieces
	for k := 1; k < n; k++ {
		batch = fmt.Appendf(batch, "id=%d\n", k)
	}
	// The first piece takes the window's one place; the second waits for
	// it until the collector counts as unavailable.
	err = s.WriteBatch(batch, n-1)
	if !errors.Is(err, netlog.ErrUnavailable) {
		t.Fatalf("WriteBatch with the collector away: %v, want ErrUnavailable", err)
	}
	serveAt(t, addr2, Config{Dir: dir, MaxFrameSize: 64 << 10, MaxDecompressedSize: 64 << 10})
	for {
		err := s.WriteBatch(batch, n-1) // as the sink does
		if err == nil {
			break
		}
		if !errors.Is(err, netlog.ErrUnavailable) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkIDs(t, filepath.Join(dir, "again.log"), n)
}

// Batches queued before the client's first connection, when nothing had
// said the collector's frame limits yet, are refused as too large; the
// client sends their entries again cut to fit, after the others, and
// says so once: every entry is written once.
func TestRefusedBatchesSentAgainCut(t *testing.T) {
	for _, comp := range []encoder.Compression{encoder.None, encoder.Zstd} {
		t.Run(comp.String(), func(t *testing.T) {
			dir := t.TempDir()
			addr := unusedAddr(t)
			var rep reports
			s, err := netlog.Dial(addr, netlog.WithStreamName("redo"), netlog.WithCompression(comp),
				netlog.WithBackoff(10*time.Millisecond, 50*time.Millisecond), netlog.WithErrorHandler(rep.add))
			if err != nil {
				t.Fatal(err)
			}
			// Three batches of about 190 KiB, queued with no connection.
			const per, batches = 20_000, 3
			send(t, s, 0, per*batches, per)
			serveAt(t, addr, Config{Dir: dir, MaxFrameSize: 64 << 10, MaxDecompressedSize: 64 << 10})
			send(t, s, per*batches, per, per) // one more, after
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			checkIDs(t, filepath.Join(dir, "redo.log"), per*(batches+1))
			said := strings.Count(strings.Join(rep.list(), "\n"), "goes again cut to fit")
			if st.Lost != 0 || said != 1 {
				t.Fatalf("stats %+v; said %d times that refused batches go again: %q", st, said, rep.list())
			}
		})
	}
}

// Refused batches go again as soon as they are refused, not with the
// client's next write or Sync: on a quiet stream (tail -F of a log at
// rest) that was never, and their lines sat in memory. Here nothing is
// written or synced after the collector comes up, and every line arrives.
func TestRefusedBatchesGoAgainOnAQuietStream(t *testing.T) {
	dir := t.TempDir()
	addr := unusedAddr(t)
	s, err := netlog.Dial(addr, netlog.WithStreamName("quiet"), netlog.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		netlog.WithErrorHandler(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	const n = 40_000 // two batches of about 190 KiB, over the collector's 64 KiB
	send(t, s, 0, n, n/2)
	serveAt(t, addr, Config{Dir: dir, MaxFrameSize: 64 << 10, MaxDecompressedSize: 64 << 10})
	path := filepath.Join(dir, "quiet.log")
	waitFor(t, func() bool {
		b, _ := os.ReadFile(path)
		return bytes.Count(b, []byte("\n")) == n
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkIDs(t, path, n)
}

// A refused batch whose one line is over the limits alone: its other lines
// go again cut to fit, that line is given up (once: it does not go round
// again), counted lost and reported.
func TestRefusedLineOverTheLimitsAlone(t *testing.T) {
	dir := t.TempDir()
	addr := unusedAddr(t)
	s, err := netlog.Dial(addr, netlog.WithStreamName("mixed"), netlog.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		netlog.WithErrorHandler(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	batch := []byte("id=0\n" + strings.Repeat("x", 100<<10) + "\nid=1\n")
	if err := s.WriteBatch(batch, 3); err != nil {
		t.Fatal(err)
	}
	serveAt(t, addr, Config{Dir: dir, MaxFrameSize: 64 << 10, MaxDecompressedSize: 64 << 10})
	err = s.Close() // no Sync first: Close sends the refused batch's lines again too
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("Close: %v, want the long line's refusal", err)
	}
	if st := s.Stats(); st.Lost != 1 || st.Entries != 2 {
		t.Fatalf("stats %+v: want 2 entries acked, 1 lost", st)
	}
	checkIDs(t, filepath.Join(dir, "mixed.log"), 2)
}

// Through a sink Writer, with goroutines writing and another calling Sync
// all along, batches refused as over the limits (queued before the
// collector came up) go again once each: every entry is written once.
func TestRefusedBatchesSentAgainThroughASink(t *testing.T) {
	for _, comp := range []encoder.Compression{encoder.None, encoder.Zstd} {
		t.Run(comp.String(), func(t *testing.T) { testRefusedThroughASink(t, comp) })
	}
}

func testRefusedThroughASink(t *testing.T, comp encoder.Compression) {
	dir := t.TempDir()
	addr := unusedAddr(t)
	s, err := netlog.Dial(addr, netlog.WithStreamName("sinkredo"), netlog.WithCompression(comp),
		netlog.WithBackoff(10*time.Millisecond, 50*time.Millisecond), netlog.WithErrorHandler(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	w, err := sink.New(s, sink.WithBatchBytes(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	const writers, per = 8, 20_000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			var b []byte
			for i := range per {
				b = fmt.Appendf(b[:0], "id=%d\n", g*per+i)
				if _, err := w.Write(b); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// Batches are queued before the collector is up, its limits unknown,
	// and one at least is over them (more than 16 KiB on average; with
	// nothing syncing yet, they leave full or after the sink's window).
	waitFor(t, func() bool { st := s.Stats(); return st.Batches > 0 && st.RawBytes > st.Batches*(16<<10) })
	c := serveAt(t, addr, Config{Dir: dir, MaxFrameSize: 16 << 10, MaxDecompressedSize: 16 << 10})
	stop := make(chan struct{})
	var syncer sync.WaitGroup
	syncer.Go(func() { // Syncs meanwhile, while refused batches go again
		for {
			select {
			case <-stop:
				return
			default:
			}
			w.Sync()
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	close(stop)
	syncer.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkIDs(t, filepath.Join(dir, "sinkredo.log"), writers*per)
	if value(c.metrics.rejects.WithLabelValues("too_large")) == 0 {
		t.Fatal("no batch was refused: the test tested nothing")
	}
}

// serveAt runs a collector for cfg on addr (one that nothing listened on
// when the test's client dialed it) until the test ends.
func serveAt(t *testing.T, addr string, cfg Config) *Collector {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := listenAt(t, addr)
	served := make(chan struct{})
	go func() {
		defer close(served)
		c.Serve(l)
	}()
	t.Cleanup(func() {
		c.Shutdown(context.Background())
		<-served
	})
	return c
}

// throttle is a proxy to target that passes the client's bytes at rate
// bytes a second (a slow link) and the collector's at full speed. Its
// socket's receive buffer is small, as a slow link's window is, so that
// the client's writes wait for the link once its send buffer is full.
func throttle(t *testing.T, target string, rate int) string {
	return throttleAt(t, "127.0.0.1:0", target, rate)
}

// throttleAt is throttle listening on addr.
func throttleAt(t *testing.T, addr, target string, rate int) string {
	t.Helper()
	return newProxyAt(t, addr, target, false, rate).addr()
}

// TestSlowLinkIsNotCut: a client on a link slower than its frames by the
// frame timeout (here 256 KiB frames at 128 KiB/s against a 1 s frame
// timeout) gets its frames through, since the frame timeout stretches
// with the bytes that arrive (MinFrameRate). Before, the collector cut
// each frame at the frame timeout and the client sent it again, and
// again: nothing was delivered, for good, while the link stayed busy.
func TestSlowLinkIsNotCut(t *testing.T) {
	t.Parallel() // each waits on a slow link
	dir := t.TempDir()
	c, addr := start(t, Config{Dir: dir, FrameTimeout: time.Second})
	s, err := netlog.Dial(throttle(t, addr, 128<<10), netlog.WithStreamName("slow"), netlog.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	line := append(bytes.Repeat([]byte("x"), 1000), '\n')
	for i := range 2 {
		if err := s.WriteBatch(bytes.Repeat(line, 256), 256); err != nil {
			t.Fatal(i, err)
		}
	}
	deliveredOnce(t, c, s, filepath.Join(dir, "slow.log"), 2*256*len(line), 20*time.Second) // 4 s of link
}

// deliveredOnce waits up to within for s.Sync, then wants path to hold
// want bytes, every frame sent once and none cut.
func deliveredOnce(t *testing.T, c *Collector, s *netlog.Stream, path string, want int, within time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Sync() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%v (rejects %v)", err, c.Stats().Rejects)
		}
	case <-time.After(within):
		t.Fatalf("not delivered in %v: stats %+v, rejects %v", within, s.Stats(), c.Stats().Rejects)
	}
	if st := s.Stats(); st.Reconnects != 0 || st.Resent != 0 || c.Stats().Rejects["slow_frame"] != 0 {
		t.Errorf("%d reconnects, %d frames sent again, rejects %v", st.Reconnects, st.Resent, c.Stats().Rejects)
	}
	s.Close()
	if b, err := os.ReadFile(path); err != nil || len(b) != want {
		t.Fatalf("%d bytes written, want %d: %v", len(b), want, err)
	}
}

// TestTrickleBelowTheMinimumRateIsCut: a frame that comes slower than
// MinFrameRate is cut after FrameTimeout stretched by its bytes (here 2
// KiB/s against 8 KiB/s and 1 s: at 1.33 s), and with MinFrameRate off at
// FrameTimeout.
func TestTrickleBelowTheMinimumRateIsCut(t *testing.T) {
	t.Parallel() // each waits on a slow link
	for _, rate := range []int64{0, -1} {
		c, addr := start(t, Config{FrameTimeout: time.Second, MinFrameRate: rate})
		s, err := netlog.Dial(throttle(t, addr, 2<<10), netlog.WithStreamName("trickle"), netlog.WithDrainTimeout(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := s.WriteBatch(append(bytes.Repeat([]byte("y"), 16<<10), '\n'), 1); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return c.Stats().Rejects["slow_frame"] > 0 })
		if took := time.Since(start); took < time.Second || took > 6*time.Second {
			t.Errorf("MinFrameRate %d: cut after %v", rate, took)
		}
		s.Close()
	}
}

// TestSlowLinkWriteTimeout: the client's write timeout bounds the time
// the collector's TCP acknowledges nothing, not a whole write, so that a
// large write on a slow link is not cut. Here 6 MiB of batches queue while the collector is
// away, then go in one write when it comes, on a link of 1 MiB/s,
// against a write timeout of 300 ms: past the socket's send buffer (4 MiB
// at most) the write waits for the link. Before, the write was cut at the
// timeout, and the same write on the next connection too, for good
// (nothing delivered, and the link kept busy). With TLS too.
func TestSlowLinkWriteTimeout(t *testing.T) {
	t.Parallel() // each waits on a slow link
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Dir: dir}
			opts := []netlog.ClientOption{netlog.WithStreamName("slow"), netlog.WithWriteTimeout(300 * time.Millisecond),
				netlog.WithBackoff(10*time.Millisecond, 100*time.Millisecond), netlog.WithWindow(32, 64<<20)}
			if useTLS {
				srv, cli := tlsPair(t)
				cfg.TLS = srv
				opts = append(opts, netlog.WithTLS(cli))
			}
			c, addr := start(t, cfg)
			away := unusedAddr(t) // nobody listens there, for now
			s, err := netlog.Dial(away, opts...)
			if err != nil {
				t.Fatal(err)
			}
			line := append(bytes.Repeat([]byte("x"), 1000), '\n')
			for i := range 24 {
				if err := s.WriteBatch(bytes.Repeat(line, 256), 256); err != nil {
					t.Fatal(i, err)
				}
			}
			throttleAt(t, away, addr, 1<<20)
			deliveredOnce(t, c, s, filepath.Join(dir, "slow.log"), 24*256*len(line), 40*time.Second) // 6 s of link
		})
	}
}

// tlsPair returns a collector's TLS config and a client's that trusts it:
// a certificate for 127.0.0.1, which the client verifies whatever loopback
// address it dials (unusedAddr's are on 127.0.0.2).
func tlsPair(t *testing.T) (server, client *tls.Config) {
	ca := testcert.NewCA(t)
	cert := ca.Issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
}

// TestSlowLinkAckTimeout: a batch that takes longer than the client's ack
// timeout to cross a slow link (4 MiB at 1 MiB/s: 4 s, against 1.5 s) is
// answered only once it has crossed; the client waits as long as the
// collector's TCP acknowledges bytes. Before, the client gave the
// connection up at the ack timeout and sent the batch again, to be cut
// again, for good. (On loopback, whose segments are 64 KiB, the
// acknowledgements of a slow reader come in bursts of about 95 KiB: the
// ack timeout must span a few.)
//
// The second case writes a batch of one line, then one of 12 MiB, with a
// keep-alive of 300 ms: the answer to the first arms the wait for the
// second while its write still waits for the link (8 s past the send
// buffer), and a ping due then waited for that write, which stopped the
// client's ticks that stretch the wait.
func TestSlowLinkAckTimeout(t *testing.T) {
	t.Parallel() // each waits on a slow link
	for _, tc := range []struct {
		name    string
		batches []int // entries of 1000 bytes
		opts    []netlog.ClientOption
	}{
		{"one batch of 4 MiB", []int{4096}, nil},
		{"a long write with pings due", []int{1, 12 << 10}, []netlog.ClientOption{netlog.WithKeepAlive(300 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c, addr := start(t, Config{Dir: dir})
			s, err := netlog.Dial(throttle(t, addr, 1<<20), append(tc.opts, netlog.WithStreamName("slow"),
				netlog.WithAckTimeout(1500*time.Millisecond), netlog.WithBackoff(10*time.Millisecond, 100*time.Millisecond))...)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return s.Stats().Connected })
			line := append(bytes.Repeat([]byte("x"), 1000), '\n')
			total := 0
			for _, n := range tc.batches {
				if err := s.WriteBatch(bytes.Repeat(line, n), n); err != nil {
					t.Fatal(err)
				}
				total += n
			}
			deliveredOnce(t, c, s, filepath.Join(dir, "slow.log"), total*len(line), 40*time.Second) // 4 or 12 s of link
		})
	}
}
