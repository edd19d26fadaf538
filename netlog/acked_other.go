//go:build !linux

package netlog

import "net"

// ackedBytes cannot say here: a write's timeout is stretched by its size
// instead (WithMinWriteRate).
func ackedBytes(net.Conn) (uint64, bool) { return 0, false }
