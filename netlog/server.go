package netlog

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/snail-log/snail/batcher"
)

// Errors a Server passes to its connection error handler.
var (
	// ErrTooManyConns: the connection was over the server's limit.
	ErrTooManyConns = errors.New("netlog: too many connections")
	// ErrIdleTimeout: no request started within the idle timeout.
	ErrIdleTimeout = errors.New("netlog: idle timeout")
	// ErrFrameTimeout: a request did not arrive whole within the frame
	// timeout after its first byte.
	ErrFrameTimeout = errors.New("netlog: request too slow")
	// ErrHandshakeTimeout: the handshake did not finish in time.
	ErrHandshakeTimeout = errors.New("netlog: handshake timeout")
	// ErrTLSHandshake: the TLS handshake failed (no or a bad client
	// certificate, not TLS at all).
	ErrTLSHandshake = errors.New("netlog: TLS handshake failed")
	// ErrTLSRequired: the client spoke without TLS to a Server that
	// requires it (given to a Refuser).
	ErrTLSRequired = errors.New("TLS required")
)

// Refuser is a ServerCodec that can tell a client, in its protocol's own
// terms, why the Server turns it away before the codec's handshake: the
// Server is at its connection limit (ErrTooManyConns; not on a TLS
// Server, whose client expects TLS records), or the client does not speak
// TLS to a Server that requires it (ErrTLSRequired), as net/http answers
// HTTP on an HTTPS port. The Server calls Refuse with the raw connection,
// under a write deadline, and then closes it.
type Refuser interface {
	Refuse(conn net.Conn, reason error)
}

// Farewell is a ServerConn that can tell its client, in its protocol's own
// terms, that the Server is shutting down. On Shutdown, once a
// connection's last reply is written, the Server writes the farewell
// (under the write deadline) before it closes the connection: the client
// then knows it met no network fault, and may go to another server at
// once. It is a courtesy: a client that does not take it within a second
// does not get it. Not on Close, which does not wait for replies either.
type Farewell interface {
	AppendFarewell(dst []byte) []byte
}

// ServerCodec speaks a protocol's server half for a Server.
type ServerCodec[Req, Resp any] interface {
	// Accept runs the handshake on a new connection, reading from r (a
	// buffered reader of conn) and writing to conn, under the handshake
	// deadline, and returns the connection's state. An error closes the
	// connection; the codec may have written its reason to the client.
	// r is the Server's, lent for the life of the connection: the codec
	// must not use it after Accept's error or after Close.
	Accept(conn net.Conn, r *bufio.Reader) (ServerConn[Req, Resp], error)
}

// ServerConn is a codec's state for one connection.
type ServerConn[Req, Resp any] interface {
	// ReadRequest reads the next request. An error ends the connection:
	// io.EOF when the client closed it between requests. ErrNoRequest
	// does not: a frame that is no request (a ping) was read, and the
	// Server calls ReadRequest again, the idle timeout started anew.
	//
	// A read of more than 32 KiB, which the Server's buffered reader
	// passes straight to the connection, tells the Server that the codec
	// waits for that many bytes: on Linux it asks the kernel not to wake
	// it for fewer (SO_RCVLOWAT, up to 512 KiB), and so reads a large
	// request in a few reads. A codec reads a request's body with
	// io.ReadFull of the size its header announced, never into a larger
	// buffer that the client's bytes may not fill: such a read would
	// wait for the frame deadline before it got what had come.
	ReadRequest() (Req, error)
	// Serve handles req and calls reply exactly once with its response,
	// before it returns or later from any goroutine. Requests of one
	// connection are served one after another, in order. Replies leave
	// together: when nothing more is buffered to read, when 64 wait, or
	// when the response window has passed since replies last left (checked
	// before each read of the next request, after a ping too). A reply
	// given after Serve returned leaves at once if no other request is in
	// flight, else within the window.
	Serve(req Req, reply func(Resp))
	// AppendResponses appends the frames of resps to dst; it may merge
	// them (one ack for a range of requests).
	AppendResponses(dst []byte, resps []Resp) []byte
	// Close releases the connection's state, once its last reply is
	// written. cause is why the connection ended (nil for a clean end).
	Close(cause error)
}

