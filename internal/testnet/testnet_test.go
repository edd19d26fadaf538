package testnet

import (
	"errors"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The address refuses connections, and no listener can take its port
// while the test runs.
func TestRefusedAddr(t *testing.T) {
	addr := RefusedAddr(t)
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			t.Fatalf("%s accepted a connection", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: %v, want connection refused", addr, err)
		}
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("a listener took %s", addr)
	}
}

// The reserved address refuses connections until Listen takes it.
func TestReserve(t *testing.T) {
	addr := Reserve(t)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("%s accepted a connection before Listen", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("a listener took the reserved %s", addr)
	}
	l := Listen(t, addr)
	defer l.Close()
	if l.Addr().String() != addr {
		t.Fatalf("listening on %s, want %s", l.Addr(), addr)
	}
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s after Listen: %v", addr, err)
	}
	c.Close()
}

// A client that dials the reserved address every millisecond meanwhile
// (a collector's client, retrying) does not keep Listen from taking it.
func TestReserveWhileDialed(t *testing.T) {
	for range 100 {
		addr := Reserve(t)
		stop, done := make(chan struct{}), make(chan struct{})
		var dials atomic.Int32
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, err := net.Dial("tcp", addr); err == nil {
					c.Close()
				}
				dials.Add(1)
				time.Sleep(time.Millisecond) // a client's retry pace
			}
		}()
		for dials.Load() < 3 { // refused a few times before Listen
			runtime.Gosched()
		}
		l := Listen(t, addr)
		close(stop)
		<-done
		l.Close()
	}
}
