package batcher

import (
	"runtime"
	"sync"
)

// The peers snail's batcher is measured against. Each gathers items from
// many goroutines into batches for one consumer goroutine, with the same
// batch size and the same number of batches in flight as snail, and
// delivers everything before close returns.

// fanIn is what the benchmarks drive: snail and every peer.
type fanIn[T any] interface {
	add(T)
	close()
}

// peerLock is a sync.Mutex taken either plainly or, with spin set, the way
// the seed prototype took it: TryLock in a loop with runtime.Gosched
// between tries.
type peerLock struct {
	mu   sync.Mutex
	spin bool
}

func (l *peerLock) lock() {
	if !l.spin {
		l.mu.Lock()
		return
	}
	for !l.mu.TryLock() {
		runtime.Gosched()
	}
}

func (l *peerLock) unlock() { l.mu.Unlock() }

// chanPeer is the textbook design: a buffered channel feeding one consumer
// that groups items into batches.
type chanPeer[T any] struct {
	ch   chan T
	done chan struct{}
}

func newChanPeer[T any](size, buffers int, out func([]T)) *chanPeer[T] {
	p := &chanPeer[T]{ch: make(chan T, size*buffers), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		batch := make([]T, 0, size)
		for v := range p.ch {
			batch = append(batch, v)
			if len(batch) == size || len(p.ch) == 0 {
				out(batch)
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			out(batch)
		}
	}()
	return p
}

func (p *chanPeer[T]) add(v T) { p.ch <- v }
func (p *chanPeer[T]) close()  { close(p.ch); <-p.done }

// lockPeer appends to a slice under a peerLock and hands full slices to a
// consumer goroutine, taking an empty one from a free list: n-buffering
// behind a mutex (or the seed prototype's spin lock).
type lockPeer[T any] struct {
	peerLock
	cur  []T
	size int
	full chan []T
	free chan []T
	done chan struct{}
}

func newLockPeer[T any](size, buffers int, spin bool, out func([]T)) *lockPeer[T] {
	p := &lockPeer[T]{peerLock: peerLock{spin: spin}, size: size, full: make(chan []T, buffers), free: make(chan []T, buffers), done: make(chan struct{})}
	p.cur = make([]T, 0, size)
	for range buffers - 1 {
		p.free <- make([]T, 0, size)
	}
	go func() {
		defer close(p.done)
		for b := range p.full {
			out(b)
			p.free <- b[:0]
		}
	}()
	return p
}

func (p *lockPeer[T]) add(v T) {
	p.lock()
	p.cur = append(p.cur, v)
	if len(p.cur) == p.size {
		p.full <- p.cur
		p.cur = <-p.free
	}
	p.unlock()
}

func (p *lockPeer[T]) close() {
	p.lock()
	if len(p.cur) > 0 {
		p.full <- p.cur
	}
	close(p.full)
	p.unlock()
	<-p.done
}

// Byte-entry variants: the entry is copied into a contiguous batch buffer
// (locks) or into a fixed-size channel element (channel: a []byte element
// would alias the caller's reused buffer).

type entryMsg struct {
	n int
	b [256]byte
}

type chanBytesPeer struct {
	ch   chan entryMsg
	done chan struct{}
}

func newChanBytesPeer(capBytes, buffers int, out func([]byte, int)) *chanBytesPeer {
	p := &chanBytesPeer{ch: make(chan entryMsg, capBytes/200*buffers), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		batch := make([]byte, 0, capBytes)
		n := 0
		for m := range p.ch {
			if len(batch)+m.n > capBytes {
				out(batch, n)
				batch, n = batch[:0], 0
			}
			batch = append(batch, m.b[:m.n]...)
			n++
		}
		if n > 0 {
			out(batch, n)
		}
	}()
	return p
}

func (p *chanBytesPeer) write(e []byte) {
	var m entryMsg
	m.n = copy(m.b[:], e)
	p.ch <- m
}
func (p *chanBytesPeer) close() { close(p.ch); <-p.done }

type lockBytesPeer struct {
	peerLock
	cur  []byte
	n    int
	full chan []byte
	cnt  chan int
	free chan []byte
	done chan struct{}
}

func newLockBytesPeer(capBytes, buffers int, spin bool, out func([]byte, int)) *lockBytesPeer {
	p := &lockBytesPeer{peerLock: peerLock{spin: spin}, full: make(chan []byte, buffers), cnt: make(chan int, buffers),
		free: make(chan []byte, buffers), done: make(chan struct{})}
	p.cur = make([]byte, 0, capBytes)
	for range buffers - 1 {
		p.free <- make([]byte, 0, capBytes)
	}
	go func() {
		defer close(p.done)
		for b := range p.full {
			out(b, <-p.cnt)
			p.free <- b[:0]
		}
	}()
	return p
}

func (p *lockBytesPeer) write(e []byte) {
	p.lock()
	if len(p.cur)+len(e) > cap(p.cur) {
		p.full <- p.cur
		p.cnt <- p.n
		p.cur, p.n = <-p.free, 0
	}
	p.cur = append(p.cur, e...)
	p.n++
	p.unlock()
}

func (p *lockBytesPeer) close() {
	p.lock()
	if p.n > 0 {
		p.full <- p.cur
		p.cnt <- p.n
	}
	close(p.full)
	p.unlock()
	<-p.done
}