// Server is the server half of the request-response core. Serve accepts
// connections on listeners; each connection gets a reader goroutine and a
// response batcher. Shutdown and Close stop it like net/http's.
type Server[Req, Resp any] struct {
	codec ServerCodec[Req, Resp]
	cfg   serverConfig

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*srvConn[Req, Resp]]struct{}
	shutting  bool
	closed    bool
	wg        sync.WaitGroup
	nconns    atomic.Int64
}

// NewServer returns a Server that serves connections with codec.
func NewServer[Req, Resp any](codec ServerCodec[Req, Resp], opts ...ServerOption) (*Server[Req, Resp], error) {
	if codec == nil {
		return nil, fmt.Errorf("%w: nil codec", ErrInvalidOption)
	}
	cfg, err := newServerConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Server[Req, Resp]{
		codec:     codec,
		cfg:       cfg,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*srvConn[Req, Resp]]struct{}),
	}, nil
}

// Conns returns the number of connections being served.
func (s *Server[Req, Resp]) Conns() int { return int(s.nconns.Load()) }

// Serve accepts connections on l until Shutdown or Close, and returns
// ErrServerClosed then. Other accept errors are returned as they are,
// except temporary ones (too many open files), which it waits out.
func (s *Server[Req, Resp]) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		s.wg.Done()
	}()
	var delay time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			shutting := s.shutting
			s.mu.Unlock()
			if shutting {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if n := s.nconns.Add(1); n > int64(s.cfg.maxConns) {
			s.nconns.Add(-1)
			err := fmt.Errorf("%w: %d open, limit %d", ErrTooManyConns, n-1, s.cfg.maxConns)
			if rf, ok := s.codec.(Refuser); ok && s.cfg.tls == nil {
				// A few bytes into an empty send buffer: the deadline is
				// only a bound, so that the accept loop never waits here.
				_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
				rf.Refuse(conn, err)
			}
			conn.Close()
			s.connError(conn.RemoteAddr(), err)
			continue
		}
		sc := &srvConn[Req, Resp]{s: s, raw: conn, conn: conn}
		s.mu.Lock()
		if s.shutting {
			s.mu.Unlock()
			s.nconns.Add(-1)
			conn.Close()
			return ErrServerClosed
		}
		s.conns[sc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go sc.serve()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server[Req, Resp]) connError(addr net.Addr, err error) {
	if s.cfg.onConnError != nil {
		s.cfg.onConnError(addr, err)
	}
}

// Shutdown stops accepting, stops reading requests on every connection
// (a request arriving is abandoned unanswered: its client sends it again),
// waits until every request read has been answered and every connection is
// closed, like http.Server.Shutdown. If ctx ends first it closes what is
// left, and returns ctx's error if that cut a request unanswered.
func (s *Server[Req, Resp]) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.stopReading()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		cut := s.busy()
		s.Close()
		<-done
		if !cut {
			return nil // only idle or closing connections were cut
		}
		return ctx.Err()
	}
}

// busy reports whether a connection has a request read and not answered.
func (s *Server[Req, Resp]) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.imu.Lock()
		b := c.inflight > 0 || c.serving
		c.imu.Unlock()
		if b {
			return true
		}
	}
	return false
}

