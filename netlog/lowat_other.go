//go:build !linux

package netlog

import (
	"errors"
	"net"
	"syscall"
)

// rcvLowat returns nil: the receive low-water mark is used on Linux only,
// where its effect on readiness (epoll) is documented.
func rcvLowat(net.Conn) syscall.RawConn { return nil }

func setLowat(syscall.RawConn, int) error { return errors.ErrUnsupported }

func queued(syscall.RawConn) int { return 0 }
