//go:build unix

package filelog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// socketPath is a path for a Unix socket short enough for sun_path.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "agent.sock")
}

// agent accepts one connection on a stream socket at path and sends what
// it reads, once n bytes came (then it closes, with its socket) or, with n
// 0, at EOF.
func agent(t *testing.T, path string, n int) <-chan []byte {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		defer ln.Close() // removes the socket
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		var b []byte
		if n > 0 {
			b = make([]byte, n)
			_, err = io.ReadFull(c, b)
		} else {
			b, err = io.ReadAll(c)
		}
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	return got
}

// TestStreamSocketAgentRestarts writes to a log agent's Unix stream socket.
// The agent leaves, with its socket, and comes back: the File fails the
// batch (EPIPE) and while the socket is missing (it makes no regular file
// in its place, which would keep the agent from binding again), then
// connects to the new socket and writes the batch there, once.
func TestStreamSocketAgentRestarts(t *testing.T) {
	p := socketPath(t)
	first, second := lines(100, 0), lines(100, 100)
	got := agent(t, p, len(first))
	f := mustOpen(t, p, WithMaxSize(10)) // no rotation on a socket
	if err := f.WriteBatch(first, 100); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, first) {
		t.Fatalf("the agent read %d bytes, want %d", len(b), len(first))
	}
	var err error
	for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline); {
		err = f.WriteBatch(second, 100) // may go into the socket buffer before the close is seen
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("writing after the agent left: %v, want EPIPE", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, serr := os.Stat(p); errors.Is(serr, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent's socket is still there")
		}
		time.Sleep(time.Millisecond)
	}
	if err := f.WriteBatch(second, 100); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("writing while the socket is missing: %v", err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("something was made at the socket's path: %v", err)
	}
	got = agent(t, p, 0) // the agent is back
	if err := f.WriteBatch(second, 100); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("Sync on a socket: %v", err)
	}
	if st := f.Stats(); st.Reopens != 1 || st.Rotations != 0 {
		t.Fatalf("stats %+v: want 1 reopen, no rotation", st)
	}
	f.Close()
	if b := <-got; !bytes.Equal(b, second) {
		t.Fatalf("the new agent read %q, want the second batch once", b)
	}
}

// TestDatagramSocketEntryPerDatagram writes to a datagram socket, such as
// syslog's /dev/log: each entry is one datagram.
func TestDatagramSocketEntryPerDatagram(t *testing.T) {
	p := socketPath(t)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f := mustOpen(t, p)
	want := lines(50, 0)
	got := make(chan []byte, 1)
	go func() { // reads as the entries come: a datagram socket queues a few only
		var b []byte
		buf := make([]byte, 1<<16)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for k := range 50 {
			n, err := c.Read(buf)
			if err != nil {
				t.Error(err)
				break
			}
			if !bytes.Equal(buf[:n], lines(1, k)) {
				t.Errorf("datagram %d = %q, want entry %d alone", k, buf[:n], k)
			}
			b = append(b, buf[:n]...)
		}
		got <- b
	}()
	if err := f.WriteBatch(want, 50); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want) || f.Stats().Writes != 50 {
		t.Fatalf("got %d bytes of %d, in %d writes", len(b), len(want), f.Stats().Writes)
	}
}

// makeFIFO makes a FIFO for the test, or skips it where there are none.
func makeFIFO(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skip("no FIFO:", err)
	}
	return p
}

// openFIFOReader opens the FIFO at p for reading, without waiting for a
// writer; reads then return EAGAIN while nothing is there.
func openFIFOReader(t *testing.T, p string) *os.File {
	t.Helper()
	r, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestFIFOReaderComesBack: a FIFO's reader leaves (EPIPE) and another one
// opens it; the File opens the FIFO again and writes on, and the new reader
// gets what the first left unread, then the batch that failed, once.
func TestFIFOReaderComesBack(t *testing.T) {
	p := makeFIFO(t)
	r := openFIFOReader(t, p)
	f := mustOpen(t, p)
	if err := f.WriteBatch(lines(10, 0), 10); err != nil {
		t.Fatal(err)
	}
	r.Close() // the reader leaves with what it did not read
	if err := f.WriteBatch(lines(10, 10), 10); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("writing with no reader: %v, want EPIPE", err)
	}
	if err := f.WriteBatch(lines(10, 10), 10); !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("writing again with no reader: %v, want ENXIO", err)
	}
	r = openFIFOReader(t, p)
	defer r.Close()
	if err := f.WriteBatch(lines(10, 10), 10); err != nil {
		t.Fatal(err)
	}
	// The pipe kept what the first reader left unread, for the next.
	buf := make([]byte, 4096)
	n, _ := r.Read(buf)
	if !bytes.Equal(buf[:n], lines(20, 0)) || f.Stats().Reopens != 1 {
		t.Fatalf("the new reader read %q; %d reopens", buf[:n], f.Stats().Reopens)
	}
}