// Close closes every listener and connection at once, without waiting for
// requests being served to be answered, and waits for every goroutine of
// the Server to end.
func (s *Server[Req, Resp]) Close() error {
	s.mu.Lock()
	s.shutting = true
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.raw.Close()
		c.abandon()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// srvConn is one connection of a Server.
type srvConn[Req, Resp any] struct {
	s    *Server[Req, Resp]
	raw  net.Conn // the TCP connection, for stopReading and Close
	conn net.Conn // raw, or the TLS connection over it

	dmu         sync.Mutex // orders deadline changes with stopReading
	stopping    bool
	handshaking bool      // reads run under the handshake deadline
	phase       int       // 0 between requests (idle), 1 inside one
	idleFrom    time.Time // when the idle phase began
	frameStart  time.Time // when the request under way began
	frameBytes  int64     // its bytes read so far

	rawRC syscall.RawConn // raw, for awaitInput and inputReady (nil: not a socket)

	// The receive low-water mark, touched by the reader goroutine only
	// (see expect).
	lowatRC syscall.RawConn // nil: no mark on this connection
	lowat   int             // the mark set on the socket (1: none)
	trickle bool            // the request under way came slower than its mark

	imu       sync.Mutex // guards the count of requests not answered yet
	icond     *sync.Cond
	inflight  int
	serving   bool // the reader is inside Serve
	lateArmed bool // the late-reply timer is set
	abandoned bool // Close: do not wait for answers
}

// abandon stops the connection from waiting for answers (Server.Close).
func (c *srvConn[Req, Resp]) abandon() {
	c.imu.Lock()
	c.abandoned = true
	if c.icond != nil {
		c.icond.Broadcast()
	}
	c.imu.Unlock()
}

// stopReading makes the connection's reads return at once.
func (c *srvConn[Req, Resp]) stopReading() {
	c.dmu.Lock()
	c.stopping = true
	_ = c.raw.SetReadDeadline(time.Now())
	c.dmu.Unlock()
}

// Read reads from the connection under the deadline of the current phase:
// the idle timeout before a request's first byte, the frame timeout from it.
func (c *srvConn[Req, Resp]) Read(p []byte) (int, error) {
	c.dmu.Lock()
	if c.stopping {
		c.dmu.Unlock()
		return 0, ErrServerClosed
	}
	if c.handshaking {
		c.dmu.Unlock()
		return c.conn.Read(p)
	}
	if c.phase == 0 {
		_ = c.conn.SetReadDeadline(c.idleFrom.Add(c.s.cfg.idleTimeout))
	}
	c.dmu.Unlock()
	c.expect(len(p))
	n, err := c.conn.Read(p)
	for n == 0 && err != nil && c.lowat > 1 && c.slowerThanMark(err) {
		n, err = c.conn.Read(p)
	}
	if h := testHookServerRead.Load(); h != nil && n > 0 {
		(*h)(n)
	}
	if n > 0 {
		c.dmu.Lock()
		if !c.stopping {
			started := c.phase == 0
			if started {
				c.phase = 1
				c.frameStart, c.frameBytes = time.Now(), 0
			}
			c.frameBytes += int64(n)
			if started || c.s.cfg.minFrameRate > 0 {
				_ = c.conn.SetReadDeadline(c.frameDeadline())
			}
		}
		c.dmu.Unlock()
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.dmu.Lock()
			switch {
			case c.stopping:
				err = ErrServerClosed
			case c.phase == 0:
				err = fmt.Errorf("%w: nothing for %v", ErrIdleTimeout, c.s.cfg.idleTimeout)
			case c.s.cfg.minFrameRate > 0:
				err = fmt.Errorf("%w: request not whole after %v, with %d bytes of it in (the frame timeout, %v, and %d bytes a second after it)",
					ErrFrameTimeout, time.Since(c.frameStart).Round(time.Millisecond), c.frameBytes, c.s.cfg.frameTimeout, c.s.cfg.minFrameRate)
			default:
				err = fmt.Errorf("%w: request not whole after %v", ErrFrameTimeout, c.s.cfg.frameTimeout)
			}
			c.dmu.Unlock()
		}
	}
	return n, err
}

// frameDeadline is when the request under way must be whole: the frame
// timeout from its first byte, plus the time its bytes so far take at the
// minimum rate. Under dmu.
func (c *srvConn[Req, Resp]) frameDeadline() time.Time {
	return c.deadlineAfter(c.frameBytes)
}

// deadlineAfter is frameDeadline once n bytes of the request are in.
func (c *srvConn[Req, Resp]) deadlineAfter(n int64) time.Time {
	var stretch time.Duration
	if r := c.s.cfg.minFrameRate; r > 0 {
		stretch = time.Duration(float64(n) / float64(r) * float64(time.Second))
	}
	return c.frameStart.Add(c.s.cfg.frameTimeout + stretch)
}

// readBufferSize is the size of the buffered reader codecs read from.
const readBufferSize = 32 << 10

// respBatch is how many replies one write of a connection carries at
// most. Its two buffers are allocated for each connection at its
// handshake: 64 replies (the log client has at most 16 frames in flight
// by default) rather than 256 made a collector's connection 24 KiB
// lighter.
const respBatch = 64

