package netlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/snail-log/snail/encoder"
)

// SpoolFull is what a spool does when it holds its maximum of bytes.
type SpoolFull int

const (
	// SpoolBlock makes WriteBatch wait for room (the sink's overflow
	// policy then applies), as for room in the window: until the
	// collector has been unavailable for the report delay or refuses the
	// client for good (ErrUnavailable, and the sink retries the batch),
	// and after Drain until the drain ends. The default.
	SpoolBlock SpoolFull = iota
	// SpoolDropOldest deletes the oldest spooled batches not yet sent to
	// make room, and counts their entries in Stats().Lost.
	SpoolDropOldest
)

const (
	spoolSegMax    = 4 << 20 // at most: a segment is closed for appends past max/8, at most this
	spoolRecHeader = 32
	spoolStateSize = 32
)

var (
	spoolMagic = [4]byte{'S', 'N', 'S', 'P'}
	stateMagic = [4]byte{'S', 'N', 'S', 'S'}
	crcTable   = crc32.MakeTable(crc32.Castagnoli)
)

// DefaultSpoolBytes is the spool size snail send and snail:// URLs use
// unless told otherwise.
const DefaultSpoolBytes = 1 << 30

// WithSpool gives the Stream a disk spool in dir (a relative one from the
// working directory at Dial), holding at most maxBytes: when the window of
// unacked batches is full (the collector is slow or down), batches go to
// disk instead of waiting, and are sent from there, in order and before
// newer batches, as the window frees. While the collector keeps up,
// nothing touches the disk.
//
// The spool also makes the Stream's identity survive a restart: the stream
// id and the next sequence number live in dir, so a client restarted with
// the same dir delivers what its predecessor spooled, under the same id and
// sequence numbers (the collector skips what it already wrote), and never
// sends again what was acked. Each record carries a CRC; a record torn by a
// crash is detected and dropped, never sent, and reported to the error
// handler (WithErrorHandler) when Dial opens the spool. A spool belongs to
// the stream whose batches it holds: while they wait, Dial refuses it to
// another stream name (ErrInvalidOption). A record damaged in
// place is dropped and reported the same way, and the records after it
// are still sent when its length field is intact. Entries a client
// crash can still lose: those in the sink's buffers and in the window in
// memory (batches sent without being spooled and not yet acked; a Close
// that gives up on those counts them lost); Sync narrows that to what was
// logged after it returned, and WithSpoolAll spools the window's batches
// too. A spool that cannot be written (a full disk) does not stop
// delivery: batches go to the collector around it, after what it holds,
// reported once, and are not kept across a crash until it takes batches
// again.
func WithSpool(dir string, maxBytes int64, full SpoolFull) ClientOption {
	return func(c *clientConfig) error {
		if dir == "" {
			return errors.New("empty spool directory")
		}
		if maxBytes < 1<<20 {
			return fmt.Errorf("spool of %d bytes: at least 1 MiB", maxBytes)
		}
		if full != SpoolBlock && full != SpoolDropOldest {
			return fmt.Errorf("unknown spool policy %d", full)
		}
		c.spoolDir, c.spoolMax, c.spoolFull = dir, maxBytes, full
		return nil
	}
}

// WithSpoolAll sends every batch through the spool (WithSpool), not only
// those the window cannot take: each is written to the spool before it is
// sent. Then no batch that WriteBatch took is lost to a crash of the client
// process, nor to a Close while the collector is away: Close leaves what
// was not acked in the spool for the next Stream on the same directory.
// Without it, the batches in the window (sent, not yet acked) live in
// memory only, and a Close that gives up on them counts them lost. It costs
// a write and a read of each batch (through the page cache: a crash of the
// machine can still lose the spool's last writes). `snail send --spool`
// uses it.
func WithSpoolAll() ClientOption {
	return func(c *clientConfig) error {
		c.spoolAll = true
		return nil
	}
}

// errSpoolWrite is the error of a batch the spool could not write (a full
// disk): the Stream sends it around the spool.
var errSpoolWrite = errors.New("netlog: spool cannot be written")

