package netlog

import (
	"net"

	"golang.org/x/sys/unix"
)

// ackedBytes returns how many bytes the peer's TCP has acknowledged on
// conn (TCP_INFO's bytes_acked), to tell a peer that reads slowly from
// one that stopped while a large write waits; ok is false where it cannot
// say.
func ackedBytes(conn net.Conn) (n uint64, ok bool) {
	tc, isTCP := conn.(*net.TCPConn)
	if !isTCP {
		return 0, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	cerr := rc.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if cerr != nil || err != nil {
		return 0, false
	}
	return info.Bytes_acked, true
}
