package collector

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/snail-log/snail/internal/testfd"
	"github.com/snail-log/snail/netlog"
)

// TestIdleOutputsGiveWayAtTheFileLimit: at the open-file limit, a stream
// that connects is not turned away while outputs no connection uses hold
// descriptors (two each, for up to outputIdle): they are closed at once
// and the stream's output opens. Without that, every new stream was
// refused until they aged out, and the descriptors each refusal freed
// went to the next connection, which failed the same way. The test lowers
// the process's open-file limit: no other test runs meanwhile.
func TestIdleOutputsGiveWayAtTheFileLimit(t *testing.T) {
	dir := t.TempDir()
	c, addr := start(t, Config{Dir: dir})
	const idle = 20
	for i := range idle {
		s, err := netlog.Dial(addr, netlog.WithStreamName("idle"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, s, 10, 10)
	}
	open := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.outputs)
	}
	if n := open(); n != idle {
		t.Fatalf("%d outputs open, want the %d idle ones", n, idle)
	}
	waitFor(t, func() bool { // the collector has seen every connection end
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, o := range c.outputs {
			if o.refs > 0 {
				return false
			}
		}
		return true
	})

	// Every descriptor taken but 3: the client's socket, the collector's
	// end of it, and one of the several a new output needs.
	release := testfd.Exhaust(t, 3)

	s, err := netlog.Dial(addr, netlog.WithStreamName("new"), netlog.WithErrorHandler(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	send(t, s, 0, 100, 10)
	synced := make(chan error, 1)
	go func() { synced <- s.Sync() }()
	select {
	case err := <-synced:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second): // the idle outputs age out after outputIdle (30 s)
		t.Fatalf("the new stream was not written within 10 s at the open-file limit (%d outputs open)", open())
	}
	if n := open(); n != 1 {
		t.Errorf("%d outputs open, want the new stream's alone", n)
	}
	release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkIDs(t, filepath.Join(dir, "new.log"), 100)
	for i := range idle {
		checkIDs(t, filepath.Join(dir, "idle"+strconv.Itoa(i)+".log"), 10)
	}
}
