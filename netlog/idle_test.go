package netlog

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
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
	hello := func(conn net.Conn) {
		t.Helper()
		if _, err := conn.Write([]byte("ECHO")); err != nil {
			t.Fatal(err)
		}
		var ok [2]byte
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(conn, ok[:]); err != nil || string(ok[:]) != "OK" {
			t.Fatalf("handshake: %q, %v", ok, err)
		}
	}
	// The hello is in the socket before the server's goroutine looks.
	early, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	hello(early)

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
	time.Sleep(100 * time.Millisecond) // every connection's goroutine waits
	grown := int64(heapAfterGC()) - int64(before)
	t.Logf("%d silent connections: heap %+d bytes (%d a connection)", silent, grown, grown/silent)
	if per := grown / silent; per > 8<<10 {
		t.Errorf("a silent connection holds %d bytes of heap, want at most 8 KiB (its read buffer alone is %d)", per, readBufferSize)
	}

	// One of them speaks after a while: it is served.
	hello(conns[0])
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
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("ECHO"))
		var ok [2]byte
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, ok[:]); err != nil {
			t.Fatal(err)
		}
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
