//go:build !unix

package netlog

import "net"

// awaitInput returns at once: the read buffer is taken at once.
func awaitInput(net.Conn) {}