// errSpoolInUse is the error of a spool directory another Stream holds.
var errSpoolInUse = errors.New("in use by another client (a spool has one stream id and sequence, so one user)")

// spoolRec is a batch in the spool.
type spoolRec struct {
	seq     uint64
	entries int
	raw     int
	comp    encoder.Compression
	seg     *segment
	off     int64 // of the payload in seg
	n       int
}

type segment struct {
	name    string
	f       *os.File
	size    int64
	last    uint64
	pending int // records neither acked nor dropped
}

// spool is a Stream's disk queue and its persistent identity.
type spool struct {
	dir    string
	max    int64
	segMax int64
	full   SpoolFull

	mu      sync.Mutex
	cond    *sync.Cond
	segs    []*segment  // oldest first; the last one takes appends
	queue   []*spoolRec // not yet handed to the connection, in order
	bySeq   map[uint64]*spoolRec
	handing bool // the drainer is handing a record over
	bytes   int64
	closed  bool

	state     *os.File
	id        uint64
	nextSeq   uint64
	reserved  uint64          // the state file's next sequence number: at least nextSeq, fsynced
	acked     uint64          // every sequence number up to this one is done
	done      map[uint64]bool // done above acked
	dropped   uint64          // entries dropped by SpoolDropOldest
	cuts      []string        // what recovery cut at open, for Dial to report
	recovered uint64          // the last sequence number recovered at open
	buf       []byte
}

// openSpool opens (or creates) the spool in dir for the stream named
// stream and recovers what a previous process left: its identity, and the
// records not acked, in order.
func openSpool(dir string, maxBytes int64, full SpoolFull, stream string) (*spool, error) {
	// Segments are made as batches come: in the directory of now, not
	// under the one the program may move to.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("netlog: spool: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("netlog: spool: %w", err)
	}
	sp := &spool{dir: dir, max: maxBytes, full: full, bySeq: map[uint64]*spoolRec{}, done: map[uint64]bool{},
		segMax: min(max(maxBytes/8, 64<<10), spoolSegMax)}
	sp.cond = sync.NewCond(&sp.mu)
	st, err := os.OpenFile(filepath.Join(dir, "state"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("netlog: spool: %w", err)
	}
	sp.state = st
	if err := lockFile(st); err != nil {
		st.Close()
		return nil, fmt.Errorf("netlog: spool %s: %w", dir, err)
	}
	var b [spoolStateSize]byte
	if n, _ := st.ReadAt(b[:], 0); n == spoolStateSize && [4]byte(b[:4]) == stateMagic &&
		crc32.Checksum(b[:28], crcTable) == binary.LittleEndian.Uint32(b[28:]) {
		sp.id = binary.LittleEndian.Uint64(b[4:])
		sp.nextSeq = binary.LittleEndian.Uint64(b[12:])
		sp.acked = binary.LittleEndian.Uint64(b[20:])
	}
	for sp.id == 0 {
		sp.id = rand.Uint64()
	}
	if sp.nextSeq == 0 {
		sp.nextSeq = 1
	}
	names, _ := filepath.Glob(filepath.Join(dir, "seg-*.spool"))
	sort.Strings(names)
	for _, name := range names {
		if err := sp.recoverSegment(name); err != nil {
			sp.closeFiles()
			return nil, err
		}
	}
	if err := sp.claimStream(stream); err != nil {
		sp.closeFiles()
		return nil, err
	}
	sp.reserved = sp.nextSeq // what take gives out next is reserved (and fsynced) there
	if err := sp.saveState(); err != nil {
		sp.closeFiles()
		return nil, err
	}
	return sp, nil
}

// spoolStreamFile names the stream whose batches the spool holds.
const spoolStreamFile = "stream"

