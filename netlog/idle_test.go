package netlog

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// heapAfterGC returns the bytes of live heap objects.
func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// heapGrowthSettled returns the heap's growth since before once it is at
// most limit bytes for each of n connections, or after 5 s: connections
// take a moment to give their buffers back.
func heapGrowthSettled(before uint64, n int, limit int64) int64 {
	deadline := time.Now().Add(5 * time.Second)
	for {
		grown := int64(heapAfterGC()) - int64(before)
		if grown/int64(n) <= limit || time.Now().After(deadline) {
			return grown
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitConns waits until srv serves n connections.
func waitConns(t *testing.T, srv *Server[echoReq, echoResp], n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Conns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections served, want %d", srv.Conns(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Connections that say nothing hold no read buffer (32 KiB each before),
// a client that speaks right away or after a while is served as before, and
// the handshake timeout and Shutdown still end the silent ones.
func TestSilentConnectionsHoldNoBuffer(t *testing.T) {
	const silent = 400
	var timeouts atomic.Int64
	srv, addr := startEcho(t, &echoServer{},
		WithServerHandshakeTimeout(2*time.Second),
		WithConnErrorHandler(func(_ net.Addr, err error) {
			if errors.Is(err, ErrHandshakeTimeout) {
				timeouts.Add(1)
			}
		}))
	// The hello is in the socket before the server's goroutine looks.
	early, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	echoHello(t, early)

	before := heapAfterGC()
	conns := make([]net.Conn, 0, silent)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range silent {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitConns(t, srv, silent+1)
	grown := int64(heapAfterGC()) - int64(before) // before its first byte, a connection takes no buffer wherever its goroutine is
	t.Logf("%d silent connections: heap %+d bytes (%d a connection)", silent, grown, grown/silent)
	if per := grown / silent; per > 8<<10 {
		t.Errorf("a silent connection holds %d bytes of heap, want at most 8 KiB (its read buffer alone is %d)", per, readBufferSize)
	}

	// One of them speaks after a while: it is served.
	echoHello(t, conns[0])
	// The rest are cut at the handshake timeout, with that reason.
	waitConns(t, srv, 2)
	if n := timeouts.Load(); n != silent-1 {
		t.Errorf("%d handshake timeouts, want %d", n, silent-1)
	}

	// Shutdown does not wait for a silent connection's timeout.
	for range 10 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitConns(t, srv, 12)
	early.Close()
	conns[0].Close()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v with silent connections", d)
	}
}

// A flood of short connections reuses read buffers: allocation per
// connection stays well under one buffer.
func TestShortConnectionsReuseReadBuffers(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	_, addr := startEcho(t, &echoServer{})
	one := func() {
		c := dialEcho(t, addr)
		defer c.Close()
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c) // the server ends the connection
	}
	for range 10 {
		one()
	}
	const n = 200
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	for range n {
		one()
	}
	runtime.ReadMemStats(&ms)
	per := (ms.TotalAlloc - before) / n
	t.Logf("%d bytes allocated a connection, client and server", per)
	if per > readBufferSize/2 {
		t.Errorf("%d bytes allocated a connection: read buffers are not reused", per)
	}
}

// A client that only pings keeps its connection past the frame timeout:
// a ping ends the request it began (ErrNoRequest), and the connection is
// idle again. Before, the codec read on past each ping, the connection
// stayed inside one request, and the frame timeout cut it.
func TestPingsKeepAQuietConnection(t *testing.T) {
	var cut atomic.Int64
	_, addr := startEcho(t, &echoServer{},
		WithIdleTimeout(600*time.Millisecond), WithFrameTimeout(200*time.Millisecond), WithMinFrameRate(0),
		WithConnErrorHandler(func(_ net.Addr, err error) { cut.Add(1); t.Logf("connection ended: %v", err) }))
	c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr), WithKeepAlive(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := sendWait(c, "hello"); err != nil || got != "olleh" {
		t.Fatalf("answer %q, %v", got, err)
	}
	time.Sleep(1500 * time.Millisecond) // 30 pings, 7 frame timeouts
	if got, err := sendWait(c, "again"); err != nil || got != "niaga" {
		t.Fatalf("answer %q, %v", got, err)
	}
	if n, st := cut.Load(), c.Stats(); n != 0 || st.Reconnects != 0 {
		t.Fatalf("quiet connection cut %d times (%d reconnects)", n, st.Reconnects)
	}
}

// sendWait sends req and waits for its answer.
func sendWait(c *Client[string, string], req string) (string, error) {
	type answer struct {
		resp string
		err  error
	}
	ch := make(chan answer, 1)
	if err := c.Send(context.Background(), req, len(req), func(resp string, err error) { ch <- answer{resp, err} }); err != nil {
		return "", err
	}
	select {
	case a := <-ch:
		return a.resp, a.err
	case <-time.After(10 * time.Second):
		return "", errors.New("no answer in 10 s")
	}
}

// Connections past their handshake give their read buffer back while they
// wait for a request: a quiet one holds a few KiB (its reply buffers), it
// is served when a request comes, and the idle timeout cuts it on time.
func TestQuietConnectionsGiveTheirBufferBack(t *testing.T) {
	if !canAwait {
		t.Skip("connections keep their buffer where the server cannot wait for input")
	}
	const quiet, idle = 300, 1500 * time.Millisecond
	srv, addr := startEcho(t, &echoServer{}, WithIdleTimeout(idle), WithMinFrameRate(0))
	ask := func(c net.Conn, id uint64, body string) {
		t.Helper()
		req := binary.LittleEndian.AppendUint64(nil, id)
		req = binary.LittleEndian.AppendUint32(req, uint32(len(body)))
		if _, err := c.Write(append(req, body...)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		ans := make([]byte, 20+len(body))
		if _, err := io.ReadFull(c, ans); err != nil {
			t.Fatalf("answer: %v", err)
		}
		if got := string(ans[20:]); got != reverse(body) {
			t.Fatalf("answer %q to %q", got, body)
		}
	}
	before := heapAfterGC()
	conns := make([]net.Conn, 0, quiet)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for range quiet {
		conns = append(conns, dialEcho(t, addr))
	}
	waitConns(t, srv, quiet)
	grown := heapGrowthSettled(before, quiet, 16<<10)
	t.Logf("%d quiet connections past their handshake: heap %+d bytes (%d a connection)", quiet, grown, grown/quiet)
	if per := grown / quiet; per > 16<<10 {
		t.Errorf("a quiet connection holds %d bytes of heap, want at most 16 KiB (its read buffer alone is %d)", per, readBufferSize)
	}
	if time.Since(start) > idle/2 {
		t.Skipf("setting up took %v: too slow to time the idle timeout", time.Since(start))
	}
	// A request after a quiet spell, then one right after its answer.
	ask(conns[0], 1, "first")
	ask(conns[0], 2, "second")
	// The idle timeout ends a quiet connection once, not twice, after it
	// fell quiet.
	quietFrom := time.Now()
	var one [1]byte
	conns[0].SetReadDeadline(time.Now().Add(4 * idle))
	if _, err := conns[0].Read(one[:]); err == nil {
		t.Fatal("read a byte from the server")
	}
	// The server's clock starts when it has answered, a little before
	// quietFrom: some slack below.
	if d := time.Since(quietFrom); d < idle*9/10 || d > idle+3*idle/4 { // twice would be 3 s
		t.Errorf("connection cut %v after it fell quiet, idle timeout %v", d, idle)
	}
}

// lateServer answers each request from inside Serve of the next one, so
// that the answer arrives while the reader is serving: the reader must
// send it before it waits for input again, even when what followed the
// request was no request (a ping).
type lateServer struct{ echoServer }

type lateConn struct {
	*echoConn
	last func(echoResp)
	resp echoResp
}

func (s *lateServer) Accept(conn net.Conn, r *bufio.Reader) (ServerConn[echoReq, echoResp], error) {
	st, err := s.echoServer.Accept(conn, r)
	if err != nil {
		return nil, err
	}
	return &lateConn{echoConn: st.(*echoConn)}, nil
}

func (c *lateConn) Serve(req echoReq, reply func(echoResp)) {
	if c.last != nil {
		c.last(c.resp) // the request before, answered while serving this one
	}
	c.last, c.resp = reply, echoResp{first: req.id, last: req.id, body: reverse(req.body)}
	if req.body == "last" {
		reply(c.resp)
		c.last = nil
	}
}

func TestAnswersLeaveBeforeTheReaderWaits(t *testing.T) {
	_, addr := startEcho(t, &lateServer{}, WithResponseWindow(time.Hour))
	conn := dialEcho(t, addr)
	defer conn.Close()
	frame := func(dst []byte, id uint64, body string) []byte {
		dst = binary.LittleEndian.AppendUint64(dst, id)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(body)))
		return append(dst, body...)
	}
	// "a", "last" and a ping behind them in one write: "a" is answered
	// while "last" is served, and "last" from inside its Serve; the
	// reader then reads the ping, and nothing else comes.
	if _, err := conn.Write(frame(frame(frame(nil, 1, "a"), 2, "last"), 0, "")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	got := map[uint64]bool{}
	for len(got) < 2 {
		var h [20]byte
		if _, err := io.ReadFull(conn, h[:]); err != nil {
			t.Fatalf("answers got %v: %v", got, err)
		}
		b := make([]byte, binary.LittleEndian.Uint32(h[16:]))
		io.ReadFull(conn, b)
		got[binary.LittleEndian.Uint64(h[:])] = true
	}
}

// dialEcho connects to the echo server at addr and passes its handshake.
func dialEcho(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	echoHello(t, c)
	return c
}

// echoHello passes the echo server's handshake on c.
func echoHello(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("ECHO")); err != nil {
		t.Fatal(err)
	}
	var ok [2]byte
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, ok[:]); err != nil || string(ok[:]) != "OK" {
		t.Fatalf("handshake: %q, %v", ok, err)
	}
}

// A Stream's spare buffers from a burst are given back once a whole period
// goes by without needing them; those in use each period stay, and a
// closed stack keeps nothing.
func TestSpareBuffersShrink(t *testing.T) {
	b := &bufStack{max: 8, every: 20 * time.Millisecond}
	size := func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.free)
	}
	waitSize := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second) // far above the period
		for size() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d spare buffers, want %d", size(), want)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	burst := func() {
		var held []*[]byte
		for range 6 {
			p := b.get()
			if *p == nil {
				*p = make([]byte, 0, 1<<10)
			}
			held = append(held, p)
		}
		for _, p := range held {
			b.put(p)
		}
	}
	burst()
	if got := size(); got != 6 {
		t.Fatalf("%d spare buffers after a burst of 6, want 6", got)
	}
	waitSize(0)
	burst() // a new period begins with the next buffer put back
	waitSize(0)

	// Used in every period, a buffer stays: the bottom of the stack goes,
	// the top (taken and put back) is kept.
	burst()
	start := time.Now()
	for size() > 1 && time.Since(start) < 10*time.Second {
		b.put(b.get())
		time.Sleep(time.Millisecond)
	}
	if got := size(); got != 1 {
		t.Fatalf("%d spare buffers while one is used each period, want 1", got)
	}
	p := b.get()
	if cap(*p) != 1<<10 {
		t.Fatalf("the buffer kept has cap %d: not one put back", cap(*p))
	}
	b.put(p)
	b.close()
	if got := size(); got != 0 {
		t.Fatalf("%d spare buffers after close", got)
	}
	b.put(p)
	if got := size(); got != 0 {
		t.Fatalf("%d spare buffers put after close kept", got)
	}
}

