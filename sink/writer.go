package sink

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/snail-log/snail/batcher"
)

// Destination is where a Writer sends batches: batch holds entries whole
// entries back to back. A Destination is called from one goroutine at a
// time. filelog.File satisfies it.
type Destination interface {
	WriteBatch(batch []byte, entries int) error
	Sync() error
	Close() error
}

// A Keeper is a Destination that can keep a batch's buffer instead of
// copying it, as netlog's Stream does while it waits for the collector's
// ack. KeepBatch does what WriteBatch does; when it keeps batch it returns a
// spare buffer of at least cap(batch) bytes, which the Writer fills next in
// its place. It returns a nil spare when it did not keep batch (the Writer
// reuses it), and always does when it returns an error.
type Keeper interface {
	KeepBatch(batch []byte, entries int) (spare []byte, err error)
}

// A VectorWriter is a Destination that can write a batch given in pieces,
// in order, with one system call (writev), as filelog's File does. The
// Writer's goroutines fill a batch in chunks, one per core; a batch that
// ends in several pieces goes to WriteBatchVec as they are, which saves
// moving them together first. WriteBatchVec must not keep the pieces.
type VectorWriter interface {
	WriteBatchVec(pieces [][]byte, entries int) error
}

// A Drainer is a Destination that returns an error at once while its end
// is unreachable, but can wait for it, within a bound of its own, when the
// Writer closes: netlog's Stream returns netlog.ErrUnavailable once the
// collector has been down for the report delay, and waits for it up to its
// drain timeout. Close calls Drain before it passes on the last batches:
// from then on the Drainer's writes and Sync wait until its bound ends,
// and the batches the Writer still held are not given up while its end
// may yet come back.
type Drainer interface {
	Drain()
}

// Errors returned by a Writer.
var (
	// ErrClosed is returned by Write and Sync after Close.
	ErrClosed = errors.New("sink: closed")
	// ErrInvalidOption wraps configuration errors of New.
	ErrInvalidOption = errors.New("sink: invalid option")
)

// Defaults of New.
const (
	DefaultBatchBytes = 1 << 20
	DefaultBuffers    = 4
	DefaultMaxBuffers = 16
	DefaultWindow     = 100 * time.Millisecond

	retryMin = 10 * time.Millisecond
	retryMax = time.Second
)

// Writer batches log entries from any number of goroutines and passes whole
// batches to a Destination from a goroutine of its own. It is an io.Writer,
// a zapcore.WriteSyncer and a zerolog.LevelWriter. Write copies the entry
// (callers may reuse their buffer) and never does I/O.
//
// Memory is bounded: at most max buffers x batch bytes of entries are held
// (16 MiB by default, of which 4 MiB are allocated by New and the rest only
// when writers outpace the destination or its goroutine), plus one entry
// larger than a batch while its writer waits for it to be written, plus
// the lanes' bookkeeping (a 32 KiB table and 64 bytes per core and per
// chunk: under 64 KiB by default). A Keeper destination holds the batches
// it keeps within its own bounds (netlog's window) and gives the Writer a
// buffer back for each.
//
// Errors of the destination are sticky, as with bufio: once a batch fails,
// Write returns the error (without taking the entry) and Sync returns it,
// and the error handler sees it. The failed batch is kept and retried with
// backoff (10ms doubling to 1s); when a retry succeeds writing resumes, so
// a disk that filled up and was freed loses nothing. Only a Sync that is
// already waiting for the batch, or Close, makes the Writer give a failing
// batch up: its error is returned to them, its entries are counted in
// Stats.Lost, and the next entries are taken again to probe the
// destination.
//
// The creator must call Close: it drains every entry, closes the
// destination and stops the goroutines. A Writer is safe for concurrent use.
type Writer struct {
	dst       Destination
	keeper    Keeper       // dst, when it can keep batches
	vw        VectorWriter // dst, when it writes batches in pieces
	b         *batcher.Bytes
	dropBelow Level
	onError   func(error)
	notice    bool

	failing atomic.Bool
	errMu   sync.Mutex
	err     error // the destination's last error while failing

	closing chan struct{} // closed when Close starts

	dropped     [numLevels]atomic.Uint64 // since New
	pendingDrop atomic.Uint64            // dropped since the last notice
	noticeMu    sync.Mutex
	noticed     [numLevels]uint64
	noticeBuf   []byte

	lost      atomic.Uint64
	closeOnce sync.Once
	closeErr  error
}

