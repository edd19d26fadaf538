package netlog

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestServeWaitsOutTooManyOpenFiles: with the process out of file
// descriptors, accept fails (EMFILE) while a client waits in the listen
// queue; Serve waits that out, retrying, instead of returning, and takes
// the client once descriptors are free again. It lowers the process's
// open-file limit for its duration: no other test runs meanwhile.
func TestServeWaitsOutTooManyOpenFiles(t *testing.T) {
	srv, addr := startEcho(t, &echoServer{})
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Skip("no RLIMIT_NOFILE:", err)
	}
	top := highestFD(t)
	limit := old
	limit.Cur = uint64(top + 8)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &limit); err != nil {
		t.Skip("cannot lower RLIMIT_NOFILE:", err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	// Take every descriptor below the limit but one, which the client's
	// socket takes: the server's accept then has none.
	var fillers []*os.File
	defer func() {
		for _, f := range fillers {
			f.Close()
		}
	}()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break // EMFILE: full
		}
		fillers = append(fillers, f)
	}
	fillers[len(fillers)-1].Close()
	fillers = fillers[:len(fillers)-1]
	c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	answered := make(chan error, 1)
	go func() {
		done := make(chan error, 1)
		err := c.Send(context.Background(), "ping", 4, func(resp string, err error) {
			if err == nil && resp != reverse("ping") {
				err = fmt.Errorf("answer %q, want %q", resp, reverse("ping"))
			}
			done <- err
		})
		if err != nil {
			answered <- err
			return
		}
		answered <- <-done
	}()
	// The client connects (the kernel completes the handshake into the
	// listen queue); accept fails meanwhile, and Serve must not return.
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if srv.Conns() != 0 {
			t.Fatal("a connection was accepted with no descriptor free")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, f := range fillers {
		f.Close()
	}
	fillers = nil
	restore()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("after descriptors came back: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the client was never served once descriptors came back")
	}
}

// highestFD returns the highest file descriptor open in the process.
func highestFD(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	top := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > top {
			top = n
		}
	}
	return top
}
