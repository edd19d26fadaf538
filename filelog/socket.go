package filelog

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// socketDialTimeout bounds a connection to a socket whose listener is too
// busy to take it (its backlog full): the batch fails, and the sink tries
// again later, rather than Open or a batch waiting without end.
const socketDialTimeout = 5 * time.Second

// dialSocket connects to the Unix domain socket at path, the way a log
// agent takes entries (rsyslog's and systemd-journald's datagram sockets,
// Fluent Bit's and Vector's stream ones): as a stream, or with one datagram
// per write for a datagram socket (dgram).
func dialSocket(path string) (f *os.File, dgram bool, err error) {
	c, err := net.DialTimeout("unix", path, socketDialTimeout)
	if errors.Is(err, syscall.EPROTOTYPE) {
		dgram = true
		c, err = net.DialTimeout("unixgram", path, socketDialTimeout)
	}
	if err != nil {
		return nil, false, fmt.Errorf("filelog: %w", err) // names the path
	}
	defer c.Close()
	fc, ok := c.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, false, fmt.Errorf("filelog: socket %s: no file descriptor", path)
	}
	if f, err = fc.File(); err != nil { // a duplicate, which outlives c
		return nil, false, fmt.Errorf("filelog: socket %s: %w", path, err)
	}
	return f, dgram, nil
}

// peerGone reports whether a device's write failed because its reader
// left: a FIFO without a reader (EPIPE), a socket whose peer closed or
// went away. Opening the path again finds the next one.
func peerGone(err error) bool {
	for _, e := range []error{syscall.EPIPE, syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ENOTCONN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