var _ zerolog.LevelWriter = (*Writer)(nil)

type config struct {
	batch     []batcher.Option // buffer size, count and window, validated by the batcher
	buffers   int              // WithBuffers, or 0
	most      int              // WithMaxBuffers, or 0
	dropBelow Level
	onError   func(error)
	notice    bool
}

// Option configures a Writer.
type Option func(*config) error

// WithBatchBytes sets the size of one batch buffer. Defaults to 1 MiB.
func WithBatchBytes(n int) Option { return batchOption(batcher.WithBatchBytes(n)) }

// WithBuffers sets the number of batch buffers allocated by New. Defaults to
// 4; at least 2. Given without WithMaxBuffers, it also sets the most
// buffers: the Writer never makes more.
func WithBuffers(n int) Option {
	return bufferCount("buffers", n, func(c *config) *int { return &c.buffers })
}

// WithMaxBuffers sets the most batch buffers the Writer may hold. When a
// batch is full and no buffer is free, because the destination is behind
// or the Writer's goroutine has not been scheduled yet, the Writer
// allocates one more buffer, up to this count, instead of making writers
// wait; buffers made and then not needed for a minute are given back
// (down to WithBuffers' count), so that a burst does not keep its memory
// until Close. Defaults to 16 (16 MiB with
// 1 MiB batches, 4 of them allocated by New); at least 2, and not below
// WithBuffers. The overflow policy applies once every buffer is full.
func WithMaxBuffers(n int) Option {
	return bufferCount("max buffers", n, func(c *config) *int { return &c.most })
}

// bufferCount sets the count field picks to n, at least 2; the batcher
// checks the upper bound.
func bufferCount(what string, n int, field func(*config) *int) Option {
	return func(c *config) error {
		if n < 2 {
			return fmt.Errorf("%s %d below 2", what, n)
		}
		*field(c) = n
		return nil
	}
}

// WithWindow sets how long a batch may wait for more entries before it is
// written. Defaults to 100ms: an entry reaches the destination within about
// that long even when logging is slow. Zero writes only full batches (and
// on Sync and Close).
func WithWindow(d time.Duration) Option { return batchOption(batcher.WithWindow(d)) }

func batchOption(o batcher.Option) Option {
	return func(c *config) error {
		c.batch = append(c.batch, o)
		return nil
	}
}

// WithDropBelow sets the overflow policy: while every buffer is full,
// entries below level are dropped (and counted) instead of waiting;
// entries at or above it wait. The default, TraceLevel, drops nothing;
// AllLevels drops every level.
func WithDropBelow(level Level) Option {
	return func(c *config) error {
		if level < TraceLevel || level > AllLevels {
			return fmt.Errorf("unknown level %d", level)
		}
		c.dropBelow = level
		return nil
	}
}

// WithErrorHandler sets a function called with every error of the
// destination, on the Writer's goroutine, before writers see the error.
// It may log through the Writer (a logger's "cannot write the log" entry):
// such an entry is taken if there is room, and refused with an error
// wrapping batcher.ErrReentry if there is none, since only the goroutine
// running the handler can make room. (On architectures other than amd64
// and arm64 that case waits forever.)
func WithErrorHandler(f func(error)) Option {
	return func(c *config) error {
		c.onError = f
		return nil
	}
}

// WithDropNotice turns the in-stream "snail dropped entries" record on or
// off. Defaults to on.
func WithDropNotice(on bool) Option {
	return func(c *config) error {
		c.notice = on
		return nil
	}
}

