package netlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/internal/resume"
)

// Stream sends batches of log entries to a collector over the log protocol:
// it is a destination for sink.New, so that zap, zerolog and slog log to a
// collector exactly as they log to a file. Each batch becomes one frame,
// numbered within the stream, and is kept until the collector acks it.
//
// Delivery is at-least-once on the wire and exactly-once into the
// collector's files: after a reconnect the Stream sends every unacked batch
// again, in order, and the collector skips those it already wrote.
//
// While the window of unacked batches is full, WriteBatch waits (the sink's
// overflow policy then blocks or drops entries, per level); once the
// collector has been unreachable for longer than the report delay it returns
// ErrUnavailable instead, and Sync returns it too, while every batch already
// taken stays queued and is delivered when a connection succeeds. The
// window's bytes count the memory unacked batches hold (their buffers'
// capacity), so that it bounds the Stream's memory even when batches leave
// partly full.
type Stream struct {
	c     *Client[*outBatch, ack]
	cfg   clientConfig
	id    uint64
	enc   *encoder.Encoder
	dec   *encoder.Decoder
	bufs  bufStack
	close sync.Once
	cerr  error

	drainOnce   sync.Once
	draining    atomic.Bool // Drain was called: drainCtx is set
	drainCtx    context.Context
	drainCancel context.CancelFunc
	drainFailed atomic.Bool   // Sync said what the drain timeout left unacked
	giveUpDone  chan struct{} // closed when watchGiveUp returns; nil without WithGiveUpAfter

	mu  sync.Mutex
	err error // batches refused since the last Sync

	// limits are the collector's frame limits from its last welcome: the
	// payload limit in the high 32 bits, the decompressed one in the low
	// 32; 0 until a welcome said them.
	limits atomic.Uint64
	idle   atomic.Int64 // the collector's idle timeout from its last welcome; 0: not said
	resume resume.Point // how far a batch sent in pieces that failed part way got

	// redo holds batches the collector refused as over its frame limits
	// (sent before its welcome said them), to send again cut to fit: by
	// redoLoop as soon as they are refused, or the next WriteBatch,
	// KeepBatch, Sync or Close, whichever comes first. Under mu.
	redo     []*redoBatch
	redoN    atomic.Int32 // len(redo)
	redoSaid atomic.Bool
	redoKick chan struct{} // a batch went to redo: redoLoop sends it without waiting for the next write
	redoStop chan struct{} // closed by Close
	redoDone chan struct{} // closed when redoLoop returns

	// sendMu makes one sender at a time: the sink's WriteBatch and
	// KeepBatch, and sendRedo from Sync, Close and redoLoop, which run
	// beside them (the Encoder is not safe for concurrent use).
	sendMu sync.Mutex

	sp       *spool      // nil without WithSpool
	spBroken atomic.Bool // the spool could not be written: batches go around it
	spCtx    context.Context
	spCancel context.CancelFunc
	spDone   chan struct{}

	batches, acked, entries, lost, rejected, raw, wire atomic.Uint64
}

// outBatch is a batch on its way: its payload as sent (compressed or not).
type outBatch struct {
	seq     uint64 // with a spool: the sequence number it was given
	pooled  bool   // buf comes from Stream.bufs
	buf     *[]byte
	payload []byte
	comp    encoder.Compression
	raw     int
	entries int
}

// ack is the collector's answer to a batch.
type ack struct {
	status encoder.Status
	reason string
	limits uint64 // a refusal by size: the collector's frame limits, as in a welcome
	bye    bool   // a refusal in a goodbye: the collector closes the connection after it
}

// StreamStats are a Stream's counters since Dial.
type StreamStats struct {
	Batches   uint64 // batches taken by WriteBatch or KeepBatch
	Acked     uint64 // batches acked by the collector
	Entries   uint64 // entries in acked batches
	Lost      uint64 // entries in batches refused or given up at Close
	Spooled   uint64 // entries in the spool not yet acked: after Close, left for the next run
	Rejected  uint64 // batches the collector refused
	RawBytes  uint64 // batch bytes before compression
	WireBytes uint64 // batch bytes as sent, before headers (first send)
	ClientStats
}

