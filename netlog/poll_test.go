package netlog

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snail-log/snail/internal/testnet"
)

// parsingEcho is the echo client with ResponseParser: its connections are
// read through the Client's buffer, and Poll can take answers.
type parsingEcho struct{ echoClient }

const echoMaxBody = 1 << 20

func (p *parsingEcho) ParseResponse(b []byte) (int, uint64, uint64, string, error) {
	if len(b) < 20 {
		return 0, 0, 0, "", nil
	}
	n := binary.LittleEndian.Uint32(b[16:])
	if n > echoMaxBody {
		return 0, 0, 0, "", fmt.Errorf("%w: answer of %d bytes", ErrProtocol, n)
	}
	if len(b) < 20+int(n) {
		return 0, 0, 0, "", nil
	}
	return 20 + int(n), binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:]), string(b[20 : 20+n]), nil
}

// rawEcho serves the echo handshake on a loopback listener and hands each
// connection, with a reader of its requests, to handle (one goroutine per
// connection, stopped by the test's end).
func rawEcho(t *testing.T, handle func(n int, conn net.Conn, r *bufio.Reader)) string {
	t.Helper()
	return rawEchoAfter(t, nil, handle)
}

// rawEchoAfter is rawEcho with each handshake held until gate is closed
// (or the test ends): until then a client's requests wait, connected but
// not answered.
func rawEchoAfter(t *testing.T, gate <-chan struct{}, handle func(n int, conn net.Conn, r *bufio.Reader)) string {
	t.Helper()
	if gate == nil { // no gate: handshakes at once
		open := make(chan struct{})
		close(open)
		gate = open
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for n := 0; ; n++ {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Go(func() {
				select {
				case <-gate:
				case <-done:
					return
				}
				r := bufio.NewReader(conn)
				if _, err := io.ReadFull(r, make([]byte, 4)); err != nil {
					return
				}
				if _, err := conn.Write([]byte("OK")); err != nil {
					return
				}
				handle(n, conn, r)
			})
		}
	})
	return l.Addr().String()
}

// blockPollLoop keeps the connections' reader goroutines from reading until
// the returned function is called, so that only Poll takes answers. Call
// it before anything closes the connection (Close, an error): closing
// waits for the reader.
func blockPollLoop(t *testing.T) (release func()) {
	ch := make(chan struct{})
	hook := func() { <-ch }
	testHookPollLoop.Store(&hook)
	var once sync.Once
	release = func() {
		once.Do(func() {
			testHookPollLoop.Store(nil)
			close(ch)
		})
	}
	t.Cleanup(release)
	return release
}

// reportTo is an error handler that calls before, if set, and passes the
// error to errs unless errs is full.
func reportTo(errs chan<- error, before func()) ClientOption {
	return WithErrorHandler(func(err error) {
		if before != nil {
			before()
		}
		select {
		case errs <- err:
		default:
		}
	})
}

