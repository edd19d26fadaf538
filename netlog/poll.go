package netlog

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ResponseParser is implemented by a ClientCodec whose responses can be read
// out of bytes already received. With it, on a plain TCP connection, the
// Client reads responses into a buffer of its own, and Poll can take the
// ones that have arrived from the caller's goroutine.
//
// Why: the connection's reader goroutine is woken by the runtime's network
// poller, which a processor consults only when it runs out of work or, with
// every processor busy, about every 10 ms. With loggers keeping both cores
// of a small machine busy, acks often waited 2-16 ms for that goroutine,
// the window filled, and writers stalled. A sender that polls once per
// request takes them at once.
type ResponseParser[Resp any] interface {
	// ParseResponse parses the response at the start of b and returns its
	// length in bytes, or 0 if b holds only part of it. An error ends the
	// connection, as ReadResponse's does, and so does a response longer
	// than 64 KiB. resp must not refer to b.
	ParseResponse(b []byte) (n int, first, last uint64, resp Resp, err error)
}

// respBufSize bounds the bytes of one connection's responses held at once:
// a response must fit.
const respBufSize = 64 << 10

// respBuf holds the bytes read from one connection and not yet parsed. Its
// mutex is held while reading from the connection, so that the reader
// goroutine and Poll never read at the same time, and while answering, so
// that responses are answered in the order they came.
type respBuf[Resp any] struct {
	mu     sync.Mutex
	conn   net.Conn
	rc     syscall.RawConn
	gen    uint64
	parser ResponseParser[Resp]
	buf    []byte
	err    error // the error that ends the connection, once seen
}

// newRespBuf returns a respBuf for conn if the codec can parse responses
// from bytes and conn is a socket the Client can read without waiting, and
// nil otherwise (TLS, other net.Conns: the reader goroutine reads alone).
func newRespBuf[Req, Resp any](codec ClientCodec[Req, Resp], conn net.Conn, gen uint64) *respBuf[Resp] {
	p, ok := codec.(ResponseParser[Resp])
	if !ok {
		return nil
	}
	sc, ok := conn.(syscall.Conn)
	if !ok || !canReadFD {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &respBuf[Resp]{conn: conn, rc: rc, gen: gen, parser: p, buf: make([]byte, 0, respBufSize)}
}

// readLocked reads what has arrived, without waiting (the socket is in
// non-blocking mode, as Go keeps them). It reports whether it got bytes,
// and the error that ends the connection.
func (s *respBuf[Resp]) readLocked(fd uintptr) (bool, error) {
	for {
		if len(s.buf) == cap(s.buf) {
			return false, fmt.Errorf("%w: response larger than %d bytes", ErrProtocol, cap(s.buf))
		}
		n, err := readFD(fd, s.buf[len(s.buf):cap(s.buf)])
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return false, nil
		case err != nil:
			return false, os.NewSyscallError("read", err)
		case n == 0:
			return false, io.EOF
		}
		s.buf = s.buf[:len(s.buf)+n]
		return true, nil
	}
}

// parseLocked answers every whole response in s.buf and keeps the rest. It
// reports whether it answered any.
func (c *Client[Req, Resp]) parseLocked(s *respBuf[Resp]) bool {
	off, any := 0, false
	for off < len(s.buf) {
		n, first, last, resp, err := s.parser.ParseResponse(s.buf[off:])
		if err != nil {
			s.err = err
			break
		}
		if n <= 0 || n > len(s.buf)-off {
			break // the rest has not arrived
		}
		if err := c.checkAnswer(first, last); err != nil {
			s.err = err
			break
		}
		off += n
		c.final(s.gen, resp)
		c.answer(first, last, resp, nil)
		any = true
	}
	s.buf = s.buf[:copy(s.buf, s.buf[off:])]
	if any {
		c.rearm(s.conn)
	}
	return any
}

// takeLocked reads what has arrived on s's connection and answers it. It
// reports whether it got bytes and whether it answered a response.
func (c *Client[Req, Resp]) takeLocked(s *respBuf[Resp], fd uintptr) (got, answered bool) {
	got, err := s.readLocked(fd)
	if got {
		answered = c.parseLocked(s)
	}
	if err != nil && s.err == nil {
		s.err = err
	}
	return got, answered
}

// pollLoop is readLoop for a connection with a respBuf: it waits until the
// socket is readable, then reads and answers under the buffer's mutex.
func (c *Client[Req, Resp]) pollLoop(s *respBuf[Resp]) {
	defer c.wg.Done()
	for {
		err := s.rc.Read(func(fd uintptr) bool {
			if h := testHookPollLoop.Load(); h != nil {
				(*h)()
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.err != nil {
				return true
			}
			// Without bytes, wait for the socket to become readable: any
			// that arrive after this read's EAGAIN wake the wait, even if
			// they arrived before it began.
			got, _ := c.takeLocked(s, fd)
			return got || s.err != nil
		})
		if err == nil {
			s.mu.Lock()
			err = s.err
			s.mu.Unlock()
		}
		if err != nil {
			c.broken(s.gen, readErr(err, c.cfg.ackTimeout))
			return
		}
	}
}

// testHookPollLoop, set by tests only, runs in pollLoop each time it is about
// to read: a test that blocks it leaves the reading to Poll.
var testHookPollLoop atomic.Pointer[func()]

// Poll reads the responses that have arrived on the connection and runs
// their callbacks in the calling goroutine, without waiting for anything.
// It reports whether it answered any. A sender calls it after Send so that
// responses do not wait for the reader goroutine to be scheduled (see
// ResponseParser); the caller must hold nothing the callbacks take. It does
// nothing if the codec is not a ResponseParser, over TLS, or while another
// goroutine is reading.
func (c *Client[Req, Resp]) Poll() bool {
	c.mu.Lock()
	s := c.src
	c.mu.Unlock()
	if s == nil || !s.mu.TryLock() {
		return false
	}
	if s.err != nil {
		s.mu.Unlock()
		return false
	}
	var answered bool
	cerr := s.rc.Control(func(fd uintptr) { _, answered = c.takeLocked(s, fd) })
	err := s.err
	s.mu.Unlock()
	// Closing the connection waits for the reader goroutine to leave its
	// read, which needs the mutex: broken only after Unlock.
	if cerr == nil && err != nil {
		c.broken(s.gen, err)
	}
	return answered
}

// rearm sets conn's read deadline after responses came: ackTimeout for the
// requests still pending, none if there are none.
func (c *Client[Req, Resp]) rearm(conn net.Conn) {
	c.mu.Lock()
	if c.conn == conn {
		if len(c.pending) == 0 {
			_ = conn.SetReadDeadline(time.Time{}) // nothing to wait for
		} else {
			_ = conn.SetReadDeadline(time.Now().Add(c.cfg.ackTimeout))
		}
	}
	c.mu.Unlock()
}

// readErr says what a read timeout means: no answer in time. It leaves out
// the connection's addresses, whose local port changes on every attempt,
// so that a peer that keeps not answering is reported with one message.
func readErr(err error, ackTimeout time.Duration) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no answer for %v (the peer holds the requests unanswered): %w", ackTimeout, os.ErrDeadlineExceeded)
	}
	return err
}