// Dial returns a Stream to the collector at addr ("host:port", or a
// comma-separated list for failover; WithAddrs adds more). It returns at
// once: the connection is made in the background and batches wait for it.
// Errors are configuration errors.
func Dial(addr string, opts ...ClientOption) (*Stream, error) {
	cfg, err := newClientConfig(append([]ClientOption{WithAddrs(addr)}, opts...))
	if err != nil {
		return nil, err
	}
	if cfg.spoolAll && cfg.spoolDir == "" {
		return nil, fmt.Errorf("%w: WithSpoolAll without WithSpool", ErrInvalidOption)
	}
	cfg.shipEach = true // send and drain ship what they queue
	enc, err := encoder.NewEncoder(encoder.WithZstdLevel(cfg.zstdLevel))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	dec, err := encoder.NewDecoder(encoder.WithMaxFrameSize(encoder.MaxAckReason))
	if err != nil {
		return nil, err
	}
	s := &Stream{cfg: cfg, enc: enc, dec: dec, bufs: bufStack{max: cfg.maxFrames + 1, every: spareShrinkEvery}}
	if cfg.spoolDir != "" {
		if s.sp, err = openSpool(cfg.spoolDir, cfg.spoolMax, cfg.spoolFull, cfg.stream); err != nil {
			return nil, err
		}
		s.id = s.sp.id
	}
	for s.id == 0 {
		s.id = rand.Uint64()
	}
	if cfg.onError != nil {
		cfg.rep = newReporter(cfg.onError)
		s.cfg.rep = cfg.rep
	}
	codec := &streamCodec{s: s}
	s.c, err = newClient[*outBatch, ack](codec, cfg)
	if err == nil {
		codec.client.Store(s.c) // its goroutines already run: s.c is not theirs to read
	}
	if err != nil {
		if s.sp != nil {
			s.sp.close()
		}
		if cfg.rep != nil {
			cfg.rep.close()
		}
		return nil, err
	}
	if s.sp != nil {
		for _, cut := range s.sp.cuts {
			cfg.report(fmt.Errorf("netlog: spool %s: %s", cfg.spoolDir, cut))
		}
		s.spCtx, s.spCancel = context.WithCancel(context.Background())
		s.spDone = make(chan struct{})
		go s.drain()
	}
	s.redoKick, s.redoStop, s.redoDone = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go s.redoLoop()
	return s, nil
}

