package batcher

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Lanes (WithLanes) keep producers on different cores off each other's cache
// lines. A batch buffer is handed out in chunks: each lane (one per P, the
// scheduler's processor) fills a chunk of its own, claiming entries with a
// compare-and-swap on a counter that stays in its core's cache, and takes
// the next chunk under the engine mutex once per chunk. The batch leaves
// with its chunks moved together, in the order they were handed out, or,
// with WithVectors, as those chunks where they lie.
//
// Per-goroutine order survives goroutines moving between Ps: for each batch
// a goroutine is bound to one lane (the lane of the P it first wrote from),
// through a small table indexed by a hash of its identity, and writes every
// entry of that batch to that lane. Within a lane, entries and chunks are
// in claim order; batches leave in order. Goroutines that share a table
// slot share a lane, which costs speed, never order.

// A chunk's tail packs the batch tag (the low 32 bits of the batch id), a
// sealed bit, the entry count and the bytes used.
const (
	chunkBytesBits  = 20
	chunkMaxBytes   = 1<<chunkBytesBits - 1
	chunkCountShift = chunkBytesBits
	chunkCountMax   = 1<<11 - 1
	chunkSealed     = 1 << 31

	minChunk = 4 << 10
	maxChunk = 256 << 10

	maxLockRetries = 64 // chunk-mutex retries before a producer yields

	ownerBits     = 12 // 4096 goroutine slots
	ownerLaneBits = 16
	ownerIDMask   = 1<<(64-ownerLaneBits) - 1
	maxLanes      = 1024
)

// chunkRec is one chunk of a batch buffer. The engine mutex holder sets it
// up before it publishes the chunk to a lane; producers then only claim.
type chunkRec struct {
	tail    atomic.Uint64 // tag<<32 | chunkSealed | count<<20 | used
	local   uint32        // entries copied in from the lane's own P: see commit
	foreign atomic.Uint32 // entries copied in from other Ps
	off     atomic.Uint32 // where the chunk starts in the buffer
	size    atomic.Uint32
	_       [40]byte // one chunk per cache line
}

// claim takes n bytes of the chunk for an entry of the batch tagged tag.
func (r *chunkRec) claim(tag uint32, n uint64) (off uint64, res claimResult) {
	for {
		t := r.tail.Load()
		if uint32(t>>32) != tag || t&chunkSealed != 0 {
			return 0, claimStale
		}
		used := t & chunkMaxBytes
		if used+n > uint64(r.size.Load()) || (t>>chunkCountShift)&chunkCountMax == chunkCountMax {
			return 0, claimFull
		}
		if r.tail.CompareAndSwap(t, t+n+1<<chunkCountShift) {
			return used, claimOK
		}
	}
}

// commit counts one entry of the chunk as copied in, as Aeron's producers
// publish an entry's length once they have copied it: with an ordered
// store, not a locked instruction. A locked add would wait for the copy's
// stores to reach the cache, lines that the output most often has just
// read on the other core; an ordered store leaves them to drain while the
// producer goes on (on amd64 it is a plain store, which the processor keeps
// behind the copy's). Producers running on the lane's own P (a goroutine is
// bound to the lane of the P it first wrote from in the batch) count in
// local: pinned to the P they cannot interleave, so a load and a
// store suffice. Producers bound to the lane but running on another P
// since (a goroutine moved) count in foreign with an atomic add.
func (r *chunkRec) commit(lane int) {
	if procPin() == lane {
		storeOrdered(&r.local, atomic.LoadUint32(&r.local)+1)
		procUnpin()
		return
	}
	procUnpin()
	r.foreign.Add(1)
}

// copied returns the count of the chunk's entries copied in so far.
func (r *chunkRec) copied() int {
	return int(atomic.LoadUint32(&r.local) + r.foreign.Load())
}

type claimResult int

const (
	claimOK    claimResult = iota
	claimFull              // no room: the lane needs a new chunk
	claimStale             // the batch was sealed or replaced: start over
)

