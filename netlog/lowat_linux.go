package netlog

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// rcvLowat returns the raw connection of conn for setLowat and queued, or
// nil where the mark cannot be set: a connection other than TCP.
func rcvLowat(conn net.Conn) syscall.RawConn {
	if _, ok := conn.(*net.TCPConn); !ok {
		return nil
	}
	return awaitRC(conn)
}

// setLowat sets the socket's receive low-water mark (SO_RCVLOWAT): the
// kernel reports it readable once n bytes are queued, or at the end of
// the stream, or when its receive buffer runs short. The kernel bounds n
// by half its largest receive buffer (tcp_rmem).
func setLowat(rc syscall.RawConn, n int) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, n)
	}); cerr != nil {
		return cerr
	}
	return err
}

// queued returns the bytes the socket holds that have not been read
// (SIOCINQ).
func queued(rc syscall.RawConn) int {
	var n int
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	}); cerr != nil || err != nil {
		return 0
	}
	return n
}