// redoLoop sends the batches that went to redo as soon as they do, rather
// than with the next write or Sync, which on a quiet stream (tail -F of a
// log at rest) may be hours away: meanwhile they are in memory only. While
// the collector is down it tries again every second. It returns when Close
// closes redoStop.
func (s *Stream) redoLoop() {
	defer close(s.redoDone)
	for {
		select {
		case <-s.redoStop:
			return
		case <-s.redoKick:
		}
		for s.sendRedo() != nil {
			select {
			case <-s.redoStop:
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// drain sends spooled batches, oldest first, as the window frees.
func (s *Stream) drain() {
	defer close(s.spDone)
	for {
		r, payload, err := s.sp.next()
		if r == nil {
			return
		}
		if err != nil {
			s.lost.Add(uint64(r.entries))
			s.cfg.report(err)
			s.sp.finish(r.seq)
			s.sp.handed()
			continue
		}
		ob := &outBatch{buf: &payload, payload: payload, comp: r.comp, raw: r.raw, entries: r.entries, seq: r.seq}
		for {
			err = s.c.SendID(s.spCtx, r.seq, ob, encoder.HeaderSize+len(payload), func(a ack, err error) { s.done(ob, a, err) })
			if !errors.Is(err, ErrUnavailable) {
				break
			}
			select { // the collector is down: the batch stays first in line
			case <-s.spCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		s.sp.handed()
		if err != nil {
			return // closing: the record stays in the spool for the next run
		}
		s.c.sendNow()
	}
}

// ID returns the stream id, chosen at random at Dial.
func (s *Stream) ID() uint64 { return s.id }

// WriteBatch compresses batch as configured and queues it for sending. It
// waits while the window is full. It is called from one goroutine at a time
// (the sink's), which keeps batches in order.
func (s *Stream) WriteBatch(batch []byte, entries int) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.writeBatchLocked(batch, entries)
}

func (s *Stream) writeBatchLocked(batch []byte, entries int) error {
	if err := s.sendRedoLocked(); err != nil {
		return err
	}
	if lim := s.pieceLimit(); lim > 0 && len(batch) > lim {
		return s.writePieces(batch, lim)
	}
	return s.writeOne(batch, entries)
}

// pieceLimit returns the most bytes of entries one batch may carry for
// the collector's limits (a payload is never larger than its entries: one
// that compression would make larger goes uncompressed), or 0 while they
// are not known.
func (s *Stream) pieceLimit() int {
	l := s.limits.Load()
	maxFrame, maxRaw := uint32(l>>32), uint32(l)
	if maxFrame == 0 || maxRaw == 0 {
		return 0
	}
	return int(min(maxFrame, maxRaw))
}

// writePieces sends batch, larger than the collector takes in one frame
// (a collector with a frame limit below the sink's batches), as several
// batches of at most lim bytes, cut between entries (lines). An entry
// larger than lim goes alone, and the collector refuses it.
func (s *Stream) writePieces(batch []byte, lim int) error {
	done := s.resume.From(batch)
	err := s.writePiecesFrom(batch, lim, &done)
	if err != nil {
		// The sink tries the same batch again: the pieces the collector
		// has, or will have, are not sent twice.
		s.resume.Save(batch, done)
	}
	return err
}

// writePiecesFrom sends batch from *done on in pieces of at most lim
// bytes, cut between lines, and moves *done past each piece sent.
func (s *Stream) writePiecesFrom(batch []byte, lim int, done *int) error {
	for *done < len(batch) {
		piece := batch[*done : *done+cutAt(batch[*done:], lim)]
		if err := s.writeOne(piece, max(bytes.Count(piece, newline), 1)); err != nil {
			return err
		}
		*done += len(piece)
	}
	return nil
}

var newline = []byte{'\n'}

// cutAt returns the length of the first piece of b: all of it if it is
// at most lim bytes, else up to the last newline within lim, or, if there
// is none, up to the first newline after (one entry over lim, alone).
func cutAt(b []byte, lim int) int {
	if len(b) <= lim {
		return len(b)
	}
	if i := bytes.LastIndexByte(b[:lim], '\n'); i >= 0 {
		return i + 1
	}
	if i := bytes.IndexByte(b[lim:], '\n'); i >= 0 {
		return lim + i + 1
	}
	return len(b)
}

// writeOne is WriteBatch for a batch that fits one frame.
func (s *Stream) writeOne(batch []byte, entries int) error {
	bp := s.bufs.get()
	payload, comp, err := s.enc.AppendPayload((*bp)[:0], batch, s.cfg.compression)
	if err != nil {
		s.bufs.put(bp)
		return err
	}
	*bp = payload
	if err := s.send(bp, payload, comp, len(batch), entries); err != nil {
		s.bufs.put(bp)
		return err
	}
	return nil
}

// maxKept is the largest buffer bufStack keeps, and KeepBatch takes.
const maxKept = 8 << 20

// KeepBatch makes a Stream a sink.Keeper: without compression it sends
// batch itself, with no copy, keeps it until the collector acks it, and
// returns a spare buffer from the batches acked before. With compression
// the payload is a new buffer anyway: it does what WriteBatch does and
// keeps nothing.
func (s *Stream) KeepBatch(batch []byte, entries int) ([]byte, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if lim := s.pieceLimit(); s.cfg.compression != encoder.None || cap(batch) > maxKept || lim > 0 && len(batch) > lim || s.redoN.Load() != 0 {
		return nil, s.writeBatchLocked(batch, entries)
	}
	// A batch of at most maxKept bytes always fits a frame.
	bp := s.bufs.get()
	spare := *bp
	*bp = batch
	if err := s.send(bp, batch, encoder.None, len(batch), entries); err != nil {
		*bp = spare
		s.bufs.put(bp)
		return nil, err
	}
	if cap(spare) < cap(batch) {
		spare = make([]byte, 0, cap(batch))
	}
	return spare[:0], nil
}

// send passes payload, held in *bp, to the collector, or to the spool. On
// success the Stream owns *bp and returns it to s.bufs once done with it; on
// error the caller keeps it.
func (s *Stream) send(bp *[]byte, payload []byte, comp encoder.Compression, raw, entries int) error {
	ob := &outBatch{buf: bp, pooled: true, payload: payload, comp: comp, raw: raw, entries: entries}
	done := func(a ack, err error) { s.done(ob, a, err) }
	size := cap(*bp) // the memory it holds, not what it sends (the header is the client's)
	var err error
	if s.sp == nil {
		err = s.c.send(s.ctx(), &call[*outBatch, ack]{req: ob, size: int64(size), done: done}, true)
	} else {
		err = s.spoolOrSend(ob, size, done)
	}
	if err != nil {
		return s.drainEnded(err)
	}
	s.c.sendNow()
	s.batches.Add(1)
	s.raw.Add(uint64(raw))
	s.wire.Add(uint64(len(payload)))
	return nil
}

// spoolOrSend sends ob at once if nothing waits in the spool and the window
// has room; otherwise it appends it to the spool, behind what is there.
//
// A spool that cannot be written (a full disk) does not fail a batch the
// collector could take: the batch is sent from memory, after every batch
// the spool holds, so that the order holds, and waits for room in the
// window as it would without a spool. Until the spool takes batches again
// they are not kept across a crash or a Close that gives up, which is
// reported once.
func (s *Stream) spoolOrSend(ob *outBatch, size int, done func(ack, error)) error {
	seq, err := s.sp.take()
	if err != nil {
		return err
	}
	ob.seq = seq
	if err := s.spoolOrSendSeq(ob, seq, size, done); err != nil {
		// Neither sent nor spooled: the number goes unused (the sink
		// tries the batch again under a new one), and the spool's count
		// of what is done must not wait for it.
		s.sp.finish(seq)
		return err
	}
	return nil
}

// spoolOrSendSeq is spoolOrSend for the batch numbered seq.
func (s *Stream) spoolOrSendSeq(ob *outBatch, seq uint64, size int, done func(ack, error)) error {
	spooled, err := s.spoolOrSendNow(ob, seq, size, done)
	if spooled {
		s.spBroken.Store(false)
	}
	if !errors.Is(err, errSpoolWrite) {
		return err
	}
	if !s.spBroken.Swap(true) {
		s.cfg.report(fmt.Errorf("%w; batches go to the collector without it until it can be written again", err))
	}
	if err := s.waitSpool(); err != nil {
		return err // the collector is down: the sink tries the batch again
	}
	return s.c.send(s.ctx(), &call[*outBatch, ack]{req: ob, size: int64(size), done: done, id: seq}, true)
}

// spoolOrSendNow is spoolOrSend with the spool locked: it sends ob if it
// can at once, or spools it, and reports whether it did the latter.
func (s *Stream) spoolOrSendNow(ob *outBatch, seq uint64, size int, done func(ack, error)) (bool, error) {
	sp := s.sp
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.idle() && !s.cfg.spoolAll {
		err := s.c.SendID(nowCtx, seq, ob, size, done)
		if err == nil {
			return false, nil
		}
		if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrUnavailable) {
			return false, err
		}
	}
	if err := sp.append(&spoolRec{seq: seq, entries: ob.entries, raw: ob.raw, comp: ob.comp}, ob.payload, s.spoolWaitOver); err != nil {
		return false, err // the caller still owns ob.buf
	}
	s.bufs.put(ob.buf) // the spool has a copy
	ob.buf, ob.pooled = nil, false
	return true, nil
}

// spoolWaitOver says when a wait on the spool (for room in it, or for its
// batches to leave it) ends, as one for room in the window does: with
// ErrUnavailable once the collector has been down for the report delay (or
// refuses this client for good), and after Drain, only at the drain's end
// (or that refusal).
func (s *Stream) spoolWaitOver() error {
	if s.draining.Load() {
		if err := s.drainCtx.Err(); err != nil {
			return err
		}
		return s.c.refused()
	}
	return s.c.Unavailable()
}

// nowCtx is a context that has ended: SendID with it takes room in the
// window if there is some, and never waits.
var nowCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// done is called once per batch with the collector's answer.
func (s *Stream) done(ob *outBatch, a ack, err error) {
	if err == nil && a.status == encoder.StatusTooLarge && a.limits != 0 && s.keepToRedo(ob, a) {
		return
	}
	if ob.pooled {
		s.bufs.put(ob.buf)
	}
	if s.sp != nil {
		if errors.Is(err, ErrClosed) && s.sp.has(ob.seq) {
			return // stays in the spool for the next run: not lost
		}
		s.sp.finish(ob.seq) // acked or refused: done either way
	}
	if err == nil && a.status == encoder.StatusOK {
		s.acked.Add(1)
		s.entries.Add(uint64(ob.entries))
		return
	}
	if err == nil {
		err = &StatusError{Status: a.status, Reason: a.reason}
		s.rejected.Add(1)
	}
	s.lost.Add(uint64(ob.entries))
	err = fmt.Errorf("netlog: batch of %d entries not delivered: %w", ob.entries, err)
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	if !errors.Is(err, ErrClosed) {
		s.cfg.report(err)
	}
}

// redoBatch is a refused batch's entries, to send again in pieces; done
// of them are sent.
type redoBatch struct {
	raw  []byte
	done int
}

// keepToRedo takes batch ob, which the collector refused as over its frame
// limits, to send again cut to them, and reports whether it did: not when
// its entries cannot be read back (a payload that does not decompress).
// The limits are the Stream's from now on.
func (s *Stream) keepToRedo(ob *outBatch, a ack) bool {
	raw, err := s.rawOf(ob)
	if err != nil {
		return false
	}
	maxFrame, maxRaw := uint32(a.limits>>32), uint32(a.limits)
	if lim := int(min(maxFrame, maxRaw)); lim == 0 || cutAt(raw, lim) == len(raw) {
		return false // one entry over the limits: cutting cannot help
	}
	s.limits.Store(a.limits)
	if ob.pooled {
		s.bufs.put(ob.buf)
	}
	if s.sp != nil {
		s.sp.finish(ob.seq) // done as this batch; its entries go as others
	}
	s.mu.Lock()
	s.redo = append(s.redo, &redoBatch{raw: raw})
	s.redoN.Store(int32(len(s.redo)))
	s.mu.Unlock()
	select {
	case s.redoKick <- struct{}{}:
	default: // redoLoop has one waiting already
	}
	if !s.redoSaid.Swap(true) {
		s.cfg.report(fmt.Errorf("netlog: the collector refused a batch of %d bytes as over its frame limits (%s); "+
			"it goes again cut to fit, after the batches sent since (so do any others sent before the limits were known), and later batches are cut before they go: "+
			"raise the collector's limit, or lower the batch size, to keep batches whole and in order",
			ob.raw, a.reason))
	}
	return true
}

// rawOf returns a copy of batch ob's entries, decompressed.
func (s *Stream) rawOf(ob *outBatch) ([]byte, error) {
	if ob.comp == encoder.None {
		return bytes.Clone(ob.payload), nil
	}
	frame, err := encoder.AppendBatchHeaderFor(nil, encoder.Batch{Stream: s.id, Seq: 1, Entries: ob.entries}, ob.comp, ob.raw, ob.payload)
	if err != nil {
		return nil, err
	}
	frame = append(frame, ob.payload...)
	d, err := encoder.NewDecoder(encoder.WithMaxFrameSize(max(len(ob.payload), 1)), encoder.WithMaxDecompressedSize(max(ob.raw, 1)))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	f, _, err := d.Decode(frame, nil)
	if err != nil {
		return nil, err
	}
	return f.Payload, nil
}

// sendRedo sends the refused batches of s.redo again, cut to the
// collector's limits, oldest first. On an error what is left stays for
// the next call.
func (s *Stream) sendRedo() error {
	if s.redoN.Load() == 0 {
		return nil
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.sendRedoLocked()
}

func (s *Stream) sendRedoLocked() error {
	for {
		s.mu.Lock()
		if len(s.redo) == 0 {
			s.mu.Unlock()
			return nil
		}
		r := s.redo[0]
		s.mu.Unlock()
		if err := s.writePiecesFrom(r.raw, max(s.pieceLimit(), 1), &r.done); err != nil {
			return err
		}
		s.mu.Lock()
		s.redo = s.redo[1:]
		s.redoN.Store(int32(len(s.redo)))
		s.mu.Unlock()
	}
}

// dropRedo empties s.redo, counts its entries lost and returns how many.
func (s *Stream) dropRedo() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var left uint64
	for _, r := range s.redo {
		left += uint64(max(bytes.Count(r.raw[r.done:], newline), 1))
	}
	s.redo = nil
	s.redoN.Store(0)
	s.lost.Add(left)
	return left
}

func (s *Stream) takeErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.err
	s.err = nil
	return err
}

// Sync returns once every batch written before it is acked, or with the
// error of a batch the collector refused since the last Sync, or with
// ErrUnavailable while the collector is unreachable past the report delay
// (after Drain: once the drain timeout has ended).
func (s *Stream) Sync() error {
	for {
		if err := s.sendRedo(); err != nil {
			return errors.Join(s.takeErr(), s.drainEnded(err))
		}
		if err := s.waitSpool(); err != nil {
			return errors.Join(s.takeErr(), s.drainEnded(err))
		}
		err := s.c.Wait(s.ctx())
		if s.drainOver(err) {
			err = s.drainEnded(err)
			s.drainFailed.Store(true) // Close need not say it again
		}
		if err == nil && s.redoN.Load() != 0 {
			// Batches refused as over the collector's limits while we
			// waited go again, cut to them: wait for those too. Each
			// round cuts smaller, down to lines over the limits alone,
			// which are given up.
			continue
		}
		if rerr := s.takeErr(); rerr != nil {
			err = errors.Join(rerr, err)
		}
		return err
	}
}

// Drain makes a Stream a sink.Drainer: it starts the drain timeout
// (WithDrainTimeout), which Close would otherwise start, and until it ends
// WriteBatch, KeepBatch and Sync wait for a collector that is down instead
// of returning ErrUnavailable after the report delay. sink.Writer.Close
// calls it first, so that the batches it still holds, and its Sync, get the
// whole drain timeout to reach a collector that comes back, as those in the
// window do.
func (s *Stream) Drain() {
	s.drainOnce.Do(func() {
		timed, cancelTimeout := context.WithTimeout(context.Background(), s.cfg.drain)
		ctx, cancel := context.WithCancelCause(timed)
		s.drainCtx, s.drainCancel = ctx, func() { cancel(nil); cancelTimeout() }
		s.draining.Store(true)
		s.c.WaitOutages(s.drainCtx)
		if s.cfg.giveUp > 0 {
			s.giveUpDone = make(chan struct{})
			go s.watchGiveUp(cancel)
		}
	})
}

// errGaveUp ends a drain whose collector has been unreachable for the
// give-up time (WithGiveUpAfter).
var errGaveUp = errors.New("netlog: gave up on the collector")

// watchGiveUp ends the drain with errGaveUp once the collector has been
// unreachable for the give-up time, or returns when the drain ends.
func (s *Stream) watchGiveUp(cancel context.CancelCauseFunc) {
	defer close(s.giveUpDone)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.drainCtx.Done():
			return
		case <-t.C:
		}
		down := s.c.downFor()
		if down >= s.cfg.giveUp {
			cancel(fmt.Errorf("%w: unreachable for %v", errGaveUp, down.Round(time.Millisecond)))
			return
		}
		// While connected, look again soon: the connection may drop
		// at any moment.
		wait := 100 * time.Millisecond
		if down > 0 {
			wait = s.cfg.giveUp - down
		}
		t.Reset(min(wait, s.cfg.giveUp))
	}
}

// drainOver reports whether err is the end of the drain: its timeout, or
// the give-up time.
func (s *Stream) drainOver(err error) bool {
	return s.draining.Load() && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, errGaveUp))
}

