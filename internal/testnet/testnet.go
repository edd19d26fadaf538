// Package testnet gives tests loopback addresses with a known behaviour.
// It is for tests only.
package testnet

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// RefusedAddr returns a loopback address that refuses connections for the
// rest of the test, and that nothing else on the machine can listen on
// meanwhile.
//
// The usual way, listening on port 0 and closing the listener, frees the
// port for anyone: on a busy machine (test binaries run side by side) a
// later listener can be given it, and a client that was to find nothing
// there talks to that listener instead. One that welcomed the client and
// then acked nothing held a drain of 10 minutes, in a loaded run. Here the
// port is the local end of a connection held open until the test ends: a
// connection's port cannot be bound by another socket (it did not ask for
// SO_REUSEADDR), and with no listener on it a connection attempt is refused.
func RefusedAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept() // nil on an error
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		l.Close()
		<-accepted
		tb.Fatal(err)
	}
	peer := <-accepted
	tb.Cleanup(func() {
		c.Close()
		if peer != nil {
			peer.Close()
		}
	})
	addr := c.LocalAddr().String()
	if probe, err := net.Dial("tcp", addr); err == nil {
		probe.Close()
		tb.Fatalf("testnet: %s accepted a connection, want it refused", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		tb.Logf("testnet: a connection to %s failed with %v, want it refused", addr, err)
	}
	return addr
}