// freeze seals the chunk against further claims and returns its entry count.
func (r *chunkRec) freeze() int {
	for {
		t := r.tail.Load()
		if t&chunkSealed != 0 || r.tail.CompareAndSwap(t, t|chunkSealed) {
			return int(t>>chunkCountShift) & chunkCountMax
		}
	}
}

// laneSlot holds a lane's current chunk: tag<<32 | chunk index + 1.
type laneSlot struct {
	w atomic.Uint64
	_ [56]byte
}

// laneSet is the lane state of one batch buffer.
type laneSet struct {
	id    atomic.Uint64 // the batch's id, set by begin
	slots []laneSlot
	recs  []chunkRec
}

func newLaneSet(lanes, chunks int) *laneSet {
	return &laneSet{slots: make([]laneSlot, lanes), recs: make([]chunkRec, chunks)}
}

// chunkSize is the size of the chunks a buffer of capBytes is handed out
// in: small enough that every lane's last, partly filled chunk wastes
// little of a batch (a quarter of it at most), large enough that a lane
// takes the mutex rarely.
func chunkSize(capBytes, lanes int) int {
	return max(min(max(capBytes/(4*lanes), minChunk), maxChunk, capBytes/4), 1)
}

// regions is the number of chunks handed out in a batch whose tail is v.
func (ls *laneSet) regions(v uint64) int { return min(int(v>>countShift), len(ls.recs)) }

func (ls *laneSet) entries(v uint64) int {
	n := 0
	for i := range ls.regions(v) {
		n += int(ls.recs[i].tail.Load()>>chunkCountShift) & chunkCountMax
	}
	return n
}

func (ls *laneSet) freeze(v uint64) int {
	n := 0
	for i := range ls.regions(v) {
		n += ls.recs[i].freeze()
	}
	return n
}

func (ls *laneSet) begin(id uint64) {
	ls.id.Store(id)
	for i := range ls.slots {
		ls.slots[i].w.Store(0)
	}
}

// settled waits until every entry claimed in the frozen chunk has been
// copied in, and returns where the chunk starts, the bytes it holds and
// its entry count.
func (r *chunkRec) settled() (off, used, entries int) {
	t := r.tail.Load()
	n := int(t>>chunkCountShift) & chunkCountMax
	for spin := 0; r.copied() != n; spin++ {
		if spin > 16 {
			runtime.Gosched() // a preempted producer is finishing its copy
		}
	}
	return int(r.off.Load()), int(t & chunkMaxBytes), n
}

// compact waits until every entry of the frozen batch whose tail is v has
// been copied in, then moves the chunks together at the start of data. It
// returns the batch's length and entry count.
func (ls *laneSet) compact(data []byte, v uint64) (length, entries int) {
	for i := range ls.regions(v) {
		off, used, n := ls.recs[i].settled()
		if off != length {
			copy(data[length:length+used], data[off:off+used])
		}
		length += used
		entries += n
	}
	return length, entries
}

// pieces waits, as compact does, until every entry of the frozen batch
// whose tail is v has been copied in, and appends to dst the batch's
// pieces of data in order, chunks that touch merged into one. It returns
// them and the batch's entry count.
func (ls *laneSet) pieces(data []byte, v uint64, dst [][]byte) ([][]byte, int) {
	entries, start, end := 0, 0, -1
	for i := range ls.regions(v) {
		off, used, n := ls.recs[i].settled()
		entries += n
		if used == 0 {
			continue
		}
		if off == end { // it follows the previous piece: one piece
			end += used
			dst[len(dst)-1] = data[start:end]
			continue
		}
		start, end = off, off+used
		dst = append(dst, data[start:end])
	}
	return dst, entries
}

// ownerSlot maps a goroutine identity to its slot in the owner table.
func ownerSlot(g uintptr) int {
	return int(uint64(g) * 0x9E3779B97F4A7C15 >> (64 - ownerBits))
}

