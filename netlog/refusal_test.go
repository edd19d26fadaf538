package netlog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/internal/testcert"
	"github.com/snail-log/snail/internal/testnet"
)

// A goodbye that names a batch makes the client give it up only when
// sending it again would fail the same way: when the collector checked the
// frame whole, or when the batch as the client holds it is over the limits
// the goodbye gives. A batch that fits them (its header was damaged on the
// way) is sent again, as is everything after a goodbye that names no batch
// or another stream's.
func TestRefusalGivesUpOnlyWhatFailsAgain(t *testing.T) {
	const id, seq = 5, 9
	fits := &outBatch{payload: make([]byte, 100), raw: 100}
	big := &outBatch{payload: make([]byte, 2000), raw: 2000}
	bigRaw := &outBatch{payload: make([]byte, 100), raw: 5000}
	for _, tc := range []struct {
		name             string
		stream, seq      uint64
		maxFrame, maxRaw uint32
		batch            *outBatch // nil: not pending
		giveUp           bool
	}{
		{"checked whole", id, seq, 0, 0, nil, true},
		{"payload over the frame limit", id, seq, 1000, 4000, big, true},
		{"decompressed over its limit", id, seq, 1000, 4000, bigRaw, true},
		{"fits: a damaged header", id, seq, 1000, 4000, fits, false},
		{"not pending", id, seq, 1000, 4000, nil, false},
		{"no batch named", id, 0, 0, 0, nil, false},
		{"another stream's", id + 1, seq, 0, 0, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := AppendRefusal(nil, tc.stream, tc.seq, tc.maxFrame, tc.maxRaw, encoder.StatusTooLarge, "too large")
			d, _ := encoder.NewDecoder()
			f, _, err := d.Decode(b, nil)
			if err != nil {
				t.Fatal(err)
			}
			lookup := func(s uint64) (*outBatch, bool) { return tc.batch, s == seq && tc.batch != nil }
			first, last, a, err := ackOf(f, id, lookup)
			if !tc.giveUp {
				var se *StatusError
				if !errors.As(err, &se) || se.Status != encoder.StatusTooLarge {
					t.Fatalf("got %d..%d %+v %v, want the connection ended (everything sent again)", first, last, a, err)
				}
				return
			}
			if err != nil || first != seq || last != seq || a.status != encoder.StatusTooLarge || a.reason != "too large" {
				t.Fatalf("got %d..%d %+v %v, want batch %d refused", first, last, a, err, seq)
			}
		})
	}
}

