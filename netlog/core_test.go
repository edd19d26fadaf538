package netlog

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/snail-log/snail/internal/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The echo protocol exercises the core alone: a request is "id, length,
// bytes"; the answer is "first id, last id, length, bytes" and carries the
// request's bytes reversed. The server answers in random order.

type echoClient struct{ handshakes atomic.Int64 }

func (e *echoClient) Handshake(conn net.Conn) error {
	e.handshakes.Add(1)
	if _, err := conn.Write([]byte("ECHO")); err != nil {
		return err
	}
	var ok [2]byte
	if _, err := io.ReadFull(conn, ok[:]); err != nil {
		return err
	}
	if string(ok[:]) != "OK" {
		return fmt.Errorf("%w: %q", ErrRejected, ok[:])
	}
	return nil
}

func (e *echoClient) AppendRequest(dst []byte, id uint64, req string) ([]byte, []byte, error) {
	if req == "bad" {
		return dst, nil, errors.New("cannot encode bad")
	}
	dst = binary.LittleEndian.AppendUint64(dst, id)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(req)))
	return dst, []byte(req), nil
}

func (e *echoClient) AppendPing(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, 0)
	return binary.LittleEndian.AppendUint32(dst, 0)
}

func (e *echoClient) NewResponseReader(r io.Reader) ResponseReader[string] {
	return &echoRespReader{r: bufio.NewReader(r)}
}

type echoRespReader struct{ r *bufio.Reader }

func (e *echoRespReader) ReadResponse() (uint64, uint64, string, error) {
	var h [20]byte
	if _, err := io.ReadFull(e.r, h[:]); err != nil {
		return 0, 0, "", err
	}
	b := make([]byte, binary.LittleEndian.Uint32(h[16:]))
	if _, err := io.ReadFull(e.r, b); err != nil {
		return 0, 0, "", err
	}
	return binary.LittleEndian.Uint64(h[:]), binary.LittleEndian.Uint64(h[8:]), string(b), nil
}

type echoReq struct {
	id   uint64
	body string
}

type echoResp struct {
	first, last uint64
	body        string
}

type echoServer struct {
	shuffle bool          // answer each request after a random delay
	hold    chan struct{} // if set, answers wait for it to close
	held    string        // if set, only the answer to this body waits for hold
	seen    sync.Map      // id -> times received
	conns   atomic.Int64
}

func (s *echoServer) Accept(conn net.Conn, r *bufio.Reader) (ServerConn[echoReq, echoResp], error) {
	var hello [4]byte
	if _, err := io.ReadFull(r, hello[:]); err != nil {
		return nil, err
	}
	if string(hello[:]) != "ECHO" {
		conn.Write([]byte("NO"))
		return nil, fmt.Errorf("%w: bad hello", ErrProtocol)
	}
	if _, err := conn.Write([]byte("OK")); err != nil {
		return nil, err
	}
	s.conns.Add(1)
	return &echoConn{s: s, r: r}, nil
}

type echoConn struct {
	s  *echoServer
	r  *bufio.Reader
	wg sync.WaitGroup
}

func (c *echoConn) ReadRequest() (echoReq, error) {
	id, body, err := readEchoFrame(c.r)
	if err == nil && id == 0 {
		return echoReq{}, ErrNoRequest // a ping
	}
	return echoReq{id: id, body: body}, err
}