// claimStream makes the spool the stream's. Its records carry no stream
// name, the stream's handshake gives it: records left by a client of
// another stream would go to this one's file at the collector, so they
// refuse it, until they are delivered. An empty spool changes hands (its
// stream id goes on: sequence numbers only grow, so the collector's marks
// for either stream stay true). A spool of an earlier version, without the
// file, is taken as it is.
func (sp *spool) claimStream(stream string) error {
	path := filepath.Join(sp.dir, spoolStreamFile)
	b, err := os.ReadFile(path)
	old := strings.TrimSpace(string(b)) // an editor's newline
	switch {
	case err == nil && old == stream:
		return nil
	case err == nil && len(sp.queue) > 0:
		return fmt.Errorf("%w: spool %s holds batches of stream %q not acked yet (%d), not of stream %q: "+
			"use it for stream %q until they are delivered", ErrInvalidOption, sp.dir, old, len(sp.queue), stream, old)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("netlog: spool: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(stream), 0o640); err != nil {
		return fmt.Errorf("netlog: spool: %w", err)
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("netlog: spool: %w", err)
	}
	return nil
}

// recoverSegment reads one segment left by a previous process: valid
// records above acked are queued; a torn record ends the segment (it is cut
// there), and so does one whose sequence number does not follow the
// records before it, over all segments (they only ever grow; a record that
// breaks that is corrupt even with a good CRC, and would be sent twice or
// out of order).
func (sp *spool) recoverSegment(name string) error {
	data, err := os.ReadFile(name)
	if err != nil {
		return fmt.Errorf("netlog: spool: %w", err)
	}
	seg := &segment{name: name}
	off := 0
	for len(data)-off >= spoolRecHeader {
		h := data[off : off+spoolRecHeader]
		n, ok := spoolRecAt(data, off)
		if !ok {
			// Damage inside a record (a bad sector, not a torn append):
			// when its length still leads to a whole record that follows
			// in sequence, only this one is lost, not all that follow.
			next := off + spoolRecHeader + n
			if n < 0 || !sp.follows(data, next) {
				break
			}
			sp.cuts = append(sp.cuts, skipNote(name, data, off, next, sp.acked))
			off = next
			continue
		}
		r := &spoolRec{seq: binary.LittleEndian.Uint64(h[4:]), entries: int(binary.LittleEndian.Uint32(h[12:])),
			raw: int(binary.LittleEndian.Uint32(h[16:])), comp: encoder.Compression(h[20]), seg: seg,
			off: int64(off + spoolRecHeader), n: n}
		if r.seq <= sp.recovered || r.seq == math.MaxUint64 { // the last leaves no next number
			break
		}
		sp.recovered = r.seq
		off += spoolRecHeader + n
		sp.nextSeq = max(sp.nextSeq, r.seq+1)
		if r.seq <= sp.acked {
			continue
		}
		seg.pending++
		seg.last = r.seq
		sp.queue = append(sp.queue, r)
		sp.bySeq[r.seq] = r
	}
	if off < len(data) {
		sp.cuts = append(sp.cuts, cutNote(name, data, off, sp.acked))
	}
	if seg.pending == 0 {
		return os.Remove(name)
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("netlog: spool: %w", err)
	}
	if err := f.Truncate(int64(off)); err != nil {
		f.Close()
		return fmt.Errorf("netlog: spool: %w", err)
	}
	seg.f, seg.size = f, int64(off)
	sp.segs = append(sp.segs, seg)
	sp.bytes += seg.size
	return nil
}

// spoolRecAt checks the record at off in data: its payload length n, and
// whether it is whole with a good CRC. n is -1 when the header is not
// there, or names a payload longer than the data.
func spoolRecAt(data []byte, off int) (n int, ok bool) {
	if len(data)-off < spoolRecHeader || [4]byte(data[off:off+4]) != spoolMagic {
		return -1, false
	}
	h := data[off : off+spoolRecHeader]
	n = int(binary.LittleEndian.Uint32(h[24:]))
	if len(data)-off-spoolRecHeader < n {
		return -1, false
	}
	crc := crc32.Update(crc32.Checksum(h[:28], crcTable), crcTable, data[off+spoolRecHeader:off+spoolRecHeader+n])
	return n, crc == binary.LittleEndian.Uint32(h[28:])
}

// follows reports whether a whole record starts at off with a sequence
// number after the records recovered so far.
func (sp *spool) follows(data []byte, off int) bool {
	if _, ok := spoolRecAt(data, off); !ok {
		return false
	}
	seq := binary.LittleEndian.Uint64(data[off+4:])
	return seq > sp.recovered && seq != math.MaxUint64
}

// skipNote describes a damaged record that recovery skipped, from off to
// next, keeping the records after it.
func skipNote(name string, data []byte, off, next int, acked uint64) string {
	return fmt.Sprintf("%s: skipped %d bytes at byte %d, a damaged record%s; the records after it are kept",
		filepath.Base(name), next-off, off, headerNote(data[off:next], acked))
}

// cutNote describes the bytes recovery cuts at off in segment data: a
// record torn by a crash while it was appended (the usual case: its batch
// was never sent, nor acked), or damaged. Its header, when whole, names
// its batch; the header is not checked, so the note says so.
func cutNote(name string, data []byte, off int, acked uint64) string {
	return fmt.Sprintf("%s: cut %d bytes at byte %d, a record torn by a crash or damaged%s",
		filepath.Base(name), len(data)-off, off, headerNote(data[off:], acked))
}

// headerNote names the batch of the damaged record h by its header, when
// the header is whole, and says what was lost.
func headerNote(h []byte, acked uint64) string {
	if len(h) >= spoolRecHeader && [4]byte(h[:4]) == spoolMagic {
		seq, entries := binary.LittleEndian.Uint64(h[4:]), binary.LittleEndian.Uint32(h[12:])
		if seq <= acked {
			return fmt.Sprintf(" (batch %d by its header, which was acked)", seq)
		}
		return fmt.Sprintf(" (batch %d of %d entries by its header): the entries in it are lost", seq, entries)
	}
	return ": the entries in it are lost"
}

// saveState writes the identity and progress in place. A torn write of
// these 32 bytes fails their CRC and the spool starts afresh; the segments
// still hold what was not acked. Called with mu held (or before sharing).
func (sp *spool) saveState() error {
	var b [spoolStateSize]byte
	copy(b[:4], stateMagic[:])
	binary.LittleEndian.PutUint64(b[4:], sp.id)
	binary.LittleEndian.PutUint64(b[12:], sp.reserved)
	binary.LittleEndian.PutUint64(b[20:], sp.acked)
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], crcTable))
	if _, err := sp.state.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("netlog: spool state: %w", err)
	}
	return nil
}