// With a ResponseParser, Poll answers from the calling goroutine what has
// arrived, an answer split across many reads included, and only once it
// is whole.
func TestPollTakesAnswersInCaller(t *testing.T) {
	release := blockPollLoop(t)
	half := make(chan struct{})
	rest := make(chan struct{})
	addr := rawEcho(t, func(_ int, conn net.Conn, r *bufio.Reader) {
		id, body, err := readEchoRequest(r)
		if err != nil {
			return
		}
		ans := appendEchoAnswer(nil, id, id, reverse(body))
		for i := range 10 { // the header in pieces
			conn.Write(ans[i : i+1])
		}
		close(half)
		<-rest
		conn.Write(ans[10:])
	})
	c, err := NewClient[string, string](&parsingEcho{}, WithAddrs(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer release()
	var got string
	var calls atomic.Int32
	if err := c.Send(context.Background(), "hello", 5, func(resp string, err error) {
		calls.Add(1)
		got = resp // read below without a lock: Poll runs this in the test's goroutine
		if err != nil {
			t.Error(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	<-half
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 20; i++ { // part of the answer has come: nothing to answer
		if c.Poll() {
			t.Fatal("Poll answered half an answer")
		}
	}
	close(rest)
	for !c.Poll() {
		if time.Now().After(deadline) {
			t.Fatal("Poll never answered")
		}
		time.Sleep(time.Millisecond)
	}
	if got != "olleh" || calls.Load() != 1 {
		t.Fatalf("answer %q in %d calls", got, calls.Load())
	}
	if c.Poll() {
		t.Fatal("Poll answered again")
	}
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// An answer the parser rejects, or one larger than the Client's buffer,
// ends the connection with a reported error, whether Poll or the reader
// goroutine reads it; the request goes again on the next connection and is
// answered there.
func TestBadAnswerBreaksTheConnection(t *testing.T) {
	type badAnswer struct {
		name  string
		poll  bool
		bad   func(id uint64) []byte
		wants string
	}
	var cases []badAnswer
	for _, poll := range []bool{false, true} {
		reader := "reader"
		if poll {
			reader = "poll"
		}
		cases = append(cases,
			badAnswer{"too long for the parser/" + reader, poll, func(id uint64) []byte {
				return binary.LittleEndian.AppendUint32(appendEchoAnswer(nil, id, id, "")[:16], 1<<30)
			}, "answer of"},
			badAnswer{"larger than the buffer/" + reader, poll, func(id uint64) []byte {
				return appendEchoAnswer(nil, id, id, strings.Repeat("x", respBufSize))
			}, "response larger than"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			release := func() {}
			if tc.poll {
				release = blockPollLoop(t)
			}
			addr := rawEcho(t, func(n int, conn net.Conn, r *bufio.Reader) {
				id, body, err := readEchoRequest(r)
				if err != nil {
					return
				}
				if n == 0 {
					conn.Write(tc.bad(id))
				} else {
					conn.Write(appendEchoAnswer(nil, id, id, reverse(body)))
				}
				io.Copy(io.Discard, r)
			})
			errs := make(chan error, 16)
			c, err := NewClient[string, string](&parsingEcho{}, WithAddrs(addr), WithBackoff(time.Millisecond, 10*time.Millisecond),
				reportTo(errs, release)) // release: the connection is about to close
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			defer release()
			answer := make(chan string, 1)
			if err := c.Send(context.Background(), "abc", 3, func(resp string, err error) {
				if err != nil {
					t.Error(err)
				}
				answer <- resp
			}); err != nil {
				t.Fatal(err)
			}
			timeout := time.After(10 * time.Second)
			for {
				if tc.poll {
					c.Poll()
				}
				select {
				case err := <-errs:
					if !strings.Contains(err.Error(), tc.wants) {
						t.Fatalf("reported %v, want %q", err, tc.wants)
					}
					errs = nil // seen; now the answer on the next connection
					continue
				case got := <-answer:
					// The answer came on a later connection, so the bad one
					// broke the first; its report may still be on its way
					// to the handler, which runs in a goroutine of its own.
					if errs != nil {
						select {
						case err := <-errs:
							if !strings.Contains(err.Error(), tc.wants) {
								t.Fatalf("reported %v, want %q", err, tc.wants)
							}
						case <-timeout:
							t.Fatal("the bad answer was never reported")
						}
					}
					if got != "cba" {
						t.Fatalf("answer %q", got)
					}
					return
				case <-timeout:
					t.Fatal("no answer")
				case <-time.After(time.Millisecond):
				}
			}
		})
	}
}

// A peer that reads requests and never answers breaks the connection after
// the ack timeout, through either reader.
func TestAckTimeout(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec ClientCodec[string, string]
	}{{"reader", &echoClient{}}, {"buffered reader", &parsingEcho{}}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawEcho(t, func(_ int, _ net.Conn, r *bufio.Reader) { io.Copy(io.Discard, r) })
			errs := make(chan error, 16)
			c, err := NewClient(tc.codec, WithAddrs(addr), WithAckTimeout(50*time.Millisecond), reportTo(errs, nil))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Send(context.Background(), "abc", 3, nil); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errs:
				var ne net.Error
				if !strings.Contains(err.Error(), "no answer for 50ms") || !errors.As(err, &ne) || !ne.Timeout() ||
					strings.Contains(err.Error(), "->") { // no local address, which changes every time
					t.Fatalf("reported %v, want an ack timeout, without the local address", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("silent peer not detected")
			}
		})
	}
}

// A peer that holds the handshake (a collector stalled on its disk does)
// neither keeps Wait past the report delay nor Close past its call: the
// report comes while the attempt is still under way, and Close cuts the
// attempt short.
func TestHeldHandshake(t *testing.T) {
	addr := rawEchoAfter(t, make(chan struct{}), func(_ int, _ net.Conn, r *bufio.Reader) { io.Copy(io.Discard, r) })
	errs := make(chan error, 16)
	c, err := NewClient(&echoClient{}, WithAddrs(addr), WithReportAfter(100*time.Millisecond),
		WithHandshakeTimeout(time.Minute), reportTo(errs, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(context.Background(), "abc", 3, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Wait(context.Background()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no answer yet") {
		t.Fatalf("Wait: %v, want ErrUnavailable while the first attempt goes on", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Wait took %v with a report delay of 100ms", took)
	}
	if err := <-errs; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("reported %v", err)
	}
	start = time.Now()
	c.Close()
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Close took %v during a handshake of up to a minute", took)
	}
}

// The report comes at the report delay also while the client waits out a
// long backoff between two refused attempts, not at the next attempt.
func TestReportDuringBackoff(t *testing.T) {
	addr := testnet.RefusedAddr(t)
	c, err := NewClient(&echoClient{}, WithAddrs(addr), WithReportAfter(100*time.Millisecond),
		WithBackoff(time.Minute, time.Minute), WithErrorHandler(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(context.Background(), "abc", 3, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Wait(context.Background()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Wait: %v, want ErrUnavailable with the refusal", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Wait took %v with a report delay of 100ms", took)
	}
}

// A peer that rejects every handshake with the same reason is reported
// once, at the first rejection, not once per attempt; a different reason
// is reported too. Two addresses that reject with their own reasons are
// reported once each, not once per attempt as the client goes from one to
// the other.
func TestRejectionReportedOnce(t *testing.T) {
	var accepted atomic.Int64
	peer := func(reason *atomic.Value) string {
		return fakePeer(t, func(conn net.Conn) {
			accepted.Add(1)
			var hello [4]byte
			io.ReadFull(conn, hello[:])
			io.WriteString(conn, reason.Load().(string))
			conn.Close()
		})
	}
	waitFor := func(n int64) {
		t.Helper()
		start, deadline := accepted.Load(), time.Now().Add(10*time.Second)
		for accepted.Load() < start+n {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections in 10s, want %d", accepted.Load()-start, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	var first, second atomic.Value
	first.Store("NO")
	second.Store("NA")
	for _, tc := range []struct {
		name   string
		addrs  []string
		change bool // the first address's reason, half way
	}{
		{"one address, its reason changes", []string{peer(&first)}, true},
		{"two addresses", []string{peer(&first), peer(&second)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first.Store("NO")
			var mu sync.Mutex
			var reports []string
			c, err := NewClient(&echoClient{}, WithAddrs(tc.addrs...), WithReportAfter(time.Minute),
				WithBackoff(time.Millisecond, 2*time.Millisecond), WithErrorHandler(func(err error) {
					mu.Lock()
					reports = append(reports, err.Error())
					mu.Unlock()
				}))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitFor(20)
			if tc.change {
				first.Store("NA")
			}
			waitFor(20)
			mu.Lock()
			defer mu.Unlock()
			if len(reports) != 2 || !strings.Contains(reports[0], `"NO"`) || !strings.Contains(reports[1], `"NA"`) {
				t.Fatalf("%d reports over 40 rejections, want one per reason: %q", len(reports), reports)
			}
		})
	}
}

// A peer that accepts connections and never answers the handshake (a
// stopped collector: the kernel still accepts) is reported as such, in
// words that are the same on every attempt: no local port in them.
func TestSilentPeerReported(t *testing.T) {
	addr := fakePeer(t, func(net.Conn) {}) // held open, never answered
	errs := make(chan error, 100)
	c, err := NewClient(&echoClient{}, WithAddrs(addr), WithHandshakeTimeout(20*time.Millisecond),
		WithReportAfter(100*time.Millisecond), WithBackoff(time.Millisecond, 2*time.Millisecond), WithErrorHandler(func(err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case err := <-errs:
		if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "no answer within 20ms") || strings.Contains(err.Error(), "->") {
			t.Fatalf("reported %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing reported")
	}
}

// fakePeer serves each connection on a loopback port with handle, in the
// accepting goroutine, until the test ends; then it closes the listener
// and every connection, and returns once that goroutine has.
func fakePeer(t *testing.T, handle func(net.Conn)) (addr string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, conn)
			handle(conn)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// A sender waiting for room polls for answers with the mutex free; if the
// reader goroutine answers every request then, its broadcast comes before
// the sender waits. The sender must see the room anyway: it waited for
// good before (the sink's output, in a test where the error handlers log
// through the same Stream, hung once in a few hundred loaded runs).
func TestRoomFreedWhileSenderPolls(t *testing.T) {
	hold := make(chan struct{})
	_, addr := startEcho(t, &echoServer{hold: hold})
	c, err := NewClient(&parsingEcho{}, WithAddrs(addr), WithWindow(1, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := make(chan struct{})
	if err := c.Send(context.Background(), "one", 3, func(string, error) { close(first) }); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	testHookAfterPoll = func() {
		once.Do(func() {
			close(hold) // the answer comes now, read by the reader goroutine
			<-first
		})
	}
	defer func() { testHookAfterPoll = nil }()
	sent := make(chan error, 1)
	go func() {
		sent <- c.send(context.Background(), &call[string, string]{req: "two", size: 3}, true) // the window is full: it polls
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sender waits for room the answer freed while it polled")
	}
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
