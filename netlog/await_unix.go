//go:build unix

package netlog

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// canAwait: awaitInput and inputReady work here.
const canAwait = true

// awaitRC returns conn's raw connection for inputReady and awaitInput, or
// nil where they cannot look at it (not a socket). A connection takes it
// once: each SyscallConn call allocates.
func awaitRC(conn net.Conn) syscall.RawConn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// inputReady reports whether rc has a byte to read (or its end, or an
// error) now, without reading or waiting; true for a nil rc.
func inputReady(rc syscall.RawConn) bool {
	if rc == nil {
		return true
	}
	ready := true
	var b [1]byte
	_ = rc.Control(func(fd uintptr) { ready = peek(fd, b[:]) })
	return ready
}

// peek reports whether a non-blocking peek at fd finds a byte, the end of
// the stream or an error: anything but "nothing yet".
func peek(fd uintptr, b []byte) bool {
	for {
		_, _, err := unix.Recvfrom(int(fd), b, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		return true
	}
}

// awaitInput returns once rc has a byte to read, has reached its end or
// has failed, or its read deadline has passed, without reading anything.
// The server waits so before it gives a new connection its read buffer,
// so that connections that never say anything (slowloris, port scanners,
// a pool of idle connections) hold no buffer. With a nil rc (not a
// socket) it returns at once and the buffer is taken at once.
func awaitInput(rc syscall.RawConn) {
	if rc == nil {
		return
	}
	var b [1]byte
	// Peek before waiting: the runtime's poller forgets a readiness it saw
	// before this wait began, and would sleep on bytes already here.
	_ = rc.Read(func(fd uintptr) bool { return peek(fd, b[:]) }) // false: wait until readable, the deadline or Close
}
