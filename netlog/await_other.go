//go:build !unix

package netlog

import (
	"net"
	"syscall"
)

// canAwait is false: connections keep their read buffer while idle.
const canAwait = false

// awaitRC returns nil: the server does not look at sockets here.
func awaitRC(net.Conn) syscall.RawConn { return nil }

// awaitInput returns at once: the read buffer is taken at once.
func awaitInput(syscall.RawConn) {}

// inputReady reports true: the server reads as it would.
func inputReady(syscall.RawConn) bool { return true }