// testHookStateSynced, if set, is called after each fsync of the state
// file by reserve.
var testHookStateSynced func()

// seqBlock is how many sequence numbers take reserves at a time.
const seqBlock = 1024

// take gives out the next sequence number. A restarted client must never
// reuse one that reached the collector: the collector would take the new
// batch for the old one and skip it. So the state file says where a
// restarted client starts, a block of numbers ahead, fsynced before any
// of them is used: a crash of the machine, which can lose the state
// file's writes that were not fsynced, cannot take it back. A restart
// skips the rest of the block; the collector only needs the numbers of a
// stream id to grow.
func (sp *spool) take() (uint64, error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	seq := sp.nextSeq
	if seq >= sp.reserved {
		if err := sp.reserve(seq + seqBlock); err != nil {
			return 0, err
		}
	}
	sp.nextSeq++
	return seq, nil
}

// past moves the numbering past written, the highest sequence number the
// collector wrote for this stream id, and reports whether it had to: the
// spool's state went back (restored from a copy, or copied to another
// host), and batches numbered at or below written would be taken for the
// ones written before.
func (sp *spool) past(written uint64) (bool, error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if written < sp.nextSeq {
		return false, nil
	}
	sp.nextSeq = written + 1
	return true, sp.reserve(sp.nextSeq + seqBlock)
}

// reserve saves next as where a restarted client starts, and fsyncs it.
// Called with mu held.
func (sp *spool) reserve(next uint64) error {
	old := sp.reserved
	sp.reserved = next
	err := sp.saveState()
	if err == nil {
		if err = sp.state.Sync(); err != nil {
			err = fmt.Errorf("netlog: spool state: %w", err)
		} else if testHookStateSynced != nil {
			testHookStateSynced()
		}
	}
	if err != nil {
		sp.reserved = old
	}
	return err
}