// readEchoFrame reads the next request or ping (id 0).
func readEchoFrame(r *bufio.Reader) (uint64, string, error) {
	var h [12]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, "", err
	}
	b := make([]byte, binary.LittleEndian.Uint32(h[8:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, "", err
	}
	return binary.LittleEndian.Uint64(h[:]), string(b), nil
}

// readEchoRequest reads the next request, skipping pings (id 0).
func readEchoRequest(r *bufio.Reader) (uint64, string, error) {
	for {
		id, body, err := readEchoFrame(r)
		if err != nil || id != 0 {
			return id, body, err
		}
	}
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

func (c *echoConn) Serve(req echoReq, reply func(echoResp)) {
	n, _ := c.s.seen.LoadOrStore(req.id, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	resp := echoResp{first: req.id, last: req.id, body: reverse(req.body)}
	if !c.s.shuffle && c.s.hold == nil {
		reply(resp)
		return
	}
	c.wg.Go(func() {
		if c.s.hold != nil && (c.s.held == "" || c.s.held == req.body) {
			<-c.s.hold
		}
		if c.s.shuffle {
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		}
		reply(resp)
	})
}

func (c *echoConn) AppendResponses(dst []byte, resps []echoResp) []byte {
	for _, r := range resps {
		dst = appendEchoAnswer(dst, r.first, r.last, r.body)
	}
	return dst
}

// appendEchoAnswer appends the answer to requests first..last.
func appendEchoAnswer(dst []byte, first, last uint64, body string) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, first)
	dst = binary.LittleEndian.AppendUint64(dst, last)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}

func (c *echoConn) Close(error) {}

func startEcho(t *testing.T, s ServerCodec[echoReq, echoResp], opts ...ServerOption) (*Server[echoReq, echoResp], string) {
	t.Helper()
	srv, err := NewServer[echoReq, echoResp](s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve = %v", err)
		}
	})
	return srv, l.Addr().String()
}

// Many goroutines send at once; the server answers in random order; every
// caller gets its own answer, exactly once. With a ResponseParser, the
// senders also Poll after each Send, while the reader goroutine reads too.
func TestFanInFanOut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec ClientCodec[string, string]
		poll  bool
	}{{"reader", &echoClient{}, false}, {"buffered reader and Poll", &parsingEcho{}, true}} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startEcho(t, &echoServer{shuffle: true})
			c, err := NewClient(tc.codec, WithAddrs(addr), WithWindow(256, 1<<20))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const goroutines, per = 32, 500
			var answered atomic.Int64
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range per {
						body := fmt.Sprintf("g%d-i%d", g, i)
						var once atomic.Int32
						err := c.Send(context.Background(), body, len(body), func(resp string, err error) {
							if once.Add(1) != 1 {
								t.Errorf("%s answered twice", body)
							}
							if err != nil || resp != reverse(body) {
								t.Errorf("%s: answer %q, %v", body, resp, err)
							}
							answered.Add(1)
						})
						if err != nil {
							t.Error(err)
							return
						}
						if tc.poll {
							c.Poll()
						}
					}
				})
			}
			wg.Wait()
			if err := c.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := answered.Load(); got != goroutines*per {
				t.Fatalf("%d answered, want %d", got, goroutines*per)
			}
			if st := c.Stats(); st.Sent != goroutines*per || st.Answered != goroutines*per || st.Pending != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// A request the codec cannot encode is answered with the codec's error; the
// others go through.
func TestEncodeErrorAnswersTheRequest(t *testing.T) {
	_, addr := startEcho(t, &echoServer{})
	c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errs := make(chan error, 2)
	for _, body := range []string{"bad", "good"} {
		c.Send(context.Background(), body, 4, func(_ string, err error) { errs <- err })
	}
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	e1, e2 := <-errs, <-errs
	if (e1 == nil) == (e2 == nil) {
		t.Fatalf("errors %v and %v: want exactly one", e1, e2)
	}
}