// farewellEcho is the echo server with a farewell: "BYE!".
type farewellEcho struct{ echoServer }

type farewellConn struct{ *echoConn }

func (farewellConn) AppendFarewell(dst []byte) []byte { return append(dst, "BYE!"...) }

func (s *farewellEcho) Accept(conn net.Conn, r *bufio.Reader) (ServerConn[echoReq, echoResp], error) {
	sc, err := s.echoServer.Accept(conn, r)
	if err != nil {
		return nil, err
	}
	return farewellConn{sc.(*echoConn)}, nil
}

// On Shutdown, a connection gets its codec's farewell after its last
// answer, and a quiet one gets it alone; Close says nothing.
func TestShutdownSaysFarewell(t *testing.T) {
	for _, shutdown := range []bool{true, false} {
		hold := make(chan struct{})
		srv, addr := startEcho(t, &farewellEcho{echoServer{hold: hold}})
		busy, quiet := dialEcho(t, addr), dialEcho(t, addr)
		req := binary.LittleEndian.AppendUint64(nil, 1)
		req = binary.LittleEndian.AppendUint32(req, 3)
		busy.Write(append(req, "abc"...))
		deadline := time.Now().Add(10 * time.Second)
		for _, ok := srv.codec.(*farewellEcho).seen.Load(uint64(1)); !ok; _, ok = srv.codec.(*farewellEcho).seen.Load(uint64(1)) {
			if time.Now().After(deadline) {
				t.Fatal("the request never reached the server")
			}
			time.Sleep(time.Millisecond)
		}
		stopped := make(chan error, 1)
		go func() {
			if shutdown {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				stopped <- srv.Shutdown(ctx)
			} else {
				stopped <- srv.Close()
			}
		}()
		close(hold)
		conns := []net.Conn{busy, quiet}
		want := []string{string(appendEchoAnswer(nil, 1, 1, "cba")) + "BYE!", "BYE!"}
		for i, conn := range conns {
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(conn)
			conn.Close()
			switch {
			case shutdown && (err != nil || string(got) != want[i]):
				t.Errorf("Shutdown: read %q, %v; want %q, then the end", got, err, want[i])
			case !shutdown && strings.Contains(string(got), "BYE!"):
				t.Errorf("Close: read %q; want no farewell", got)
			}
		}
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
	}
}

// A connection accepted just before Shutdown, whose goroutine had not run
// yet, is closed at once: its goroutine used to push the deadline
// Shutdown had set back to the handshake's, and Shutdown waited that long.
func TestShutdownBeforeAConnectionRuns(t *testing.T) {
	release := make(chan struct{})
	hook := func() { <-release }
	testHookServeStart.Store(&hook)
	t.Cleanup(func() { testHookServeStart.Store(nil) })
	srv, addr := startEcho(t, &echoServer{}, WithServerHandshakeTimeout(time.Hour))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitConns(t, srv, 1) // accepted; its goroutine waits in the hook
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(ctx) }()
	stopping := func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for sc := range srv.conns {
			sc.dmu.Lock()
			st := sc.stopping
			sc.dmu.Unlock()
			if !st {
				return false
			}
		}
		return true
	}
	for !stopping() {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown = %v: it waited for the handshake timeout", err)
	}
}