// A collector that turns the client away for now (too many connections, a
// full disk) is reported at the report delay, like one that does not
// answer; one that turns it away for good (a wrong token) at once.
func TestPassingRejectionWaitsForTheReportDelay(t *testing.T) {
	for _, tc := range []struct {
		status encoder.Status
		atOnce bool
	}{
		{encoder.StatusUnavailable, false},
		{encoder.StatusUnauthorized, true},
	} {
		addr := fakePeer(t, func(conn net.Conn) {
			conn.Read(make([]byte, 4096)) // the hello
			conn.Write(AppendWelcome(nil, Welcome{Status: tc.status, Reason: "come back later, or never"}))
			conn.Close()
		})
		const delay = 500 * time.Millisecond
		reported := make(chan time.Duration, 10)
		start := time.Now()
		s, err := Dial(addr, WithReportAfter(delay), WithBackoff(time.Millisecond, 5*time.Millisecond),
			WithDrainTimeout(time.Millisecond), WithErrorHandler(func(error) {
				select {
				case reported <- time.Since(start):
				default:
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case after := <-reported:
			if tc.atOnce != (after < delay) {
				t.Errorf("status %d: reported after %v (report delay %v), want at once: %v", tc.status, after, delay, tc.atOnce)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("status %d: not reported", tc.status)
		}
		s.Close()
	}
}

// A peer that answers the hello with something other than a frame (the
// collector's metrics listener, an SSH server: a wrong port) is reported
// with the first line of what it said, whether it then closes or waits,
// rather than as bad magic bytes or a peer that does not answer.
func TestNotACollectorIsNamed(t *testing.T) {
	for _, tc := range []struct {
		name, answer, want string
		closes             bool
	}{
		{"http", "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request", `answered "HTTP/1.1 400 Bad Request"`, true},
		{"ssh", "SSH-2.0-OpenSSH_9.6\r\n", `answered "SSH-2.0-OpenSSH_9.6"`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakePeer(t, func(conn net.Conn) {
				conn.Write([]byte(tc.answer))
				if tc.closes {
					conn.Close()
				}
			})
			reported := make(chan error, 10)
			s, err := Dial(addr, WithReportAfter(300*time.Millisecond), WithHandshakeTimeout(50*time.Millisecond),
				WithBackoff(time.Millisecond, 5*time.Millisecond), WithDrainTimeout(time.Millisecond),
				WithErrorHandler(func(err error) {
					select {
					case reported <- err:
					default:
					}
				}))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			select {
			case err := <-reported:
				if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrProtocol) ||
					!strings.Contains(err.Error(), "not a snail collector") || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("reported %v, want ErrUnavailable and ErrProtocol with %s", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Error("not reported")
			}
		})
	}
}

// cutAt cuts a batch over the collector's limit between lines, and lets
// a line longer than the limit go alone.
func TestCutAt(t *testing.T) {
	for _, tc := range []struct {
		b    string
		lim  int
		want int
	}{
		{"ab\ncd\n", 10, 6},
		{"ab\ncd\n", 6, 6},
		{"ab\ncd\n", 5, 3},
		{"ab\ncd\n", 3, 3},
		{"ab\ncd\n", 2, 3},    // "ab\n" is over 2: alone
		{"abcdef\ng\n", 3, 7}, // likewise, up to its newline
		{"abcdef", 3, 6},      // no newline at all: whole
	} {
		if got := cutAt([]byte(tc.b), tc.lim); got != tc.want {
			t.Errorf("cutAt(%q, %d) = %d, want %d", tc.b, tc.lim, got, tc.want)
		}
	}
}

// WithGiveUpAfter ends the drain once the collector has been unreachable
// for the give-up time, long before the drain timeout; a collector that is
// connected but does not ack still gets the whole drain timeout.
func TestGiveUpEndsTheDrain(t *testing.T) {
	closedPort := testnet.RefusedAddr(t)
	silent := fakePeer(t, func(conn net.Conn) {
		d, _ := encoder.NewDecoder()
		f, err := readOne(conn, d)
		if err != nil {
			return
		}
		h, err := ParseHello(f)
		if err != nil {
			return
		}
		conn.Write(AppendWelcome(nil, Welcome{Status: encoder.StatusOK, Stream: h.StreamID}))
		// and then reads on, acking nothing
	})
	for _, tc := range []struct {
		name, addr   string
		drain        time.Duration
		want, unwant string
	}{
		{"unreachable", closedPort, 10 * time.Minute, "give-up time (100ms)", "drain timeout"},
		{"connected, no acks", silent, 500 * time.Millisecond, "drain timeout (500ms)", "give-up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Dial(tc.addr, WithDrainTimeout(tc.drain), WithGiveUpAfter(100*time.Millisecond),
				WithBackoff(time.Millisecond, 5*time.Millisecond), WithErrorHandler(func(error) {}))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.WriteBatch([]byte("a\nb\n"), 2); err != nil {
				t.Fatal(err)
			}
			s.Drain() // as sink.Writer.Close does, before its Sync
			synced := make(chan error, 1)
			go func() { synced <- s.Sync() }()
			select {
			case err := <-synced:
				if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.unwant) {
					t.Errorf("Sync: %v, want an error with %q", err, tc.want)
				}
			case <-time.After(time.Minute):
				var stacks bytes.Buffer
				pprof.Lookup("goroutine").WriteTo(&stacks, 1)
				t.Fatalf("Sync still waits: down for %v, stats %+v; goroutines:\n%s", s.c.downFor(), s.Stats(), stacks.String())
			}
			s.Close() // says nothing more: Sync said it
			if lost := s.Stats().Lost; lost != 2 {
				t.Errorf("%d entries lost, want 2", lost)
			}
		})
	}
}

// finishing and parsingFinishing are the echo codecs as Finishers: the
// answer "bye" is final, and the peer closes the connection after it.
type finishing struct{ echoClient }

func (*finishing) Final(resp string) bool { return resp == "bye" }

type parsingFinishing struct{ parsingEcho }

func (*parsingFinishing) Final(resp string) bool { return resp == "bye" }

