package netlog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pacedEcho is a client of the echo server that paces its bytes itself.
type pacedEcho struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialRawEcho(t *testing.T, addr string) *pacedEcho {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e := &pacedEcho{t: t, conn: conn, br: bufio.NewReader(conn)}
	if _, err := conn.Write([]byte("ECHO")); err != nil {
		t.Fatal(err)
	}
	var ok [2]byte
	if _, err := io.ReadFull(e.br, ok[:]); err != nil || string(ok[:]) != "OK" {
		t.Fatalf("handshake: %q %v", ok, err)
	}
	return e
}

// send writes request id with body in pieces of piece bytes, every gap.
func (e *pacedEcho) send(id uint64, body []byte, piece int, gap time.Duration) error {
	msg := binary.LittleEndian.AppendUint64(nil, id)
	msg = binary.LittleEndian.AppendUint32(msg, uint32(len(body)))
	msg = append(msg, body...)
	for len(msg) > 0 {
		k := min(piece, len(msg))
		if _, err := e.conn.Write(msg[:k]); err != nil {
			return err
		}
		msg = msg[k:]
		if len(msg) > 0 {
			time.Sleep(gap)
		}
	}
	return nil
}

// answer reads the answer to id and checks it.
func (e *pacedEcho) answer(id uint64, body []byte) error {
	var h [20]byte
	_ = e.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(e.br, h[:]); err != nil {
		return err
	}
	got := make([]byte, binary.LittleEndian.Uint32(h[16:]))
	if _, err := io.ReadFull(e.br, got); err != nil {
		return err
	}
	if first := binary.LittleEndian.Uint64(h[:]); first != id || !bytes.Equal(got, []byte(reverse(string(body)))) {
		return errors.New("wrong answer")
	}
	return nil
}

// connErrors collects a Server's connection errors.
type connErrors struct {
	mu   sync.Mutex
	errs []error
}

func (c *connErrors) add(_ net.Addr, err error) {
	c.mu.Lock()
	c.errs = append(c.errs, err)
	c.mu.Unlock()
}

func (c *connErrors) get() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}

func countServerReads(t *testing.T) *atomic.Int64 {
	var reads atomic.Int64
	hook := func(int) { reads.Add(1) }
	testHookServerRead.Store(&hook)
	t.Cleanup(func() { testHookServerRead.Store(nil) })
	return &reads
}

// A large request is read in a few large reads, not one per piece that
// arrives: the server waits for the bytes the codec asked for (a receive
// low-water mark, on Linux). After it, a request smaller than the mark
// is still read at once (the mark is lowered again before the next
// request's header), or this test would wait for the idle timeout.
func TestLargeRequestFewReads(t *testing.T) {
	var errs connErrors
	_, addr := startEcho(t, &echoServer{}, WithIdleTimeout(5*time.Second), WithConnErrorHandler(errs.add))
	e := dialRawEcho(t, addr)
	reads := countServerReads(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for id := uint64(1); id <= 3; id++ {
		reads.Store(0)
		if err := e.send(id, body, 32<<10, 500*time.Microsecond); err != nil {
			t.Fatal(err)
		}
		if err := e.answer(id, body); err != nil {
			t.Fatal(err)
		}
		n := reads.Load()
		t.Logf("1 MiB request in 32 pieces: %d reads", n)
		if runtime.GOOS == "linux" && n > 8 {
			t.Errorf("1 MiB request in 32 pieces took %d reads, want at most 8", n)
		}
		small := []byte("small")
		start := time.Now()
		if err := e.send(100+id, small, 64, 0); err != nil {
			t.Fatal(err)
		}
		if err := e.answer(100+id, small); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("small request after a large one answered after %v", took)
		}
	}
	if got := errs.get(); len(got) != 0 {
		t.Fatalf("connection errors: %v", got)
	}
}

// A request that comes slowly but above MinFrameRate is not cut, though
// the server's mark holds back the bytes that earn it more time: at its
// deadline the server counts the bytes held back. One below the rate is
// cut when it would be without the mark.
func TestSlowRequestUnderTheMark(t *testing.T) {
	const timeout, rate = 200 * time.Millisecond, 256 << 10
	body := bytes.Repeat([]byte("x"), 1<<20)
	t.Run("above the rate", func(t *testing.T) {
		var errs connErrors
		_, addr := startEcho(t, &echoServer{}, WithFrameTimeout(timeout), WithMinFrameRate(rate), WithConnErrorHandler(errs.add))
		e := dialRawEcho(t, addr)
		// 1 MiB at 1 MiB/s: a mark of 512 KiB hides half a second of it,
		// past the deadline its first 32 KiB earn (0.33 s).
		if err := e.send(1, body, 16<<10, 15*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := e.answer(1, body); err != nil {
			t.Fatal(err, errs.get())
		}
		if got := errs.get(); len(got) != 0 {
			t.Fatalf("connection errors: %v", got)
		}
	})
	t.Run("below the rate", func(t *testing.T) {
		var errs connErrors
		_, addr := startEcho(t, &echoServer{}, WithFrameTimeout(timeout), WithMinFrameRate(rate), WithConnErrorHandler(errs.add))
		e := dialRawEcho(t, addr)
		// 64 KiB/s: cut once 200 ms plus its bytes at 256 KiB/s have
		// passed, about 0.27 s in.
		start := time.Now()
		_ = e.send(1, body[:256<<10], 4<<10, 62*time.Millisecond)
		took := time.Since(start)
		var got []error
		for deadline := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
			got = errs.get()
		}
		if len(got) != 1 || !errors.Is(got[0], ErrFrameTimeout) {
			t.Fatalf("connection errors %v after %v, want one ErrFrameTimeout", got, took)
		}
		if err := e.answer(1, body[:256<<10]); err == nil {
			t.Fatal("answered a request cut for its rate")
		}
	})
}
