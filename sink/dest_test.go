package sink

import (
	"bytes"
	"fmt"
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

// keepDest is a memDest that keeps batches (a sink.Keeper): it holds each
// batch buffer it is given and hands back a new one, and checks at Close
// that none it holds was written to after it took it.
type keepDest struct {
	*memDest
	held  [][]byte
	snaps []string
}

func (d *keepDest) KeepBatch(b []byte, n int) ([]byte, error) {
	if err := d.WriteBatch(b, n); err != nil {
		return nil, err
	}
	d.held = append(d.held, b)
	d.snaps = append(d.snaps, string(b))
	return make([]byte, 0, cap(b)), nil
}

func (d *keepDest) Close() error {
	for i, b := range d.held {
		if string(b) != d.snaps[i] {
			return fmt.Errorf("kept batch %d was written to after KeepBatch returned", i)
		}
	}
	return d.memDest.Close()
}

// vecDest is a memDest that takes batches in pieces (a sink.VectorWriter)
// and counts the batches that came that way.
type vecDest struct {
	*memDest
	vectored int
}

func (d *vecDest) WriteBatchVec(pieces [][]byte, n int) error {
	if len(pieces) < 2 {
		return fmt.Errorf("WriteBatchVec with %d pieces: one piece goes to WriteBatch", len(pieces))
	}
	if err := d.WriteBatch(bytes.Join(pieces, nil), n); err != nil {
		return err
	}
	d.mu.Lock()
	d.vectored++
	d.mu.Unlock()
	return nil
}

// dests are the destination kinds that tests run against: one that copies,
// one that keeps, one that takes batches in pieces.
var dests = []struct {
	name string
	make func() (Destination, *memDest)
}{
	{"copies", func() (Destination, *memDest) { d := &memDest{}; return d, d }},
	{"keeps", func() (Destination, *memDest) { d := &memDest{}; return &keepDest{memDest: d}, d }},
	{"pieces", func() (Destination, *memDest) { d := &memDest{}; return &vecDest{memDest: d}, d }},
}
