package sink

import (
	"bytes"
	"sync"
)

// memDest is an in-memory Destination that can be made to fail or stall.
type memDest struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	batches int
	entries int
	syncs   int
	closed  bool
	fail    error         // WriteBatch returns it while set
	gate    chan struct{} // WriteBatch waits on it while set
}

func (d *memDest) WriteBatch(b []byte, n int) error {
	d.mu.Lock()
	gate := d.gate
	d.mu.Unlock()
	if gate != nil {
		<-gate
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return d.fail
	}
	d.buf.Write(b)
	d.batches++
	d.entries += n
	return nil
}

func (d *memDest) Sync() error {
	d.mu.Lock()
	d.syncs++
	d.mu.Unlock()
	return nil
}

func (d *memDest) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	return nil
}

func (d *memDest) setFail(err error) {
	d.mu.Lock()
	d.fail = err
	d.mu.Unlock()
}

func (d *memDest) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.buf.String()
}

func (d *memDest) lines() []string {
	s := d.String()
	if s == "" {
		return nil
	}
	return bytes2lines(s)
}

func bytes2lines(s string) []string {
	var out []string
	for _, l := range bytes.Split([]byte(s), []byte("\n")) {
		if len(l) > 0 {
			out = append(out, string(l))
		}
	}
	return out
}