// New returns a Writer that sends batches to dst.
func New(dst Destination, opts ...Option) (*Writer, error) {
	if dst == nil {
		return nil, fmt.Errorf("%w: nil destination", ErrInvalidOption)
	}
	c := config{dropBelow: TraceLevel, notice: true}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
	}
	w := &Writer{dst: dst, dropBelow: c.dropBelow, onError: c.onError, notice: c.notice,
		closing: make(chan struct{})}
	buffers, most := DefaultBuffers, DefaultMaxBuffers
	switch {
	case c.buffers > 0 && c.most > 0:
		buffers, most = c.buffers, c.most
	case c.buffers > 0:
		buffers, most = c.buffers, c.buffers
	case c.most > 0:
		buffers, most = min(buffers, c.most), c.most
	}
	bopts := []batcher.Option{batcher.WithBatchBytes(DefaultBatchBytes), batcher.WithBuffers(buffers),
		batcher.WithMaxBuffers(most), batcher.WithWindow(DefaultWindow)}
	bopts = append(bopts, c.batch...) // the caller's settings win
	bopts = append(bopts,
		// Loggers encode between writes: yielding to keep claims on one
		// core costs them more than the cache-line moves it saves. Lanes
		// keep each core's claims in chunks of its own instead (1.5-1.8x
		// the entries/s at 8-1024 goroutines, measured with zerolog).
		batcher.WithCohort(false),
		batcher.WithLanes(true),
		batcher.WithAbort(func() error { // a failing destination releases waiting writers
			if w.failing.Load() {
				return w.stickyErr()
			}
			return nil
		}))
	if k, ok := dst.(Keeper); ok {
		w.keeper = k
		bopts = append(bopts, batcher.WithKeep(w.keep))
	} else if vw, ok := dst.(VectorWriter); ok {
		w.vw = vw
		bopts = append(bopts, batcher.WithVectors(w.outputVec))
	}
	b, err := batcher.NewBytes(w.output, bopts...)
	if err != nil {
		return nil, batcherOptionError{err}
	}
	w.b = b
	return w, nil
}

// batcherOptionError is a batcher option's error as New returns it: it is
// ErrInvalidOption and batcher.ErrInvalidOption, and says "invalid option"
// once.
type batcherOptionError struct{ err error }

func (e batcherOptionError) Error() string {
	return ErrInvalidOption.Error() + ": " + strings.TrimPrefix(e.err.Error(), batcher.ErrInvalidOption.Error()+": ")
}

func (e batcherOptionError) Unwrap() []error { return []error{ErrInvalidOption, e.err} }

// Write adds p as one entry at InfoLevel. See WriteEntry.
func (w *Writer) Write(p []byte) (int, error) { return w.WriteEntry(InfoLevel, p) }

// WriteLevel adds p as one entry at zerolog level l. See WriteEntry.
func (w *Writer) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	return w.WriteEntry(FromZerolog(l), p)
}

// WriteEntry adds p, one whole entry (for logs, a line with its newline),
// at the given level. It returns len(p) when the entry was taken, or was
// dropped by the overflow policy (counted in Stats and announced in the
// stream, as zerolog's diode does, rather than reported to the logger's
// error output for every entry). It returns the destination's error while
// the destination is failing, except for levels the overflow policy drops
// (WithDropBelow), which are taken while there is room and dropped after;
// and ErrClosed after Close.
//
// An entry at FatalLevel (zap's DPanic, Panic and Fatal, zerolog's Fatal
// and Panic, slog's levels from ERROR+4) is taken with a Sync: it is at the
// destination, with every entry before it, when WriteEntry returns, since
// the process may end right after it. zerolog's Panic, for one, panics
// without a Sync or Close.
func (w *Writer) WriteEntry(level Level, p []byte) (int, error) {
	// While the destination fails, an entry of a level that may be
	// dropped is not refused with the error: it is taken while there is
	// room, and dropped and counted after, as when the destination is
	// slow; the drop notice then accounts for it in the stream.
	if level >= w.dropBelow && w.failing.Load() {
		if err := w.stickyErr(); err != nil {
			return 0, err
		}
	}
	if w.pendingDrop.Load() != 0 && w.notice {
		w.writeNotice(false)
	}
	var err error
	if level < w.dropBelow {
		err = w.b.TryWrite(p)
	} else {
		_, err = w.b.Write(p)
	}
	switch {
	case err == nil && level >= FatalLevel:
		return len(p), w.Sync()
	case err == nil:
		return len(p), nil
	case errors.Is(err, batcher.ErrDropped):
		w.dropped[min(level, FatalLevel).index()].Add(1)
		w.pendingDrop.Add(1)
		return len(p), nil
	case errors.Is(err, batcher.ErrClosed):
		return 0, ErrClosed
	case errors.Is(err, batcher.ErrReentry):
		return 0, fmt.Errorf("sink: an entry from the error handler found no room, and only the goroutine running the handler can make some: %w", err)
	}
	return 0, err
}