// readers holds the buffered readers of connections that have ended, for
// new ones: a flood of short connections (clients reconnecting, hostile
// ones turned away) then does not allocate 32 KiB each.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// maxLowat bounds the receive low-water mark. In a test on this project's
// 2-core machine (1 MiB writes over loopback to a reader faster than the
// sender), a mark of 512 KiB took the reader from 5 reads and 187-216 us
// of CPU per MiB to 1.7 reads and 113-124 us, and the sender, which wakes
// the reader, from 242-254 to 189-193 us; 64 KiB saved a third as much.
const maxLowat = 512 << 10

// expect is called before each read of n bytes. A read of more than the
// buffered reader holds comes straight from a codec that waits for that
// many bytes of a request (ServerConn.ReadRequest): the reader goroutine
// then asks the kernel, on Linux, not to wake it for fewer (SO_RCVLOWAT),
// and so reads a frame in a few large reads instead of one per segment
// that arrives, each a wake-up of its own. Other reads, which may ask for
// more than the client sends (a buffer fill, the next request's header),
// take the mark back to 1 byte. A mark below the read's size stays: it
// is still within the request.
func (c *srvConn[Req, Resp]) expect(n int) {
	if c.lowatRC == nil {
		return
	}
	want := 1
	if n > readBufferSize && !c.trickle {
		want = min(n, maxLowat)
	}
	if want == c.lowat || want > 1 && c.lowat > 1 && c.lowat < want {
		return
	}
	if err := setLowat(c.lowatRC, want); err != nil {
		c.lowatRC = nil // reads go on without a mark
		return
	}
	c.lowat = want
}

// slowerThanMark is called when a read under a mark above 1 byte failed:
// if the failure is the frame deadline, and bytes the kernel held back
// below the mark would have moved that deadline (the client is slow but
// above MinFrameRate), it drops the mark for the rest of the request, sets
// the deadline those bytes earn, and reports true, for the read to be
// tried again. A client is so cut exactly when it would be without a mark.
func (c *srvConn[Req, Resp]) slowerThanMark(err error) bool {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return false
	}
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.stopping {
		return false
	}
	q := queued(c.lowatRC)
	if err := setLowat(c.lowatRC, 1); err != nil {
		return false
	}
	c.lowat, c.trickle = 1, true
	if q == 0 {
		return false
	}
	d := time.Now().Add(c.s.cfg.idleTimeout) // the request's first bytes: it has started
	if c.phase == 1 {
		d = c.deadlineAfter(c.frameBytes + int64(q))
	}
	if !time.Now().Before(d) {
		return false
	}
	_ = c.conn.SetReadDeadline(d)
	return true
}

// testHookServeStart, set by tests only, runs first in each connection's
// goroutine.
var testHookServeStart atomic.Pointer[func()]

// testHookServerRead, set by tests only, sees the size of each read of a
// Server's connection that got bytes.
var testHookServerRead atomic.Pointer[func(n int)]

// beginRequest starts the idle phase: the next request may take its time
// to start.
func (c *srvConn[Req, Resp]) beginRequest(buffered bool) {
	c.dmu.Lock()
	c.trickle = false
	if buffered {
		// The request's first bytes are already here: it is under way.
		if c.phase == 0 {
			c.phase = 1
			c.frameStart, c.frameBytes = time.Now(), 0
			if !c.stopping {
				_ = c.conn.SetReadDeadline(c.frameStart.Add(c.s.cfg.frameTimeout))
			}
		}
	} else {
		c.phase = 0
		c.idleFrom = time.Now()
	}
	c.dmu.Unlock()
}

// awaitIdle is called between requests with nothing buffered, on a
// connection whose reads the server can wait for (plain TCP on Unix). If
// the next request has not begun to arrive, it gives the read buffer back
// to the pool while the connection waits, under the idle timeout, so
// that a quiet connection (a client at rest, pinging) holds no buffer. A
// busy one, whose next request is already here, keeps it.
func (c *srvConn[Req, Resp]) awaitIdle(br *bufio.Reader) {
	if inputReady(c.rawRC) {
		return
	}
	c.expect(1) // readable means a byte, not a frame body's mark
	c.dmu.Lock()
	if !c.stopping {
		_ = c.conn.SetReadDeadline(c.idleFrom.Add(c.s.cfg.idleTimeout))
	}
	c.dmu.Unlock()
	// The codec holds br: its buffer moves out to the pool and back in,
	// and br stays the same Reader to the codec.
	parked := new(bufio.Reader)
	*parked = *br
	*br = bufio.Reader{}
	parked.Reset(nil)
	readers.Put(parked)
	// Whatever ends the wait (a byte, the idle timeout, Shutdown, Close),
	// the next read meets it and reports it.
	awaitInput(c.rawRC)
	fresh := readers.Get().(*bufio.Reader)
	fresh.Reset(c)
	*br = *fresh
}