// idle reports whether nothing waits in the spool: a batch may then go
// straight to the connection. Called with mu held.
func (sp *spool) idle() bool { return len(sp.queue) == 0 && !sp.handing }

// spoolRecheck is how often a batch waiting for room in a full spool asks
// over whether to stop waiting: nothing signals the collector's going
// down, or the drain's end, to the spool.
const spoolRecheck = 100 * time.Millisecond

// append writes a batch to the spool, waiting for room or dropping the
// oldest batches as configured. While it waits for room it returns over's
// error once there is one: the window's waits end the same way (the
// collector unavailable past the report delay, the drain's end), and a
// wait without end would hold the sink's writers, a signal to snail send
// included, for as long as the collector is down. Called with mu held.
func (sp *spool) append(r *spoolRec, payload []byte, over func() error) error {
	need := int64(spoolRecHeader + len(payload))
	var recheck *time.Timer
	defer func() {
		if recheck != nil {
			recheck.Stop()
		}
	}()
	for sp.bytes+need > sp.max && !sp.closed {
		if sp.full == SpoolDropOldest && sp.dropOldest() {
			continue
		}
		if err := over(); err != nil {
			return err
		}
		if recheck == nil {
			recheck = time.AfterFunc(spoolRecheck, func() {
				sp.mu.Lock()
				sp.cond.Broadcast()
				sp.mu.Unlock()
			})
		} else {
			recheck.Reset(spoolRecheck)
		}
		sp.cond.Wait()
	}
	if sp.closed {
		return ErrClosed
	}
	seg := sp.tail()
	if seg == nil || seg.size+need > sp.segMax && seg.size > 0 {
		name := filepath.Join(sp.dir, fmt.Sprintf("seg-%020d.spool", r.seq))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
		if err != nil {
			return fmt.Errorf("%w: %w", errSpoolWrite, err)
		}
		seg = &segment{name: name, f: f}
		sp.segs = append(sp.segs, seg)
	}
	h := sp.buf[:0]
	h = append(h, spoolMagic[:]...)
	h = binary.LittleEndian.AppendUint64(h, r.seq)
	h = binary.LittleEndian.AppendUint32(h, uint32(r.entries))
	h = binary.LittleEndian.AppendUint32(h, uint32(r.raw))
	h = append(h, byte(r.comp), 0, 0, 0)
	h = binary.LittleEndian.AppendUint32(h, uint32(len(payload)))
	h = binary.LittleEndian.AppendUint32(h, crc32.Update(crc32.Checksum(h[:28], crcTable), crcTable, payload))
	h = append(h, payload...)
	sp.buf = h
	if _, err := seg.f.WriteAt(h, seg.size); err != nil {
		_ = seg.f.Truncate(seg.size)
		return fmt.Errorf("%w: %w", errSpoolWrite, err)
	}
	r.seg, r.off, r.n = seg, seg.size+spoolRecHeader, len(payload)
	seg.size += need
	seg.pending++
	seg.last = r.seq
	sp.bytes += need
	sp.queue = append(sp.queue, r)
	sp.bySeq[r.seq] = r
	sp.cond.Broadcast()
	return nil
}

func (sp *spool) tail() *segment {
	if len(sp.segs) == 0 {
		return nil
	}
	return sp.segs[len(sp.segs)-1]
}

// dropOldest deletes the oldest segment none of whose records were handed
// to the connection yet, counting its entries as lost. Called with mu held.
func (sp *spool) dropOldest() bool {
	inFlight := map[*segment]bool{}
	for _, r := range sp.bySeq {
		if !sp.isQueued(r) {
			inFlight[r.seg] = true
		}
	}
	for _, seg := range sp.segs {
		if inFlight[seg] || seg.pending == 0 {
			continue
		}
		kept := sp.queue[:0]
		for _, r := range sp.queue {
			if r.seg != seg {
				kept = append(kept, r)
				continue
			}
			sp.dropped += uint64(r.entries)
			delete(sp.bySeq, r.seq)
			sp.markDone(r.seq)
		}
		sp.queue = kept
		sp.removeSegment(seg)
		_ = sp.saveState()
		return true
	}
	return false
}