// ctx is the context batches and Sync wait with: none before Drain, the
// drain timeout's after.
func (s *Stream) ctx() context.Context {
	if s.draining.Load() {
		return s.drainCtx
	}
	return context.Background()
}

// drainEnded says what err means when it is the end of the drain (its
// timeout, or the give-up time): the collector did not take the batches in
// time.
func (s *Stream) drainEnded(err error) error {
	if !s.drainOver(err) {
		return err
	}
	if derr := s.c.downErr(); derr != nil { // past the report delay or not
		err = fmt.Errorf("%w: %w", ErrUnavailable, derr)
	}
	if errors.Is(context.Cause(s.drainCtx), errGaveUp) {
		return fmt.Errorf("netlog: the collector was unreachable for the give-up time (%v) before it took every batch: %w", s.cfg.giveUp, err)
	}
	return fmt.Errorf("netlog: the drain timeout (%v) ended before the collector took every batch: %w", s.cfg.drain, err)
}

// waitSpool waits until every batch spooled so far has left the spool for
// the window, or returns ErrUnavailable while the collector is down (after
// Drain: context.DeadlineExceeded when the drain timeout ends, or
// ErrUnavailable at once if the collector refuses the client for good).
func (s *Stream) waitSpool() error {
	if s.sp == nil {
		return nil
	}
	s.sp.mu.Lock()
	target := s.sp.nextSeq - 1
	s.sp.mu.Unlock()
	for s.sp.pendingUpTo(target) {
		if err := s.spoolWaitOver(); err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// Close waits up to the drain timeout (from Drain, if it was called) for
// every batch to be acked, through an outage of the collector, then closes
// the connection and stops every goroutine. Batches not acked by
// then are counted in Stats().Lost and reported in the error, except, with
// a spool, those in the spool: they stay on disk for the next Dial with the
// same directory. Later calls return the same error.
func (s *Stream) Close() error {
	s.close.Do(func() {
		s.Drain() // starts the drain timeout, unless sink.Writer.Close did
		close(s.redoStop)
		<-s.redoDone // within the drain timeout: its sends wait with it
		var errs []error
		var redoErr, spoolErr error
		for {
			// Batches refused as over the collector's limits while the
			// others were acked go again, cut to them, until none is left
			// or the drain timeout ends.
			if redoErr = s.sendRedo(); redoErr != nil {
				break
			}
			if s.sp != nil {
				// At the drain timeout's end (or a refusal's) what is
				// left stays in the spool, which is said below.
				spoolErr = s.waitSpool()
			}
			if s.c.Wait(s.drainCtx) != nil || s.redoN.Load() == 0 {
				break
			}
		}
		if err := s.c.Shutdown(s.drainCtx); err != nil && !(s.drainFailed.Load() && s.drainOver(err)) {
			errs = append(errs, err)
		}
		if left := s.dropRedo(); left > 0 {
			// Refused as over the limits, and not sent again in time (or
			// refused while the connection closed).
			if redoErr == nil {
				redoErr = ErrClosed
			}
			errs = append(errs, fmt.Errorf("netlog: %d entries refused as over the collector's frame limits not sent again: %w", left, s.drainEnded(redoErr)))
		}
		s.drainCancel()
		if s.giveUpDone != nil {
			<-s.giveUpDone
		}
		if s.sp != nil {
			s.spCancel()
			left := s.sp.close()
			<-s.spDone
			if left > 0 {
				err := fmt.Errorf("netlog: %d batches stay in the spool %s for the next run", left, s.cfg.spoolDir)
				if spoolErr != nil { // why they did not leave it
					err = fmt.Errorf("%w: %w", err, s.drainEnded(spoolErr))
				}
				errs = append(errs, err)
			}
		}
		if rerr := s.takeErr(); rerr != nil && !errors.Is(rerr, ErrClosed) {
			errs = append(errs, rerr)
		}
		s.enc.Close()
		s.dec.Close()
		s.bufs.close()
		if s.cfg.rep != nil {
			s.cfg.rep.close() // the handler has had every error when Close returns
		}
		s.cerr = errors.Join(errs...)
	})
	return s.cerr
}

// Stats returns the Stream's counters.
func (s *Stream) Stats() StreamStats {
	return StreamStats{
		Batches:     s.batches.Load(),
		Acked:       s.acked.Load(),
		Entries:     s.entries.Load(),
		Lost:        s.lost.Load() + s.spoolDropped(),
		Spooled:     s.spooled(),
		Rejected:    s.rejected.Load(),
		RawBytes:    s.raw.Load(),
		WireBytes:   s.wire.Load(),
		ClientStats: s.c.Stats(),
	}
}

func (s *Stream) spooled() uint64 {
	if s.sp == nil {
		return 0
	}
	s.sp.mu.Lock()
	defer s.sp.mu.Unlock()
	var n uint64
	for _, r := range s.sp.bySeq {
		n += uint64(r.entries)
	}
	return n
}

func (s *Stream) spoolDropped() uint64 {
	if s.sp == nil {
		return 0
	}
	s.sp.mu.Lock()
	defer s.sp.mu.Unlock()
	return s.sp.dropped
}

// streamCodec is the client half of the log protocol.
type streamCodec struct {
	s      *Stream
	client atomic.Pointer[Client[*outBatch, ack]] // set once Dial has it
}

// pending finds a batch still waiting for its answer (Client.pendingReq), or
// nothing while Dial has not made the client yet.
func (c *streamCodec) pending(seq uint64) (*outBatch, bool) {
	if cl := c.client.Load(); cl != nil {
		return cl.pendingReq(seq)
	}
	return nil, false
}

func (c *streamCodec) Handshake(conn net.Conn) error {
	s := c.s
	hello, err := AppendHello(nil, Hello{Version: ProtocolVersion, StreamID: s.id, Name: s.cfg.stream, Token: s.cfg.token})
	if err != nil {
		return err
	}
	if _, err := conn.Write(hello); err != nil {
		return err
	}
	f, err := readOne(conn, s.dec)
	if err != nil {
		return err
	}
	if f.Kind == KindGoodbye {
		if st := encoder.Status(f.Flags); st != encoder.StatusOK {
			return &StatusError{Status: st, Reason: string(f.Payload)}
		}
		return fmt.Errorf("%w: goodbye with status ok in the handshake", ErrProtocol)
	}
	w, err := ParseWelcome(f)
	if err != nil {
		return err
	}
	if w.Status != encoder.StatusOK {
		return &StatusError{Status: w.Status, Reason: w.Reason}
	}
	if w.Stream != s.id {
		return fmt.Errorf("%w: welcome for stream %x, we are %x", ErrProtocol, w.Stream, s.id)
	}
	s.limits.Store(f.LastSeq) // the collector's frame limits (0: not said)
	s.idle.Store(int64(w.Idle))
	if s.sp != nil {
		moved, err := s.sp.past(w.Written)
		if moved {
			s.cfg.report(fmt.Errorf("netlog: the collector has written batches up to %d for stream %x, past this client's numbering: "+
				"the spool %s went back (restored or copied); new batches are numbered after %d, and any numbered up to it "+
				"since the spool went back are taken for batches written before, and lost", w.Written, s.id, s.cfg.spoolDir, w.Written))
		}
		return err
	}
	return nil
}

// KeepAlive is how often the client must ping at least, for the
// collector of the last handshake: a third of its idle timeout, so that
// a quiet connection is never closed as idle (0: it did not say).
func (c *streamCodec) KeepAlive() time.Duration {
	return time.Duration(c.s.idle.Load()) / 3
}

// readOne reads exactly one frame from r, without reading ahead.
func readOne(r io.Reader, d *encoder.Decoder) (encoder.Frame, error) {
	var hdr [encoder.HeaderSize]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if n >= 4 { // enough to tell, whether the peer then closed or waits
			if _, herr := d.ParseHeader(hdr[:]); errors.Is(herr, encoder.ErrBadMagic) {
				return encoder.Frame{}, notSnail(hdr[:n])
			}
		}
		return encoder.Frame{}, err
	}
	h, err := d.ParseHeader(hdr[:])
	if errors.Is(err, encoder.ErrBadMagic) {
		return encoder.Frame{}, notSnail(hdr[:])
	}
	if err != nil {
		return encoder.Frame{}, err
	}
	buf := make([]byte, encoder.HeaderSize+int(h.PayloadLen))
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[encoder.HeaderSize:]); err != nil {
		return encoder.Frame{}, err
	}
	f, _, err := d.Decode(buf, nil)
	return f, err
}

