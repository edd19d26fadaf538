package netlog

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/snail-log/snail/internal/testfd"
)

// TestServeWaitsOutTooManyOpenFiles: with the process out of file
// descriptors, accept fails (EMFILE) while a client waits in the listen
// queue; Serve waits that out, retrying, instead of returning, and takes
// the client once descriptors are free again. It lowers the process's
// open-file limit for its duration: no other test runs meanwhile.
func TestServeWaitsOutTooManyOpenFiles(t *testing.T) {
	srv, addr := startEcho(t, &echoServer{})
	// Every descriptor taken but one, which the client's socket takes:
	// the server's accept then has none.
	release := testfd.Exhaust(t, 1)
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
	release()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("after descriptors came back: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the client was never served once descriptors came back")
	}
}