// A peer that closes the connection right after a final answer (a
// Finisher's) closes it on purpose: the client reconnects without
// reporting a lost connection, through the reader goroutine and through
// Poll alike. After any other answer the same close is reported.
func TestFinalAnswerEndsTheConnectionQuietly(t *testing.T) {
	for _, codec := range []struct {
		name string
		c    ClientCodec[string, string]
	}{
		{"reader", &finishing{}},
		{"poll", &parsingFinishing{}},
	} {
		for _, answer := range []string{"bye", "ok"} {
			t.Run(codec.name+"/"+answer, func(t *testing.T) {
				addr := rawEcho(t, func(n int, conn net.Conn, r *bufio.Reader) {
					id, _, err := readEchoFrame(r)
					if err != nil {
						return
					}
					body := "ok"
					if n == 0 { // the first connection ends after its answer
						body = answer
					}
					conn.Write(appendEchoAnswer(nil, id, id, body))
					if n == 0 {
						conn.Close()
						return
					}
					for { // later ones answer on
						id, _, err := readEchoFrame(r)
						if err != nil {
							return
						}
						if id != 0 {
							conn.Write(appendEchoAnswer(nil, id, id, "ok"))
						}
					}
				})
				var mu sync.Mutex
				var reported []string
				c, err := NewClient(codec.c, WithAddrs(addr), WithBackoff(time.Millisecond, 5*time.Millisecond),
					WithErrorHandler(func(err error) {
						mu.Lock()
						reported = append(reported, err.Error())
						mu.Unlock()
					}))
				if err != nil {
					t.Fatal(err)
				}
				for i := range 2 { // the second goes on a new connection
					got := make(chan string, 1)
					if err := c.Send(context.Background(), "q", 1, func(resp string, _ error) { got <- resp }); err != nil {
						t.Fatal(err)
					}
					if err := c.Wait(context.Background()); err != nil {
						t.Fatal(err)
					}
					if r := <-got; i == 1 && r != "ok" {
						t.Fatalf("second answer %q", r)
					}
					for deadline := time.Now().Add(10 * time.Second); i == 0 && c.Stats().Reconnects == 0 && c.downFor() == 0; {
						if time.Now().After(deadline) {
							t.Fatal("the connection did not end")
						}
						time.Sleep(time.Millisecond)
					}
				}
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if lost := slices.ContainsFunc(reported, func(r string) bool { return strings.Contains(r, "lost") }); lost != (answer != "bye") {
					t.Fatalf("reported %q; want the close reported: %v", reported, answer != "bye")
				}
			})
		}
	}
}