func (c *srvConn[Req, Resp]) serve() {
	s := c.s
	defer func() {
		c.conn.Close()
		s.nconns.Add(-1)
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()

	if h := testHookServeStart.Load(); h != nil {
		(*h)()
	}
	hsDeadline := time.Now().Add(s.cfg.handshakeTimeout)
	c.dmu.Lock()
	if c.stopping {
		// Shutdown came before this goroutine ran: its deadline of now
		// must not be pushed back to the handshake's (Shutdown waited
		// the handshake timeout for such a connection).
		c.dmu.Unlock()
		return
	}
	_ = c.conn.SetDeadline(hsDeadline)
	c.dmu.Unlock()
	// No buffer (TLS's nor ours) for a client that has said nothing yet.
	// Whatever ended the wait (a byte, the deadline, Shutdown, Close), the
	// handshake's first read meets it and reports it.
	c.rawRC = awaitRC(c.raw)
	awaitInput(c.rawRC)
	if s.cfg.tls != nil {
		tc := tls.Server(c.conn, s.cfg.tls)
		if err := tc.Handshake(); err != nil {
			// A client that speaks without TLS: the codec may tell it so,
			// in its own protocol, as net/http answers HTTP on an HTTPS port.
			err = fmt.Errorf("%w: %w", ErrTLSHandshake, hsErr(err))
			var rh tls.RecordHeaderError
			if rf, ok := s.codec.(Refuser); ok && errors.As(err, &rh) && rh.Conn != nil {
				rf.Refuse(rh.Conn, fmt.Errorf("%w: %w", err, ErrTLSRequired))
			}
			s.connError(c.conn.RemoteAddr(), err)
			return
		}
		c.conn = tc
	}
	if s.cfg.tls == nil {
		// Not under TLS, whose reader holds bytes of its own beyond a
		// read's: the mark could then wait for bytes already taken.
		c.lowatRC, c.lowat = rcvLowat(c.raw), 1
	}
	c.handshaking = true
	br := readers.Get().(*bufio.Reader)
	br.Reset(c)
	defer func() {
		br.Reset(nil) // let the connection go
		readers.Put(br)
	}()
	state, err := s.codec.Accept(c.conn, br)
	if err != nil {
		s.connError(c.conn.RemoteAddr(), hsErr(err))
		return
	}
	c.dmu.Lock()
	c.handshaking = false // from now on, reads go through the phase deadlines
	if !c.stopping {
		_ = c.conn.SetDeadline(time.Time{})
	}
	c.dmu.Unlock()

	var wmu sync.Mutex
	var scratch []byte
	var writeErr error
	rb, err := batcher.New(func(resps []Resp) error {
		wmu.Lock()
		defer wmu.Unlock()
		if writeErr != nil {
			return writeErr
		}
		scratch = state.AppendResponses(scratch[:0], resps)
		_ = c.conn.SetWriteDeadline(time.Now().Add(s.cfg.writeTimeout))
		if _, err := c.conn.Write(scratch); err != nil {
			writeErr = fmt.Errorf("netlog: write responses: %w", err)
			c.conn.Close() // the reader stops too
			return writeErr
		}
		return nil
	}, batcher.WithBatchSize(respBatch), batcher.WithBuffers(2), batcher.WithWindow(0), batcher.WithCohort(false))
	if err != nil {
		s.connError(c.conn.RemoteAddr(), err)
		state.Close(err)
		return
	}

	c.imu.Lock()
	c.icond = sync.NewCond(&c.imu)
	c.imu.Unlock()
	// Replies leave from the reader goroutine, which writes them itself
	// (ShipHere) before it waits for more input or once the response
	// window has passed; the batcher has no timer of its own. Waking its
	// goroutine to time each group of replies and again to write it took
	// 16-21% of the collector's CPU per entry on a 2-core virtual machine,
	// where each thread wake-up is expensive. Replies that come
	// while the reader is not serving (from other goroutines, after
	// Serve returned) leave at once when nothing else is in flight, and
	// otherwise when this timer fires.
	late := time.AfterFunc(time.Hour, func() {
		c.imu.Lock()
		c.lateArmed = false
		c.imu.Unlock()
		rb.Ship()
	})
	late.Stop()
	reply := func(r Resp) {
		_ = rb.Add(r) // fails after Close only: the connection is gone anyway
		c.imu.Lock()
		c.inflight--
		alone := c.inflight == 0 && !c.serving
		arm := !c.serving && !alone && !c.lateArmed
		if arm {
			c.lateArmed = true
		}
		c.icond.Broadcast()
		c.imu.Unlock()
		switch {
		case alone:
			rb.Ship() // no other reply to wait for
		case arm:
			late.Reset(s.cfg.respWindow)
		}
	}
	var cause error
	stopped := false // by Shutdown
	shipped := time.Now()
	// Not under TLS, whose reader may hold bytes of the next request.
	parkable := canAwait && s.cfg.tls == nil
	for {
		buffered := br.Buffered() > 0
		// Nothing more to read now, or replies waited long enough while
		// requests kept coming: answer what we have. Checked before every
		// wait for input, after a ping too: replies given while a request
		// was served, with a ping behind it, stayed here for good before
		// (the client, waiting for them, only pinged).
		if !buffered || time.Since(shipped) >= s.cfg.respWindow {
			rb.ShipHere()
			shipped = time.Now()
		}
		c.beginRequest(buffered)
		if !buffered && parkable {
			c.awaitIdle(br)
		}
		req, err := state.ReadRequest()
		if errors.Is(err, ErrNoRequest) {
			continue // a ping: the connection is idle again
		}
		if err != nil {
			stopped = errors.Is(err, ErrServerClosed)
			if !errors.Is(err, io.EOF) && !stopped {
				cause = err
			}
			break
		}
		c.imu.Lock()
		c.inflight++
		c.serving = true
		c.imu.Unlock()
		state.Serve(req, reply)
		c.imu.Lock()
		c.serving = false
		c.imu.Unlock()
	}
	c.imu.Lock()
	for c.inflight > 0 && !c.abandoned {
		c.icond.Wait()
	}
	c.imu.Unlock()
	late.Stop()
	if err := rb.Close(); err != nil && cause == nil {
		cause = err
	}
	if cause != nil {
		s.connError(c.conn.RemoteAddr(), cause)
	}
	if f, ok := state.(Farewell); ok && stopped && cause == nil {
		c.imu.Lock()
		abandoned := c.abandoned
		c.imu.Unlock()
		if !abandoned {
			// A courtesy: a client whose socket takes no more bytes
			// now does not read, and does not hold up the Shutdown.
			_ = c.conn.SetWriteDeadline(time.Now().Add(min(s.cfg.writeTimeout, lingerTimeout)))
			_, _ = c.conn.Write(f.AppendFarewell(nil))
		}
	}
	state.Close(cause)
	c.lingerClose()
}

// lingerTimeout bounds how long a connection is drained after the server
// is done with it.
const lingerTimeout = time.Second

// lingerClose ends the connection without losing the last replies: closing
// a socket with unread bytes makes the kernel send a reset, and a reset can
// destroy replies the client has not read yet (an ack lost means a batch
// sent twice). So the server closes its write half, reads and discards
// until the client closes or a second passes, and only then closes.
func (c *srvConn[Req, Resp]) lingerClose() {
	c.imu.Lock()
	abandoned := c.abandoned
	c.imu.Unlock()
	cw, ok := c.conn.(interface{ CloseWrite() error })
	if abandoned || !ok || cw.CloseWrite() != nil {
		return
	}
	if c.lowat > 1 {
		_ = setLowat(c.lowatRC, 1)
	}
	_ = c.raw.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, c.raw, 64<<20)
}

func hsErr(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: %w", ErrHandshakeTimeout, err)
	}
	return err
}
