// Package testnet gives tests loopback addresses with a known behaviour.
// It is for tests only.
package testnet

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
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
	addr, _ := hold(tb, nil)
	return addr
}

// Reserve returns a loopback address that refuses connections, as
// RefusedAddr's does, until Listen is called with it; Listen then frees the
// port and listens on it at once: for a test whose server comes up later at
// an address its clients were given before. The window in which another
// listener could take the port is that of one close and one listen,
// instead of the whole time the server is away.
//
// The address is on 127.0.0.2 (where the system has it, as Linux does):
// a client that dials it meanwhile, from 127.0.0.1, cannot be given the
// port itself as its own end. On one address, a client retrying every
// millisecond was seen connected to itself (the kernel chose the port it
// dialed as its source port); Go's dialer notices and closes such a
// connection, which leaves the port in TIME_WAIT for a minute, where no
// listener can take it.
func Reserve(tb testing.TB) string {
	tb.Helper()
	addr, release := hold(tb, reserveIP)
	listen := func() net.Listener {
		tb.Helper()
		release()
		var err error
		for range 100 {
			var l net.Listener
			if l, err = net.Listen("tcp", addr); err == nil {
				return l
			}
			time.Sleep(5 * time.Millisecond)
		}
		tb.Fatalf("testnet: listen on the reserved %s: %v", addr, err)
		return nil
	}
	reserved.Store(addr, listen)
	tb.Cleanup(func() { reserved.Delete(addr) })
	return addr
}

// reserveIP is 127.0.0.2 where a socket can be bound to it, else 127.0.0.1.
var reserveIP = func() net.IP {
	ip := net.IPv4(127, 0, 0, 2)
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip})
	if err != nil {
		return net.IPv4(127, 0, 0, 1)
	}
	l.Close()
	return ip
}()

// reserved maps the addresses Reserve gave out to their listen functions,
// for Listen.
var reserved sync.Map

// Listen listens on addr: an address Reserve gave out is taken from its
// reservation (once), any other is listened on as net.Listen does.
func Listen(tb testing.TB, addr string) net.Listener {
	tb.Helper()
	if listen, ok := reserved.LoadAndDelete(addr); ok {
		return listen.(func() net.Listener)()
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// hold makes a connection on loopback from ip (127.0.0.1 if nil) and
// returns its local address, which refuses connections while the
// connection is held: until release, or the end of the test. Once released
// the port is free at once: the connection is reset, not closed, so that
// its end does not linger in TIME_WAIT.
func hold(tb testing.TB, ip net.IP) (addr string, release func()) {
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
	d := net.Dialer{}
	if ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		l.Close()
		<-accepted
		tb.Fatal(err)
	}
	peer := <-accepted
	var once sync.Once
	release = func() {
		once.Do(func() {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			if peer != nil {
				peer.Close()
			}
		})
	}
	tb.Cleanup(release)
	addr = c.LocalAddr().String()
	if probe, err := net.Dial("tcp", addr); err == nil {
		probe.Close()
		tb.Fatalf("testnet: %s accepted a connection, want it refused", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		tb.Logf("testnet: a connection to %s failed with %v, want it refused", addr, err)
	}
	return addr, release
}