// The window bounds requests in flight: with the server holding answers,
// Send blocks at the window and resumes when answers come.
func TestWindowBlocksSend(t *testing.T) {
	hold := make(chan struct{})
	_, addr := startEcho(t, &echoServer{hold: hold})
	c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr), WithWindow(4, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 4 {
		if err := c.Send(context.Background(), "x", 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Send(ctx, "y", 1, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fifth Send = %v, want to wait for the window", err)
	}
	close(hold)
	if err := c.Send(context.Background(), "z", 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A reply given after Serve returned, with nothing else in flight, leaves
// at once instead of waiting out the response window (an hour here).
func TestLateReplyLeavesAtOnce(t *testing.T) {
	hold := make(chan struct{})
	_, addr := startEcho(t, &echoServer{hold: hold}, WithResponseWindow(time.Hour))
	c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, body := range []string{"one", "two", "three"} {
		if err := c.Send(context.Background(), body, len(body), nil); err != nil {
			t.Fatal(err)
		}
	}
	close(hold) // the three replies come from other goroutines, after Serve
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("Wait = %v: the replies waited for the window", err)
	}
}

// A reply given after Serve returned while another request is still in
// flight (held here until the test ends) leaves within the response window:
// it does not wait for the other one.
func TestLateReplyLeavesWithinWindow(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	_, addr := startEcho(t, &echoServer{hold: hold, held: "slow"}, WithResponseWindow(20*time.Millisecond))
	c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(context.Background(), "slow", 4, nil); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	if err := c.Send(context.Background(), "fast", 4, func(r string, err error) {
		if err != nil {
			r = err.Error()
		}
		got <- r
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r != "tsaf" {
			t.Fatalf("reply %q, want %q", r, "tsaf")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the reply waited for the held request")
	}
}

// A peer that stops reading becomes an error (the write deadline), not a
// hang; the client reconnects and resends.
func TestStalledPeerBreaksTheConnection(t *testing.T) {
	for _, tc := range []struct {
		name string
		// queued: the requests are sent before the handshake is answered,
		// so that they go out as the connection's resend, not as batches.
		queued bool
	}{{"connected first", false}, {"queued before connecting", true}} {
		t.Run(tc.name, func(t *testing.T) {
			sent := make(chan struct{})
			gate := sent
			if !tc.queued {
				gate = nil
			}
			// Handshake, then never read again.
			addr := rawEchoAfter(t, gate, func(int, net.Conn, *bufio.Reader) {})
			errs := make(chan error, 16)
			c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr), WithWriteTimeout(100*time.Millisecond),
				WithWindow(1024, 1<<30), reportTo(errs, nil))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.queued {
				for deadline := time.Now().Add(10 * time.Second); !c.Stats().Connected; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("no connection")
					}
				}
			}
			big := string(make([]byte, 1<<20))
			for range 64 { // more than the socket buffers hold
				if err := c.Send(context.Background(), big, len(big), nil); err != nil {
					t.Fatal(err)
				}
			}
			if tc.queued {
				if err := c.b.Flush(); err != nil { // into pending, with no connection to write them to
					t.Fatal(err)
				}
				if st := c.Stats(); st.Connected || st.Sent != 0 {
					t.Fatalf("connected before the handshake was answered: %+v", st)
				}
			}
			close(sent)
			select {
			case err := <-errs:
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("reported %v, want a write timeout", err)
				}
				t.Log(err)
			case <-time.After(10 * time.Second): // the report delay is 10 s
				t.Fatal("stalled peer not detected")
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Shutdown on the server answers what it has read before it returns; with
// a deadline that passes first, it returns the context's error.
func TestServerShutdown(t *testing.T) {
	hold := make(chan struct{})
	es := &echoServer{hold: hold}
	srv, addr := startEcho(t, es)
	c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr), WithBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var answered atomic.Int64
	for range 10 {
		c.Send(context.Background(), "q", 1, func(_ string, err error) {
			if err == nil {
				answered.Add(1)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := 0
		es.seen.Range(func(_, _ any) bool { n++; return true })
		if n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not read the requests")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with answers held = %v", err)
	}
	close(hold)
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if srv.Conns() != 0 {
		t.Fatalf("%d connections left", srv.Conns())
	}
}

// A Shutdown whose deadline has passed already, with nothing left to
// answer, cuts what is left and succeeds: only a request cut unanswered
// makes it return the context's error (a collector stopped with
// --shutdown-timeout 0 exited 1 with nothing cut).
func TestShutdownPastDeadlineWithNothingInFlight(t *testing.T) {
	for _, tc := range []struct {
		name  string
		conns int
	}{
		{"no connection", 0},
		{"idle connections", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 5 {
				es := &echoServer{}
				srv, addr := startEcho(t, es)
				for range tc.conns {
					c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr))
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					if err := c.Send(context.Background(), "q", 1, nil); err != nil {
						t.Fatal(err)
					}
					if err := c.Wait(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				if got := srv.Conns(); got != tc.conns {
					t.Fatalf("%d connections, want %d", got, tc.conns)
				}
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				if err := srv.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown past its deadline, nothing in flight = %v", err)
				}
				if srv.Conns() != 0 {
					t.Fatalf("%d connections left", srv.Conns())
				}
			}
		})
	}
}

func TestGracefulShutdownAnswersEverything(t *testing.T) {
	es := &echoServer{shuffle: true}
	srv, addr := startEcho(t, es)
	c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr))
	if err != nil {
		t.Fatal(err)
	}
	var answered, failed atomic.Int64
	for range 1000 {
		c.Send(context.Background(), "q", 1, func(_ string, err error) {
			if err == nil {
				answered.Add(1)
			} else {
				failed.Add(1)
			}
		})
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if answered.Load() != 1000 || failed.Load() != 0 {
		t.Fatalf("answered %d, failed %d", answered.Load(), failed.Load())
	}
	if err := c.Send(context.Background(), "late", 4, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Shutdown = %v", err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// With no server at all, Wait reports ErrUnavailable after the report delay
// and Close answers what is pending with ErrClosed.
func TestUnavailable(t *testing.T) {
	addr := testnet.RefusedAddr(t)
	c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr), WithReportAfter(50*time.Millisecond),
		WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	c.Send(context.Background(), "q", 1, func(_ string, err error) { got <- err })
	if err := c.Wait(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Wait = %v", err)
	}
	c.Close()
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending request ended with %v", err)
	}
}

// Failover: the first address refuses connections, the second serves.
func TestFailover(t *testing.T) {
	dead := testnet.RefusedAddr(t)
	_, addr := startEcho(t, &echoServer{})
	c, err := NewClient[string, string](&echoClient{}, WithAddrs(dead+","+addr), WithBackoff(time.Millisecond, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Send(context.Background(), "q", 1, nil)
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.DialErrors == 0 {
		t.Fatalf("expected a failed attempt on the dead address: %+v", st)
	}
}

// A request waits up to the send window for others to leave with it in one
// write; Wait sends at once what is waiting.
func TestSendWindowHoldsRequests(t *testing.T) {
	_, addr := startEcho(t, &echoServer{})
	c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr), WithSendWindow(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	answers := make(chan string, 3)
	for _, body := range []string{"abc", "de", "f"} {
		if err := c.Send(context.Background(), body, len(body), func(resp string, err error) {
			if err != nil {
				t.Error(err)
			}
			answers <- resp
		}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case a := <-answers:
		t.Fatalf("answered %q within the send window", a)
	case <-time.After(200 * time.Millisecond):
	}
	if st := c.Stats(); st.Sent != 0 {
		t.Fatalf("sent %d requests within the send window", st.Sent)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	got := []string{<-answers, <-answers, <-answers}
	slices.Sort(got)
	if want := []string{"cba", "ed", "f"}; !slices.Equal(got, want) {
		t.Fatalf("answers %q, want %q", got, want)
	}
}

func TestOptionsValidate(t *testing.T) {
	for name, opt := range map[string]ClientOption{
		"addr":    WithAddrs("no-port"),
		"port":    WithAddrs("127.0.0.1:99999"),
		"port 0":  WithAddrs("127.0.0.1:0"),
		"service": WithAddrs("localhost:no-such-service"),
		"window":  WithWindow(0, 1),
		"bytes":   WithWindow(1, 0),
		"backoff": WithBackoff(time.Second, time.Millisecond),
		"tls":     WithTLS(nil),
		"stream":  WithStreamName("../x"),
		"token":   WithToken(string(make([]byte, 2000))),
		"zstd":    WithZstdLevel(9),
		"dial":    WithDialTimeout(0),
		"give up": WithGiveUpAfter(-time.Second),
		"rate":    WithMinWriteRate(-1),
		"send":    WithSendWindow(0),
		"ping":    WithKeepAlive(-time.Second),
	} {
		_, err := NewClient[string, string](&echoClient{}, WithAddrs("127.0.0.1:1"), opt)
		if !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: %v", name, err)
		} else if n := strings.Count(err.Error(), ErrInvalidOption.Error()); n != 1 {
			t.Errorf("%s: %q says %q %d times", name, err, ErrInvalidOption, n)
		}
	}
	if _, err := NewClient[string, string](&echoClient{}); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("no address: %v", err)
	}
	if c, err := NewClient[string, string](&echoClient{}, WithAddrs(":7777, [::1]:7777,no-such-host.invalid:7777")); err != nil {
		t.Errorf("addresses that may connect some day: %v", err)
	} else {
		c.Close()
	}
	if _, err := NewServer[echoReq, echoResp](&echoServer{}, WithMaxConns(0)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("max conns 0: %v", err)
	}
	if _, err := NewServer[echoReq, echoResp](&echoServer{}, WithMinFrameRate(-1)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("min frame rate -1: %v", err)
	}
	if _, err := Dial("127.0.0.1:1", WithCompression(7)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("compression 7: %v", err)
	}
}

func TestCheckStreamName(t *testing.T) {
	for name, want := range map[string]string{
		"app": "", "app.prod": "", "App_2-x": "", "9lives": "", strings.Repeat("a", MaxStreamName): "",
		"": "0 bytes", strings.Repeat("a", MaxStreamName+1): "129 bytes",
		".hidden": "starts with '.'", "-rf": "starts with '-'", "_x": "starts with '_'",
		"a/b": "'/' not allowed", "a b": "' ' not allowed", "été": "starts with 'é'", "caf\u00e9": "'é' not allowed",
		"a\x00": `'\x00' not allowed`, "a..b": "",
	} {
		err := CheckStreamName(name)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", name, err, want)
		}
	}
}

// Where the peer's acknowledgements cannot be seen (here a net.Pipe; on
// TCP outside Linux), a write's timeout stretches by its size at the
// minimum write rate: 200 KiB read at about 100 KiB/s take 2 s, against a
// write timeout of 50 ms.
func TestWriteTimeoutStretchesWithoutAcks(t *testing.T) {
	for _, rate := range []int64{50 << 10, 0} {
		c, err := NewClient[string, string](&echoClient{}, WithAddrs("127.0.0.1:1"), WithWriteTimeout(50*time.Millisecond), WithMinWriteRate(rate))
		if err != nil {
			t.Fatal(err)
		}
		a, b := net.Pipe()
		go func() {
			buf := make([]byte, 1<<10)
			for {
				if _, err := b.Read(buf); err != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		iov := net.Buffers{make([]byte, 100<<10), make([]byte, 100<<10)}
		n, err := c.writeBuffers(a, &iov, 200<<10)
		a.Close()
		b.Close()
		c.Close()
		if rate > 0 && (err != nil || n != 200<<10) {
			t.Errorf("rate %d: wrote %d bytes: %v", rate, n, err)
		}
		if rate == 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("rate 0: wrote %d bytes: %v, want the write timeout", n, err)
		}
	}
}

// TestSendFromCallback: response callbacks send follow-up requests, as a
// protocol that pages through results does, with a window of 2 and 8
// chains under way: Send from a callback uses the room of the request it
// answers instead of waiting for room that only its own goroutine could
// free (it hung there for good before). Past that room, and for Wait and
// Close, a callback gets ErrReentry.
func TestSendFromCallback(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec ClientCodec[string, string]
	}{{"reader", &echoClient{}}, {"buffered reader and Poll", &parsingEcho{}}} {
		t.Run(tc.name, func(t *testing.T) {
			dHeld := make(chan struct{}) // the answer to "d" waits for it
			_, addr := startEcho(t, &echoServer{hold: dHeld, held: "d"})
			c, err := NewClient(tc.codec, WithAddrs(addr), WithWindow(2, 1<<20))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const chains, length = 8, 50
			var wg sync.WaitGroup
			var answered atomic.Int64
			var follow func(chain, n int) func(string, error)
			follow = func(chain, n int) func(string, error) {
				return func(resp string, err error) {
					if want := reverse(fmt.Sprintf("c%d-%d", chain, n)); err != nil || resp != want {
						t.Errorf("chain %d step %d: %q, %v; want %q", chain, n, resp, err, want)
					}
					answered.Add(1)
					if n+1 == length {
						wg.Done()
						return
					}
					body := fmt.Sprintf("c%d-%d", chain, n+1)
					if err := c.Send(context.Background(), body, len(body), follow(chain, n+1)); err != nil {
						t.Errorf("Send from the callback: %v", err)
						wg.Done()
					}
				}
			}
			for i := range chains {
				wg.Add(1)
				body := fmt.Sprintf("c%d-0", i)
				if err := c.Send(context.Background(), body, len(body), follow(i, 0)); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("hung after %d answers", answered.Load())
			}
			if got := answered.Load(); got != chains*length {
				t.Fatalf("%d answers, want %d", got, chains*length)
			}
			if err := c.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}

			// Window of 2, both taken ("d", unanswered, and "a"): a's
			// callback may send one request (a's room), not two; Wait and
			// Close would wait for it.
			if err := c.Send(context.Background(), "d", 1, nil); err != nil {
				t.Fatal(err)
			}
			cbDone := make(chan struct{})
			errs := make(chan error, 4)
			err = c.Send(context.Background(), "a", 1, func(string, error) {
				errs <- c.Send(context.Background(), "b", 1, nil)
				errs <- c.Send(context.Background(), "c", 1, nil)
				errs <- c.Wait(context.Background())
				errs <- c.Close()
				close(cbDone)
			})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-cbDone:
			case <-time.After(20 * time.Second):
				t.Fatal("the callback hung")
			}
			close(dHeld)
			if err := <-errs; err != nil {
				t.Errorf("first Send from the callback: %v", err)
			}
			for _, what := range []string{"second Send", "Wait", "Close"} {
				if err := <-errs; !errors.Is(err, ErrReentry) {
					t.Errorf("%s from the callback: %v, want ErrReentry", what, err)
				}
			}
			if err := c.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestAnswerToARequestNotSent: a peer that answers a request the client
// never sent (a bug, or a forger on a link without TLS) would have the
// client drop requests nobody received. The answer is refused as a
// protocol error, the connection is made again, and the request sent
// again is answered by the next connection. Both ways of reading answers.
func TestAnswerToARequestNotSent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec ClientCodec[string, string]
	}{{"reader", &echoClient{}}, {"poll", &parsingEcho{}}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawEcho(t, func(n int, conn net.Conn, r *bufio.Reader) {
				id, body, err := readEchoRequest(r)
				if err != nil {
					return
				}
				last := id
				if n == 0 {
					last = id + 1000 // and the next thousand, never sent
				}
				conn.Write(appendEchoAnswer(nil, id, last, reverse(body)))
				io.Copy(io.Discard, r)
			})
			errs := make(chan error, 16)
			c, err := NewClient(tc.codec, WithAddrs(addr), WithBackoff(time.Millisecond, 10*time.Millisecond),
				reportTo(errs, nil), WithReportAfter(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var answers atomic.Int32
			var got atomic.Value
			if err := c.Send(context.Background(), "hello", 5, func(resp string, err error) {
				answers.Add(1)
				if err != nil {
					t.Error(err)
				}
				got.Store(resp)
			}); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errs:
				if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "answered request 1001") {
					t.Fatalf("reported %v, want a protocol error naming the request not sent", err)
				}
				t.Log(err)
			case <-time.After(10 * time.Second):
				t.Fatal("the answer to a request not sent was taken")
			}
			if err := c.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			if answers.Load() != 1 || got.Load() != "olleh" {
				t.Fatalf("%d answers, last %v; want one, olleh", answers.Load(), got.Load())
			}
		})
	}
}
