package netlog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snail-log/snail/internal/testnet"
)

// TestReporter: errors reach the handler in order from its own goroutine;
// the reporter does not wait for a handler that blocks, keeps at most
// maxQueuedReports and counts the rest into one error; close waits for
// the handler to have them all, and a report after close is made at once.
func TestReporter(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	r := newReporter(func(err error) {
		<-release
		mu.Lock()
		got = append(got, err.Error())
		mu.Unlock()
	})
	const n = maxQueuedReports + 10
	for i := range n { // would hang here if report called the handler
		r.report(fmt.Errorf("error %d", i))
	}
	close(release)
	r.close()
	mu.Lock()
	defer mu.Unlock()
	// One error is in the handler (taken whenever its goroutine first
	// ran) while the next 64 queue; the rest are counted into the last
	// report. Those reported one by one are in order, from the first.
	if len(got) != maxQueuedReports+1 && len(got) != maxQueuedReports+2 {
		t.Fatalf("%d errors reported, want %d or %d: %q", len(got), maxQueuedReports+1, maxQueuedReports+2, got)
	}
	prev := -1
	for i, e := range got[:len(got)-1] {
		var k int
		if _, err := fmt.Sscanf(e, "error %d", &k); err != nil || k <= prev || (i == 0 && k != 0) {
			t.Fatalf("report %d is %q after error %d: out of order", i, e, prev)
		}
		prev = k
	}
	last := got[len(got)-1]
	skipped := n - (len(got) - 1)
	if want := fmt.Sprintf("%d more errors", skipped); !strings.Contains(last, want) {
		t.Errorf("last report %q, want it to say %q", last, want)
	}
	after := errors.New("after close")
	called := false
	r2 := newReporter(func(err error) { called = errors.Is(err, after) })
	r2.close()
	r2.report(after)
	if !called {
		t.Error("a report after close did not reach the handler")
	}
}

// TestDefaultErrorHandlerPrints: without WithErrorHandler a Stream's
// errors go to standard error as they happen (a collector that is down
// shows at once, not only when the window is full and Write fails), and
// WithErrorHandler(nil) discards them.
func TestDefaultErrorHandlerPrints(t *testing.T) {
	addr := testnet.RefusedAddr(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	defer func() { os.Stderr = stderr }()
	for _, discard := range []bool{true, false} {
		opts := []ClientOption{WithReportAfter(20 * time.Millisecond), WithBackoff(5*time.Millisecond, 10*time.Millisecond), WithDrainTimeout(10 * time.Millisecond)}
		if discard {
			opts = append(opts, WithErrorHandler(nil))
		}
		s, err := Dial(addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		// Sync fails once the report delay has passed, and the report is
		// made then; Close waits for the handler to have it.
		if err := s.WriteBatch([]byte("x\n"), 1); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Sync with nobody listening: %v, want ErrUnavailable", err)
		}
		s.Close() // gives the batch up: an error, not this test's

	}
	os.Stderr = stderr
	w.Close()
	out, _ := io.ReadAll(r)
	if n := strings.Count(string(out), "peer unavailable"); n != 1 {
		t.Fatalf("standard error had %d reports of the collector down, want 1 (from the Stream without a handler):\n%s", n, out)
	}
}

// TestCloseFromErrorHandler: a handler that closes the Stream on an error
// (an application that gives up on the collector) does not hang: Close
// does not wait for the handler's own goroutine, which ends after it.
func TestCloseFromErrorHandler(t *testing.T) {
	addr := testnet.RefusedAddr(t)
	var s *Stream
	var once sync.Once
	closed := make(chan error, 1)
	ready := make(chan struct{})
	s, err := Dial(addr, WithReportAfter(20*time.Millisecond), WithBackoff(5*time.Millisecond, 10*time.Millisecond),
		WithDrainTimeout(100*time.Millisecond), WithErrorHandler(func(error) {
			<-ready
			once.Do(func() { closed <- s.Close() })
		}))
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	var first error
	select {
	case first = <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close from the error handler hung")
	}
	if err := s.Close(); fmt.Sprint(err) != fmt.Sprint(first) {
		t.Errorf("Close from the handler returned %v, a later Close %v; want the same", first, err)
	}
	// The handler's goroutine ends once it returns.
	select {
	case <-s.cfg.rep.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's goroutine did not end")
	}
}