func (sp *spool) isQueued(r *spoolRec) bool {
	i := sort.Search(len(sp.queue), func(i int) bool { return sp.queue[i].seq >= r.seq })
	return i < len(sp.queue) && sp.queue[i] == r
}

func (sp *spool) removeSegment(seg *segment) {
	for i, s := range sp.segs {
		if s == seg {
			sp.segs = append(sp.segs[:i], sp.segs[i+1:]...)
			break
		}
	}
	sp.bytes -= seg.size
	seg.f.Close()
	os.Remove(seg.name)
	sp.cond.Broadcast()
}

// next waits for the next spooled record and marks it being handed over;
// handed must be called after. It returns nil once the spool is closed.
func (sp *spool) next() (*spoolRec, []byte, error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for len(sp.queue) == 0 && !sp.closed {
		sp.cond.Wait()
	}
	if sp.closed {
		return nil, nil, nil
	}
	r := sp.queue[0]
	sp.queue = sp.queue[1:]
	sp.handing = true
	payload := make([]byte, r.n)
	hdr := make([]byte, spoolRecHeader)
	lost := func(what string) error {
		return fmt.Errorf("netlog: spool %s: batch %d of %d entries at byte %d %s: the entries in it are lost",
			filepath.Base(r.seg.name), r.seq, r.entries, r.off-spoolRecHeader, what)
	}
	if _, err := r.seg.f.ReadAt(hdr, r.off-spoolRecHeader); err != nil {
		return r, nil, lost(fmt.Sprintf("cannot be read (%v)", err))
	}
	if _, err := r.seg.f.ReadAt(payload, r.off); err != nil {
		return r, nil, lost(fmt.Sprintf("cannot be read (%v)", err))
	}
	if crc32.Update(crc32.Checksum(hdr[:28], crcTable), crcTable, payload) != binary.LittleEndian.Uint32(hdr[28:]) {
		return r, nil, lost("fails its CRC, damaged since it was spooled")
	}
	return r, payload, nil
}

func (sp *spool) handed() {
	sp.mu.Lock()
	sp.handing = false
	sp.cond.Broadcast()
	sp.mu.Unlock()
}

// finish records that batch seq is done (acked, refused or lost): the
// acked mark advances and segments wholly done are deleted.
func (sp *spool) finish(seq uint64) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if r := sp.bySeq[seq]; r != nil {
		delete(sp.bySeq, seq)
		r.seg.pending--
		if r.seg.pending == 0 && (r.seg != sp.tail() || r.seg.size >= sp.segMax || len(sp.queue) == 0) {
			sp.removeSegment(r.seg)
		}
	}
	sp.markDone(seq)
	_ = sp.saveState()
}

// markDone advances acked over seq. Called with mu held.
func (sp *spool) markDone(seq uint64) {
	if seq <= sp.acked {
		return
	}
	sp.done[seq] = true
	for sp.done[sp.acked+1] {
		delete(sp.done, sp.acked+1)
		sp.acked++
	}
	sp.cond.Broadcast()
}

// has reports whether batch seq is in the spool (queued or in flight).
func (sp *spool) has(seq uint64) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.bySeq[seq] != nil
}

// pendingUpTo reports whether a batch numbered up to seq is still in the
// spool or being handed over.
func (sp *spool) pendingUpTo(seq uint64) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.handing || len(sp.queue) > 0 && sp.queue[0].seq <= seq
}

// close stops the spool; its files stay for the next process.
func (sp *spool) close() (left int) {
	sp.mu.Lock()
	sp.closed = true
	left = len(sp.bySeq)
	sp.cond.Broadcast()
	sp.mu.Unlock()
	sp.closeFiles()
	return left
}

func (sp *spool) closeFiles() {
	for _, s := range sp.segs {
		if s.f != nil {
			s.f.Close()
		}
	}
	if sp.state != nil {
		sp.state.Close()
	}
}
