//go:build linux

package filelog

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// maxIov is the most pieces one writev() takes (IOV_MAX on Linux).
const maxIov = 1024

// writev writes pieces to f in order with as few writev() calls as the
// kernel allows: one, unless it writes short, is interrupted (EINTR), or
// there are more than maxIov pieces. It returns the bytes written and the
// calls made. scratch is reused for the vector; pieces are not modified.
func writev(f *os.File, pieces [][]byte, scratch *[][]byte) (n, calls int, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	iov := append((*scratch)[:0], pieces...)
	*scratch = iov[:0]
	rerr := rc.Write(func(fd uintptr) bool {
		for len(iov) > 0 {
			m, e := unix.Writev(int(fd), iov[:min(len(iov), maxIov)])
			calls++
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return false // not ready: the poller waits, then calls again
			case e != nil:
				err = e
				return true
			case m <= 0:
				err = io.ErrShortWrite
				return true
			}
			n += m
			iov = advance(iov, m)
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	return n, calls, err
}

// advance drops the first m bytes of the vector iov.
func advance(iov [][]byte, m int) [][]byte {
	for len(iov) > 0 && m >= len(iov[0]) {
		m -= len(iov[0])
		iov = iov[1:]
	}
	if m > 0 {
		iov[0] = iov[0][m:]
	}
	return iov
}