// TestDatagramTooLongIsRefusedAlone: an entry longer than a datagram
// socket takes (EMSGSIZE) is dropped and reported, and the entries around
// it go; the batch succeeds. Failing it made the writer try the whole
// batch again, sending the entries before it once per try. The error
// handler, which calls the File, is called once the File's lock is
// released (it hung on the lock before).
func TestDatagramTooLongIsRefusedAlone(t *testing.T) {
	p := socketPath(t)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var reported []error
	var f *File
	f = mustOpen(t, p, WithErrorHandler(func(err error) {
		reported = append(reported, err)
		_ = f.Stats() // a handler may call the File: it waited for the lock its caller held
	}))
	long := append(bytes.Repeat([]byte("x"), 1<<20), '\n') // over the socket's send buffer
	batch := slices.Concat(lines(2, 0), long, lines(2, 2))
	if err := f.WriteBatch(batch, 5); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<16)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for k := range 4 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], lines(1, k)) {
			t.Fatalf("datagram %d = %.40q, want entry %d", k, buf[:n], k)
		}
	}
	if st := f.Stats(); st.Refused != 1 || len(reported) != 1 || !errors.Is(reported[0], ErrRecordRefused) || !errors.Is(reported[0], syscall.EMSGSIZE) {
		t.Fatalf("%d refused, reported %v; want 1 EMSGSIZE", st.Refused, reported)
	}
}

// TestRecordsGoOnAfterWhatTheDeviceTook: a FIFO's reader leaves while a
// batch is written one entry per write(), part way through it. The
// entries the FIFO took stay taken; when the batch is tried again (as
// the sink does) with a new reader, it goes on after them: each entry
// arrives once. Trying it whole wrote the first part twice.
func TestRecordsGoOnAfterWhatTheDeviceTook(t *testing.T) {
	p := makeFIFO(t)
	r := openFIFOReader(t, p)
	f := mustOpen(t, p, WithRecordPerWrite())
	const n = 400 // about 120 KiB: more than the pipe holds
	var batch []byte
	for i := range n {
		batch = fmt.Appendf(batch, "%04d %s\n", i, bytes.Repeat([]byte("y"), 300))
	}
	failed := make(chan error, 1)
	go func() { failed <- f.WriteBatch(batch, n) }()
	// Once the first entries are in the pipe the reader leaves, with the
	// bytes it read: the writer, which goes on filling the pipe, fails
	// with EPIPE part way through the batch.
	first := make([]byte, 1024)
	k := 0
	for deadline := time.Now().Add(10 * time.Second); k == 0 && time.Now().Before(deadline); {
		var err error
		if k, err = r.Read(first); err != nil {
			k = 0
			time.Sleep(time.Millisecond) // EAGAIN: nothing written yet
		}
	}
	if k == 0 {
		t.Fatal("nothing written to the FIFO")
	}
	r.Close()
	select {
	case err := <-failed:
		if !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("write with the reader gone: %v, want EPIPE", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write did not fail when the reader left")
	}
	r = openFIFOReader(t, p)
	defer r.Close()
	got := first[:k]
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 1<<16)
		for deadline := time.Now().Add(10 * time.Second); len(got) < len(batch) && time.Now().Before(deadline); {
			k, err := r.Read(buf)
			if err != nil {
				time.Sleep(time.Millisecond) // EAGAIN
				continue
			}
			got = append(got, buf[:k]...)
		}
	}()
	if err := f.WriteBatch(batch, n); err != nil {
		t.Fatal(err)
	}
	<-read
	if !bytes.Equal(got, batch) {
		t.Fatalf("the readers got %d bytes, want the batch's %d once: first entries %.20q", len(got), len(batch), got)
	}
}
