//go:build !unix

package netlog

import "net"

// canAwait is false: connections keep their read buffer while idle.
const canAwait = false

// awaitInput returns at once: the read buffer is taken at once.
func awaitInput(net.Conn) {}

// inputReady reports true: the server reads as it would.
func inputReady(net.Conn) bool { return true }
