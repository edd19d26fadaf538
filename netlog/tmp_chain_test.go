package netlog

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestTmpChain(t *testing.T) {
	_, addr := startEcho(t, &echoServer{})
	c, err := NewClient[string, string](&echoClient{}, WithAddrs(addr), WithWindow(2, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	var follow func(n int) func(string, error)
	follow = func(n int) func(string, error) {
		return func(resp string, err error) {
			if n == 0 || err != nil {
				wg.Done()
				return
			}
			if err := c.Send(context.Background(), "again", 5, follow(n-1)); err != nil {
				t.Error(err)
				wg.Done()
			}
		}
	}
	for range 8 {
		wg.Add(1)
		if err := c.Send(context.Background(), "first", 5, follow(20)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("hung")
	}
}