// A peer that refuses the client for good (a wrong token, TLS on one side
// only, a certificate either side does not accept) is not waited for
// through the drain timeout: Close ends at once with ErrUnavailable, the
// entries counted as lost (or kept in the spool), and the error is
// Permanent. With another address that is only down, the drain waits for
// it as for any outage, to its end.
func TestPermanentRefusalEndsTheDrain(t *testing.T) {
	ca := testcert.NewCA(t)
	serverCert := ca.Issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	tlsPeer := func(cfg *tls.Config) string {
		return fakePeer(t, func(conn net.Conn) {
			tc := tls.Server(conn, cfg)
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if tc.Handshake() == nil {
				tc.Read(make([]byte, 4096)) // the hello, for a peer that refuses after the handshake
			}
			tc.Close()
		})
	}
	unauthorized := fakePeer(t, func(conn net.Conn) {
		conn.Read(make([]byte, 4096)) // the hello
		conn.Write(AppendWelcome(nil, Welcome{Status: encoder.StatusUnauthorized, Reason: "wrong token"}))
		conn.Close()
	})
	plain := fakePeer(t, func(conn net.Conn) {
		conn.Read(make([]byte, 4096)) // a ClientHello
		conn.Write(AppendWelcome(nil, Welcome{Status: encoder.StatusBadFrame, Reason: "not TLS here"}))
		conn.Close()
	})
	verified := &tls.Config{RootCAs: ca.Pool()}
	for _, tc := range []struct {
		name   string
		addrs  string
		tls    *tls.Config
		want   string
		atOnce bool
	}{
		{"wrong token", unauthorized, nil, "wrong token", true},
		{"the peer does not speak TLS", plain, verified, "does not answer in TLS", true},
		{"unknown authority", tlsPeer(&tls.Config{Certificates: []tls.Certificate{serverCert}}),
			&tls.Config{}, "certificate signed by unknown authority", true},
		{"client certificate required", tlsPeer(&tls.Config{Certificates: []tls.Certificate{serverCert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}), verified, "certificate required", true},
		{"another address is down", unauthorized + "," + testnet.RefusedAddr(t), nil, "deadline exceeded", false},
		{"wrong token, batches in the spool", unauthorized, nil, "wrong token", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const drain = 2 * time.Second
			opts := []ClientOption{WithDrainTimeout(drain), WithReportAfter(time.Minute),
				WithBackoff(time.Millisecond, 5*time.Millisecond), WithErrorHandler(func(error) {})}
			if tc.tls != nil {
				opts = append(opts, WithTLS(tc.tls))
			}
			spool := strings.Contains(tc.name, "spool")
			batches := 1
			if spool { // more than the window holds: the rest wait in the spool
				opts = append(opts, WithSpool(t.TempDir(), 1<<20, SpoolBlock), WithSpoolAll(), WithWindow(1, 1<<20))
				batches = 5
			}
			s, err := Dial(tc.addrs, opts...)
			if err != nil {
				t.Fatal(err)
			}
			for range batches {
				if err := s.WriteBatch([]byte("a\nb\n"), 2); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			err = s.Close()
			took := time.Since(start)
			if err == nil || errors.Is(err, ErrUnavailable) != tc.atOnce || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Close: %v, want an error with %q (ErrUnavailable: %v)", err, tc.want, tc.atOnce)
			}
			if tc.atOnce != (took < drain) {
				t.Errorf("Close took %v (drain timeout %v), want at once: %v", took, drain, tc.atOnce)
			}
			if tc.atOnce && !Permanent(err) {
				t.Errorf("Close: %v, not Permanent", err)
			}
			if st := s.Stats(); spool && (st.Lost != 0 || st.Spooled != 2*uint64(batches)) || !spool && st.Lost != 2 {
				t.Errorf("%d entries lost, %d kept in the spool; want the %d written in the spool, or lost without one",
					st.Lost, st.Spooled, 2*batches)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{ErrUnavailable, false},
		{fmt.Errorf("%w: %w", ErrUnavailable, &StatusError{Status: encoder.StatusUnauthorized}), true},
		{&StatusError{Status: encoder.StatusBadStream}, true},
		{&StatusError{Status: encoder.StatusUnavailable}, false},
		{&StatusError{Status: encoder.StatusShuttingDown}, false},
		{fmt.Errorf("%w: TLS handshake: x", ErrRejected), true},
		{ErrProtocol, false},
	} {
		if got := Permanent(tc.err); got != tc.want {
			t.Errorf("Permanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A batch waiting for room in a full spool (SpoolBlock) stops waiting as
// one waiting for room in the window does: with ErrUnavailable once the
// collector has been down for the report delay or refuses the client for
// good, and after Drain at the drain's end. It used to wait until the
// spool had room, however long the collector stayed down, holding the
// sink's writers (and snail send, deaf to SIGTERM) with it.
func TestFullSpoolWaitEnds(t *testing.T) {
	unauthorized := fakePeer(t, func(conn net.Conn) {
		conn.Read(make([]byte, 4096)) // the hello
		conn.Write(AppendWelcome(nil, Welcome{Status: encoder.StatusUnauthorized, Reason: "wrong token"}))
		conn.Close()
	})
	down := testnet.RefusedAddr(t)
	for _, tc := range []struct {
		name  string
		addr  string
		drain bool
		want  string
	}{
		{"down past the report delay", down, false, "peer unavailable"},
		{"down, draining", down, true, "drain timeout (300ms) ended"},
		{"refused for good", unauthorized, false, "wrong token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Dial(tc.addr, WithSpool(t.TempDir(), 1<<20, SpoolBlock), WithSpoolAll(),
				WithReportAfter(200*time.Millisecond), WithDrainTimeout(300*time.Millisecond),
				WithBackoff(time.Millisecond, 5*time.Millisecond), WithErrorHandler(func(error) {}))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			batch := bytes.Repeat([]byte("0123456789abcdef0123456789abcde\n"), 8<<10) // 256 KiB
			// The spool's 1 MiB holds 3 with their headers.
			for range 3 {
				if err := s.WriteBatch(batch, 8<<10); err != nil {
					t.Fatal(err)
				}
			}
			if tc.drain {
				s.Drain()
			}
			written := make(chan error, 1)
			go func() { written <- s.WriteBatch(batch, 8<<10) }()
			select {
			case err := <-written:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("WriteBatch into a full spool: %v, want an error with %q", err, tc.want)
				}
				if tc.addr == unauthorized && !Permanent(err) {
					t.Fatalf("WriteBatch: %v, not Permanent", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("WriteBatch into a full spool still waits after 20 s")
			}
		})
	}
}