// laneFor returns the lane the goroutine of owner slot h writes to in batch
// id, binding it to the lane of its current P if this is its first entry of
// the batch. It returns -1 if a later batch already bound the slot: the
// caller's view of the batch is stale.
func (b *Bytes) laneFor(h int, id uint64) int {
	s := &b.owners[h]
	id &= ownerIDMask
	for {
		v := s.Load()
		switch sid := v >> ownerLaneBits; {
		case sid == id:
			return int(v & (1<<ownerLaneBits - 1))
		case sid > id:
			return -1
		}
		lane := procPin() % b.nLanes
		procUnpin()
		if s.CompareAndSwap(v, id<<ownerLaneBits|uint64(lane)) {
			return lane
		}
	}
}

// addLane adds p (shorter than a chunk can be) through the lanes.
func (b *Bytes) addLane(p []byte, drop bool) error {
	n := uint64(len(p))
	h := ownerSlot(getg())
	for busy := 0; ; {
		c := b.e.cur.Load()
		if !c.sealed.Load() {
			ls := c.lanes
			id := ls.id.Load()
			lane := b.laneFor(h, id)
			if lane < 0 {
				continue
			}
			w := ls.slots[lane].w.Load()
			if uint32(w>>32) == uint32(id) && uint32(w) != 0 {
				r := &ls.recs[uint32(w)-1]
				off, res := r.claim(uint32(id), n)
				switch res {
				case claimOK:
					start := uint64(r.off.Load()) + off
					copy(c.data[start:start+n], p)
					if havePrefetch {
						prefetchWrite(uintptr(unsafe.Pointer(&c.data[0])) + uintptr(start+n))
					}
					r.commit(lane)
					return nil
				case claimStale:
					continue
				}
			}
			// Only one producer needs the mutex to hand the lane its next
			// chunk: the others wait for it without queuing on the mutex,
			// so that a holder descheduled at a chunk boundary does not
			// line every producer up behind it (a lock convoy). They retry
			// a while first, since the holder is most often running on
			// another core for well under a microsecond; a yield queues
			// the caller behind every runnable goroutine, for 5 ms or more
			// with 64 goroutines logging on 2 cores.
			if !b.e.mu.TryLock() {
				if busy++; b.nLanes == 1 || busy%maxLockRetries == 0 {
					runtime.Gosched()
				}
				continue
			}
			if b.newChunkLocked(c, id, lane, w, n) {
				b.e.unlockHandingOff() // it sealed the batch
			} else {
				b.e.mu.Unlock()
			}
			continue
		}
		if err := b.e.waitRotation(c, drop, 1); err != nil {
			return err
		}
	}
}

// newChunkLocked hands lane a new chunk of batch c for an entry of n bytes,
// or seals c when it has no room left for one. The caller holds the engine
// mutex and starts over either way; nothing happens if c, its id or the
// lane's chunk w changed.
func (b *Bytes) newChunkLocked(c *byteBuf, id uint64, lane int, w uint64, n uint64) (sealed bool) {
	e := &b.e
	ls := c.lanes
	if e.cur.Load() != c || c.sealed.Load() || ls.id.Load() != id || ls.slots[lane].w.Load() != w {
		return false
	}
	l := &c.lane
	v := l.tail.Load()
	if !c.open(v) {
		return false
	}
	idx, used := v>>countShift, v&bytesMask
	room := b.capBytes - used
	if n > room || idx == uint64(len(ls.recs)) {
		// Full: this producer seals the batch, like a claim that crosses
		// the end of a buffer without lanes.
		if l.tail.CompareAndSwap(v, v+bytesSeal) {
			e.retireLocked(c, v)
			return true
		}
		return false
	}
	size := max(min(b.chunk, room), n)
	r := &ls.recs[idx]
	r.off.Store(uint32(used))
	r.size.Store(uint32(size))
	atomic.StoreUint32(&r.local, 0)
	r.foreign.Store(0)
	r.tail.Store(uint64(uint32(id)) << 32)
	l.tail.Store(v + 1<<countShift + size)
	if idx == 0 {
		e.started(l)
	}
	ls.slots[lane].w.Store(uint64(uint32(id))<<32 | (idx + 1))
	return false
}