// notSnail is the error of a peer that answered the handshake with
// something other than a frame: the address is another server's (the
// collector's metrics listener, an SSH or HTTP server). Its first line says
// which.
func notSnail(answer []byte) error {
	if i := bytes.IndexByte(answer, '\n'); i >= 0 {
		answer = answer[:i]
	}
	return fmt.Errorf("%w: the peer is not a snail collector: it answered %q", ErrProtocol, bytes.TrimSuffix(answer, []byte("\r")))
}

func (c *streamCodec) AppendRequest(dst []byte, id uint64, b *outBatch) ([]byte, []byte, error) {
	out, err := encoder.AppendBatchHeaderFor(dst, encoder.Batch{Stream: c.s.id, Seq: id, Entries: b.entries}, b.comp, b.raw, b.payload)
	if err != nil {
		return dst, nil, err
	}
	return out, b.payload, nil
}

func (c *streamCodec) AppendPing(dst []byte) []byte { return AppendPing(dst) }

// Final makes the codec a Finisher: after a refusal in a goodbye the
// collector closes the connection, and the refusal is reported already.
func (c *streamCodec) Final(a ack) bool { return a.bye }

func (c *streamCodec) NewResponseReader(r io.Reader) ResponseReader[ack] {
	return &ackReader{r: encoder.NewReader(r, c.s.dec), id: c.s.id, batch: c.pending}
}

