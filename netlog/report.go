package netlog

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/snail-log/snail/internal/goid"
)

// maxQueuedReports bounds the errors that wait while the error handler is
// busy; later ones are counted and reported as one.
const maxQueuedReports = 64

// reporter calls the error handler (WithErrorHandler) from a goroutine of
// its own, one error at a time, in order. Called from the goroutine that
// met the error, a handler that blocked stopped the client: one that
// logged the error through a sink.Writer over this very client waited for
// room in the Writer's buffers, which only the client's reconnection could
// free, and the reader that met the lost connection was the goroutine in
// the handler, so the client never reconnected.
type reporter struct {
	f       func(error)
	mu      sync.Mutex
	cond    sync.Cond
	queue   []error
	skipped int
	closed  bool
	done    chan struct{}
	g       atomic.Uintptr // the goroutine calling f (goid.G)
}

func newReporter(f func(error)) *reporter {
	r := &reporter{f: f, done: make(chan struct{})}
	r.cond.L = &r.mu
	go r.run()
	return r
}

// report queues err for the handler and returns at once. After close it
// calls the handler itself: nothing runs it otherwise.
func (r *reporter) report(err error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.f(err)
		return
	}
	if len(r.queue) >= maxQueuedReports {
		r.skipped++
	} else {
		r.queue = append(r.queue, err)
	}
	r.cond.Signal()
	r.mu.Unlock()
}

func (r *reporter) run() {
	defer close(r.done)
	r.g.Store(goid.G())
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		for len(r.queue) == 0 && r.skipped == 0 && !r.closed {
			r.cond.Wait()
		}
		var err error
		switch {
		case len(r.queue) > 0:
			err = r.queue[0]
			r.queue[0] = nil
			r.queue = r.queue[1:]
		case r.skipped > 0:
			err = fmt.Errorf("netlog: %d more errors, not reported one by one while the error handler was busy", r.skipped)
			r.skipped = 0
		default:
			return // closed, and every error reported
		}
		r.mu.Unlock()
		r.f(err)
		r.mu.Lock()
	}
}

// close waits until the handler has had every queued error, and stops the
// goroutine. Called from the handler (which closed the client), it does not
// wait for itself: the goroutine ends once the handler returns.
func (r *reporter) close() {
	r.mu.Lock()
	r.closed = true
	r.cond.Signal()
	r.mu.Unlock()
	if r.g.Load() == goid.G() {
		return
	}
	<-r.done
}