// writeNotice writes the "snail dropped entries" record for the drops since
// the last one: if there is room now, or, with wait (Sync and Close, so that
// drops at the end of a stream are announced too), once there is.
func (w *Writer) writeNotice(wait bool) {
	if wait {
		w.noticeMu.Lock()
	} else if !w.noticeMu.TryLock() {
		return // another goroutine is writing it
	}
	defer w.noticeMu.Unlock()
	var counts [numLevels]uint64
	var total uint64
	for i := range counts {
		counts[i] = w.dropped[i].Load() - w.noticed[i]
		total += counts[i]
	}
	if total == 0 {
		return
	}
	b := append(w.noticeBuf[:0], `{"time":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"warn","msg":"snail dropped entries","dropped":`...)
	b = strconv.AppendUint(b, total, 10)
	for i, n := range counts {
		if n > 0 {
			b = append(b, `,"dropped_`...)
			b = append(b, (Level(i) + TraceLevel).String()...)
			b = append(b, `":`...)
			b = strconv.AppendUint(b, n, 10)
		}
	}
	b = append(b, "}\n"...)
	w.noticeBuf = b
	if wait {
		if _, err := w.b.Write(b); err != nil {
			return // failing or closed: Sync and Close report that
		}
	} else if w.b.TryWrite(b) != nil {
		return // still full: try again with the next entry
	}
	for i := range counts {
		w.noticed[i] += counts[i]
	}
	w.pendingDrop.Add(-total)
}

func (w *Writer) stickyErr() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// output is the batcher's output: it writes a batch to the destination.
func (w *Writer) output(batch []byte, entries int) error {
	_, err := w.deliver(batch, nil, entries, false)
	return err
}

// outputVec is the batcher's output for batches in pieces (VectorWriter).
func (w *Writer) outputVec(pieces [][]byte, entries int) error {
	_, err := w.deliver(nil, pieces, entries, false)
	return err
}

// keep is the batcher's output for batches a Keeper may keep.
func (w *Writer) keep(batch []byte, entries int) (spare []byte, err error) {
	return w.deliver(batch, nil, entries, true)
}