type ackReader struct {
	r     *encoder.Reader
	id    uint64
	batch func(seq uint64) (*outBatch, bool)
}

func (a *ackReader) ReadResponse() (uint64, uint64, ack, error) {
	f, err := a.r.Next()
	if err != nil {
		return 0, 0, ack{}, err
	}
	return ackOf(f, a.id, a.batch)
}

// ParseResponse makes the codec a ResponseParser: the Stream polls for acks
// after each batch it sends.
func (c *streamCodec) ParseResponse(b []byte) (int, uint64, uint64, ack, error) {
	if len(b) < encoder.HeaderSize {
		return 0, 0, 0, ack{}, nil
	}
	h, err := c.s.dec.ParseHeader(b[:encoder.HeaderSize])
	if err != nil {
		return 0, 0, 0, ack{}, err
	}
	n := encoder.HeaderSize + int(h.PayloadLen)
	if len(b) < n {
		return 0, 0, 0, ack{}, nil
	}
	f, _, err := c.s.dec.Decode(b[:n], nil)
	if err != nil {
		return 0, 0, 0, ack{}, err
	}
	first, last, a, err := ackOf(f, c.s.id, c.pending)
	return n, first, last, a, err
}

// refused reports whether goodbye f, which names a batch, makes the client
// give that batch up: always when the collector checked the frame whole,
// and when it went by the frame's header only if the batch as batch finds
// it (payload as sent, decompressed size) is over the limits the goodbye
// gives, so that a header damaged on the way costs a resend, not the batch.
func refused(f encoder.Frame, batch func(seq uint64) (*outBatch, bool)) bool {
	maxFrame, maxRaw := int64(f.LastSeq>>32), int64(uint32(f.LastSeq))
	if maxFrame == 0 && maxRaw == 0 {
		return true
	}
	b, ok := batch(f.Seq)
	return ok && (int64(len(b.payload)) > maxFrame || int64(b.raw) > maxRaw)
}

// ackOf reads the answer in frame f to stream id; batch finds a batch
// still waiting for its answer by sequence number.
func ackOf(f encoder.Frame, id uint64, batch func(seq uint64) (*outBatch, bool)) (uint64, uint64, ack, error) {
	switch f.Kind {
	case encoder.KindAck:
		if f.Stream != id {
			return 0, 0, ack{}, fmt.Errorf("%w: ack for stream %x, we are %x", ErrProtocol, f.Stream, id)
		}
		if f.Status == encoder.StatusOK {
			return f.Seq, f.LastSeq, ack{}, nil
		}
		se := &StatusError{Status: f.Status, Reason: string(f.Payload)}
		if se.Retryable() {
			return 0, 0, ack{}, se // ends the connection: the batches go again
		}
		return f.Seq, f.LastSeq, ack{status: f.Status, reason: se.Reason}, nil
	case KindGoodbye:
		st := encoder.Status(f.Flags)
		if f.Stream == id && f.Seq != 0 && st != encoder.StatusOK && refused(f, batch) {
			// The collector names a batch it can never take (see
			// AppendRefusal): it is refused, and the connection that
			// ends with this goodbye is made again for the others.
			return f.Seq, f.Seq, ack{status: st, reason: string(f.Payload), limits: f.LastSeq, bye: true}, nil
		}
		return 0, 0, ack{}, &StatusError{Status: st, Reason: string(f.Payload)}
	}
	return 0, 0, ack{}, fmt.Errorf("%w: unexpected %v frame", ErrProtocol, f.Kind)
}