// deliver passes a batch to the destination (KeepBatch if keep,
// WriteBatchVec if it comes in pieces, else WriteBatch), retrying a failing
// one until it succeeds or Close gives it up. Meanwhile Sync returns the
// error at once (OutputFailing), and the batch stays in line: a Sync
// during an outage of the collector, or on a full disk, loses nothing.
func (w *Writer) deliver(batch []byte, pieces [][]byte, entries int, keep bool) (spare []byte, err error) {
	wait := retryMin
	var timer *time.Timer
	for {
		// An attempt made before Close started is tried again once it has:
		// a Drainer waits through an outage from then on, which it did
		// not for this attempt.
		closing := isClosed(w.closing)
		switch {
		case keep:
			spare, err = w.keeper.KeepBatch(batch, entries)
		case pieces != nil:
			err = w.vw.WriteBatchVec(pieces, entries)
		default:
			err = w.dst.WriteBatch(batch, entries)
		}
		if err == nil {
			if w.failing.Load() {
				// The batcher first: a Sync that finds the Writer
				// recovered must not find the batcher failing still.
				w.b.OutputFailing(nil)
				w.errMu.Lock()
				w.err = nil
				w.failing.Store(false)
				w.errMu.Unlock()
			}
			return spare, nil
		}
		// Report the first failure of an episode, and any change of error;
		// not every retry of the same one. The handler runs before writers
		// can see the error, so that one who got it knows the handler has.
		w.errMu.Lock()
		report := !w.failing.Load() || w.err == nil || w.err.Error() != err.Error()
		w.err = err
		w.errMu.Unlock()
		if report && w.onError != nil {
			w.onError(err)
		}
		w.failing.Store(true)
		if closing {
			// Give the batch up: its error goes to Close through the
			// batcher. Nothing is being retried now, so the next
			// entries are taken and probe the destination.
			w.lost.Add(uint64(entries))
			w.b.OutputFailing(nil)
			w.failing.Store(false)
			return nil, err
		}
		if report {
			w.b.OutputFailing(err) // a Sync waiting, or to come, returns it
			w.b.Wake()             // writers waiting for space get it instead
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
		case <-w.closing:
			timer.Stop()
		}
		wait = min(2*wait, retryMax)
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Sync returns once every entry written before it has been passed to the
// destination and the destination has synced (for files: written, and
// fsynced when so configured). While the destination is failing it returns
// the error at once; batches keep being retried.
func (w *Writer) Sync() error {
	if w.failing.Load() {
		if err := w.stickyErr(); err != nil {
			return err
		}
	}
	if w.pendingDrop.Load() != 0 && w.notice {
		w.writeNotice(true)
	}
	err := w.b.Flush()
	if errors.Is(err, batcher.ErrClosed) {
		return ErrClosed
	}
	if err != nil {
		return err
	}
	return w.dst.Sync()
}

// Close writes every entry taken, syncs and closes the destination and stops
// the Writer's goroutines. A destination that is a Drainer gets its own
// bound to take the last batches. Close returns the errors met on the way;
// later calls return the same. From the error handler it does nothing and
// returns an error wrapping batcher.ErrReentry.
func (w *Writer) Close() error {
	if w.b.InOutput() {
		// The error handler (or the destination): Close would wait for
		// the goroutine running it to stop.
		return fmt.Errorf("sink: Close from the error handler would wait for itself; call it from another goroutine: %w", batcher.ErrReentry)
	}
	w.closeOnce.Do(func() {
		if d, ok := w.dst.(Drainer); ok {
			d.Drain() // before closing: an attempt that sees closing is drained
		}
		close(w.closing)
		if w.pendingDrop.Load() != 0 && w.notice {
			w.writeNotice(true)
		}
		errs := []error{w.b.Close()}
		errs = append(errs, w.dst.Sync(), w.dst.Close())
		w.closeErr = joinDistinct(errs...)
	})
	return w.closeErr
}

// joinDistinct joins errs as errors.Join does, without an error whose
// message an earlier one had: each batch given up at Close fails with the
// same error, which the caller needs to read once.
func joinDistinct(errs ...error) error {
	var flat []error
	seen := map[string]bool{}
	var add func(err error)
	add = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok && isJoin(err, j.Unwrap()) {
			for _, e := range j.Unwrap() {
				add(e)
			}
			return
		}
		if err != nil && !seen[err.Error()] {
			seen[err.Error()] = true
			flat = append(flat, err)
		}
	}
	for _, err := range errs {
		add(err)
	}
	return errors.Join(flat...)
}

// isJoin reports whether err, which wraps errs, says nothing of its own,
// as errors.Join's errors do (fmt.Errorf's with several %w do).
func isJoin(err error, errs []error) bool {
	var b strings.Builder
	for i, e := range errs {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e != nil {
			b.WriteString(e.Error())
		}
	}
	return b.String() == err.Error()
}

// Stats are a Writer's counters.
type Stats struct {
	Written uint64 // entries handed to the destination successfully
	Batches uint64 // batches handed to the destination
	Dropped uint64 // entries dropped by the overflow policy, all levels
	// DroppedByLevel counts drops per level, from TraceLevel to FatalLevel.
	DroppedByLevel [numLevels]uint64
	Lost           uint64 // entries in batches given up after a destination error
	// Stalls counts writes that waited because every buffer was full: the
	// destination was behind and the Block policy held the caller.
	Stalls  uint64
	Failing bool // the destination's last write failed
	// Buffers is the number of batch buffers held: those allocated by New
	// and those made since, up to WithMaxBuffers, and not given back yet.
	Buffers int
}

// Stats returns the Writer's counters.
func (w *Writer) Stats() Stats {
	bs := w.b.Stats()
	s := Stats{Batches: bs.Batches, Lost: w.lost.Load(), Stalls: bs.Stalls, Failing: w.failing.Load(), Buffers: bs.Buffers}
	for i := range s.DroppedByLevel {
		s.DroppedByLevel[i] = w.dropped[i].Load()
		s.Dropped += s.DroppedByLevel[i]
	}
	s.Written = bs.Delivered - s.Lost
	return s
}