// bufStack keeps the payload buffers of acked batches for the next ones,
// most recently freed on top: that one is the likeliest to still be in a
// cache. Unlike a sync.Pool, garbage collections do not empty it, so a
// Stream under load allocates its buffers once, up to the window, and then
// reuses them. It holds at most one buffer more than the window has frames,
// each of at most 8 MiB, and gives back the buffers a whole period
// (spareShrinkEvery) did not need, so that a burst does not keep them for
// the life of the Stream.
type bufStack struct {
	mu      sync.Mutex
	free    []*[]byte
	max     int
	every   time.Duration // the shrink period
	minFree int           // fewest buffers free at once in this period
	t       *time.Timer   // ends the period; nil while the stack is empty
	closed  bool
}

// spareShrinkEvery is the period over which a Stream's spare buffers that
// were not needed are given back.
const spareShrinkEvery = time.Minute

func (b *bufStack) get() *[]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := len(b.free); n > 0 {
		p := b.free[n-1]
		b.free[n-1] = nil
		b.free = b.free[:n-1]
		b.minFree = min(b.minFree, n-1)
		return p
	}
	return new([]byte)
}

func (b *bufStack) put(p *[]byte) {
	if cap(*p) > maxKept {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.free) >= b.max || b.closed {
		return
	}
	b.free = append(b.free, p)
	if b.t == nil && b.every > 0 {
		b.minFree = len(b.free)
		b.t = time.AfterFunc(b.every, b.shrink)
	}
}

// shrink ends a period: the buffers that stayed in the stack all through
// it, at its bottom, are given back to the garbage collector.
func (b *bufStack) shrink() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	k := b.minFree
	n := copy(b.free, b.free[k:])
	clear(b.free[n:])
	b.free = b.free[:n]
	b.minFree = n
	if n == 0 {
		b.t = nil
		return
	}
	b.t.Reset(b.every)
}

// close gives every buffer back and ends the periods.
func (b *bufStack) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	clear(b.free)
	b.free = nil
	if b.t != nil {
		b.t.Stop()
	}
}
