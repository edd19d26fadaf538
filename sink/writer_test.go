package sink

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
	"github.com/snail-log/snail/batcher"
)

func TestNewOptions(t *testing.T) {
	for _, opts := range [][]Option{{WithBatchBytes(0)}, {WithBuffers(1)}, {WithWindow(-1)}, {WithDropBelow(42)},
		{WithMaxBuffers(1)}, {WithBuffers(8), WithMaxBuffers(4)}} {
		_, err := New(&memDest{}, opts...)
		if !errors.Is(err, ErrInvalidOption) {
			t.Fatalf("New = %v, want ErrInvalidOption", err)
		}
		if n := strings.Count(err.Error(), "invalid option"); n != 1 {
			t.Errorf("%q says invalid option %d times", err, n)
		}
	}
	if _, err := New(&memDest{}, WithWindow(-1)); !errors.Is(err, batcher.ErrInvalidOption) {
		t.Errorf("a batcher option's error is not batcher.ErrInvalidOption: %v", err)
	}
	if _, err := New(nil); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("New(nil) = %v", err)
	}
}

func TestWriterCopiesSyncsAndCloses(t *testing.T) {
	d := &memDest{}
	w := newTestWriter(t, d)
	buf := []byte("first\n")
	if n, err := w.Write(buf); n != len(buf) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	copy(buf, "XXXXX\n") // the caller reuses its buffer at once
	w.Write([]byte("second\n"))
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := d.String(); got != "first\nsecond\n" || d.syncs != 1 {
		t.Fatalf("after Sync: %q, %d syncs", got, d.syncs)
	}
	w.Write([]byte("third\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := d.String(); got != "first\nsecond\nthird\n" || !d.closed {
		t.Fatalf("after Close: %q, closed=%v", got, d.closed)
	}
	if _, err := w.Write([]byte("x\n")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v", err)
	}
	if err := w.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close = %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// TestStickyErrorsAndRecovery: a failing destination's error comes back from
// Write, Sync and the handler; the failing batch is retried, and once the
// destination recovers it is written, in order.
func TestStickyErrorsAndRecovery(t *testing.T) {
	for _, dk := range dests {
		t.Run(dk.name, func(t *testing.T) { testStickyErrorsAndRecovery(t, dk.make) })
	}
}

func testStickyErrorsAndRecovery(t *testing.T, mk func() (Destination, *memDest)) {
	dst, d := mk()
	var handled atomic.Int32
	w := newTestWriter(t, dst, WithWindow(5*time.Millisecond), WithErrorHandler(func(err error) { handled.Add(1) }))
	full := errors.New("no space left on device")

	// A Sync waiting on a failing batch gets the error, and the batch
	// stays: it is retried. While that lasts the error is sticky: writes
	// are refused with it, and Sync returns it at once.
	d.setFail(full)
	w.Write([]byte("a\n"))
	w.Write([]byte("b\n"))
	if err := w.Sync(); !errors.Is(err, full) {
		t.Fatalf("Sync = %v, want %v", err, full)
	}
	if st := w.Stats(); st.Lost != 0 || !st.Failing {
		t.Fatalf("stats %+v, want none lost, failing", st)
	}
	if _, err := w.Write([]byte("c\n")); !errors.Is(err, full) {
		t.Fatalf("Write while failing = %v, want the sticky error", err)
	}
	if err := w.Sync(); !errors.Is(err, full) {
		t.Fatalf("Sync while failing = %v, want the sticky error at once", err)
	}
	if n := handled.Load(); n != 1 {
		t.Fatalf("error handler called %d times, want once per failure episode", n)
	}

	// The destination recovers: the retried batch goes through.
	d.setFail(nil)
	waitFor(t, func() bool { return !w.Stats().Failing })
	w.Write([]byte("e\n"))
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := d.String(); got != "a\nb\ne\n" {
		t.Fatalf("destination has %q, want the retried a and b, then e", got)
	}
	if st := w.Stats(); st.Lost != 0 || st.Written != 3 {
		t.Fatalf("stats %+v, want none lost, 3 written", st)
	}

	// Failing again: a second episode, reported again.
	d.setFail(full)
	w.Write([]byte("f\n"))
	if err := w.Sync(); !errors.Is(err, full) {
		t.Fatalf("Sync = %v, want %v", err, full)
	}
	if n := handled.Load(); n != 2 {
		t.Fatalf("error handler called %d times, want 2 for two episodes", n)
	}
	d.setFail(nil)
	if err := w.Sync(); err != nil && !errors.Is(err, full) {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !w.Stats().Failing })
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := d.String(); got != "a\nb\ne\nf\n" {
		t.Fatalf("destination has %q, want f retried too", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCloseWhileFailingReportsLoss(t *testing.T) {
	d := &memDest{}
	w, _ := New(d)
	boom := errors.New("gone")
	d.setFail(boom)
	w.Write([]byte("x\n"))
	waitFor(t, func() bool { return w.Stats().Failing }) // being retried
	if err := w.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close = %v, want %v", err, boom)
	}
	if st := w.Stats(); st.Lost != 1 {
		t.Fatalf("lost %d, want 1", st.Lost)
	}
}

// drainDest is a memDest and a Drainer that fails fast (a collector down
// past the report delay) until Drain, and then takes every batch: one that
// comes back within the drain timeout. Its first attempt is under way when
// Close starts, and fails once Drain is called.
type drainDest struct {
	memDest
	attempt chan struct{} // closed when the first WriteBatch is under way
	drained chan struct{} // closed by Drain
	once    sync.Once
}

var errDown = errors.New("down")

func (d *drainDest) WriteBatch(b []byte, n int) error {
	select {
	case <-d.drained:
		return d.memDest.WriteBatch(b, n)
	default:
	}
	d.once.Do(func() { close(d.attempt) })
	<-d.drained
	return errDown // failed fast, as before Drain
}

func (d *drainDest) Drain() { close(d.drained) }

// TestCloseDrainsABatchThatFailedAsItStarted: a batch whose attempt failed
// as Close started, before the destination was draining, is tried again
// and delivered, not given up with Close's start.
func TestCloseDrainsABatchThatFailedAsItStarted(t *testing.T) {
	d := &drainDest{attempt: make(chan struct{}), drained: make(chan struct{})}
	w, err := New(d, WithWindow(time.Millisecond), WithErrorHandler(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("x\n"))
	<-d.attempt
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if st := w.Stats(); st.Lost != 0 || d.String() != "x\n" {
		t.Errorf("lost %d, destination has %q; want x delivered", st.Lost, d.String())
	}
}

// stalledWriter returns a Writer with two 512-byte buffers that drops below
// level, over a destination stalled until gate is closed, and a 100-byte
// line to fill it with; opts come after those.
func stalledWriter(t *testing.T, below Level, opts ...Option) (*Writer, *memDest, chan struct{}, []byte) {
	t.Helper()
	gate := make(chan struct{})
	d := &memDest{gate: gate}
	opts = append([]Option{WithDropBelow(below), WithBatchBytes(512), WithBuffers(2), WithWindow(0)}, opts...)
	w := newTestWriter(t, d, opts...)
	return w, d, gate, []byte(strings.Repeat("i", 99) + "\n")
}

// TestDropBelowPerLevel: with the destination stalled, Debug and Info are
// dropped and counted, Warn waits; when space returns a notice record
// reports the drops by level.
func TestDropBelowPerLevel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, d, gate, line := stalledWriter(t, WarnLevel)
		for range 50 {
			w.WriteEntry(InfoLevel, line)
			w.WriteEntry(DebugLevel, line)
		}
		st := w.Stats()
		if st.DroppedByLevel[InfoLevel.index()] == 0 || st.DroppedByLevel[DebugLevel.index()] == 0 {
			t.Fatalf("nothing dropped with the destination stalled: %+v", st)
		}
		warned := make(chan struct{})
		go func() {
			w.WriteEntry(WarnLevel, []byte("warn\n"))
			close(warned)
		}()
		synctest.Wait() // everything in the bubble is blocked: the Warn writer too
		select {
		case <-warned:
			t.Fatal("a Warn entry was not held back while every buffer was full")
		default:
		}
		if st := w.Stats(); st.Stalls != 1 {
			t.Fatalf("stats %+v, want the Warn writer's one stall (drops do not stall)", st)
		}
		d.mu.Lock()
		d.gate = nil
		d.mu.Unlock()
		close(gate)
		<-warned
		w.WriteEntry(InfoLevel, []byte("after\n"))
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		st = w.Stats()
		notice := fmt.Sprintf(`{"level":"warn","msg":"snail dropped entries","dropped":%d,"dropped_debug":%d,"dropped_info":%d}`,
			st.Dropped, st.DroppedByLevel[DebugLevel.index()], st.DroppedByLevel[InfoLevel.index()])
		ls := noticeTimeless(d.lines())
		if ls[len(ls)-2] != notice || ls[len(ls)-1] != "after" {
			t.Fatalf("last lines %q, want the notice %s then the entry", ls[len(ls)-3:], notice)
		}
		if got := int(st.Dropped) + len(ls) - 1; got != 100+2 {
			t.Fatalf("written + dropped = %d, want 102", got)
		}
		w.Close()
	})
}

// TestDropBelowWhileFailing: while the destination fails, the levels the
// policy drops are not refused with its error (which a logger prints for
// every entry): they are taken while there is room and then dropped and
// counted, as with a slow destination; a Warn entry gets the error. Once
// the destination is back, what was taken is written, then the notice.
func TestDropBelowWhileFailing(t *testing.T) {
	d := &memDest{}
	w := newTestWriter(t, d, WithDropBelow(WarnLevel), WithBatchBytes(512), WithBuffers(2), WithWindow(time.Millisecond),
		WithErrorHandler(func(error) {}))
	down := errors.New("collector away")
	d.setFail(down)
	line := []byte(strings.Repeat("i", 99) + "\n")
	w.WriteEntry(InfoLevel, line)
	waitFor(t, func() bool { return w.Stats().Failing })
	const n = 100
	for i := range n {
		if _, err := w.WriteEntry(InfoLevel, line); err != nil {
			t.Fatalf("Info entry %d while failing: %v, want taken or dropped", i, err)
		}
	}
	if _, err := w.WriteEntry(WarnLevel, []byte("warn\n")); !errors.Is(err, down) {
		t.Fatalf("Warn entry while failing: %v, want %v", err, down)
	}
	st := w.Stats()
	if st.DroppedByLevel[InfoLevel.index()] == 0 {
		t.Fatalf("nothing dropped while failing with the buffers full: %+v", st)
	}
	d.setFail(nil)
	waitFor(t, func() bool { return !w.Stats().Failing })
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	st = w.Stats()
	ls := noticeTimeless(d.lines())
	notice := fmt.Sprintf(`{"level":"warn","msg":"snail dropped entries","dropped":%d,"dropped_info":%d}`, st.Dropped, st.Dropped)
	if ls[len(ls)-1] != notice {
		t.Fatalf("last line %q, want the notice %s", ls[len(ls)-1], notice)
	}
	if got := int(st.Dropped) + len(ls) - 1; got != n+1 {
		t.Fatalf("written %d + dropped %d = %d, want %d", len(ls)-1, st.Dropped, got, n+1)
	}
}

// TestDropNoticeAtClose: drops with no entry after them are still announced
// in the stream, by Close.
func TestDropNoticeAtClose(t *testing.T) {
	w, d, gate, line := stalledWriter(t, WarnLevel)
	for range 50 {
		w.WriteEntry(InfoLevel, line)
	}
	dropped := w.Stats().Dropped
	if dropped == 0 {
		t.Fatal("nothing dropped with the destination stalled")
	}
	close(gate)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var when struct{ Time time.Time }
	if raw := d.lines(); json.Unmarshal([]byte(raw[len(raw)-1]), &when) != nil || time.Since(when.Time).Abs() > time.Minute {
		t.Fatalf("notice %q: want the time it was written", raw[len(raw)-1])
	}
	ls := noticeTimeless(d.lines())
	if want := fmt.Sprintf(`{"level":"warn","msg":"snail dropped entries","dropped":%d,"dropped_info":%[1]d}`, dropped); ls[len(ls)-1] != want {
		t.Fatalf("last line %q, want the notice %s", ls[len(ls)-1], want)
	}
	if got := int(dropped) + len(ls) - 1; got != 50 {
		t.Fatalf("written + dropped = %d, want 50", got)
	}
}

// TestDropNoticeOff: WithDropNotice(false) keeps the drops out of the
// stream (a destination whose reader takes only the application's own
// records) while still counting them.
func TestDropNoticeOff(t *testing.T) {
	w, d, gate, line := stalledWriter(t, WarnLevel, WithDropNotice(false))
	const n = 50
	for range n {
		w.WriteEntry(InfoLevel, line)
	}
	dropped := w.Stats().Dropped
	if dropped == 0 {
		t.Fatal("nothing dropped with the destination stalled")
	}
	close(gate)
	w.WriteEntry(WarnLevel, []byte("after\n")) // waits for room: never dropped
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ls := d.lines()
	for _, l := range ls {
		if strings.Contains(l, "snail dropped entries") {
			t.Fatalf("a notice was written with WithDropNotice(false): %s", l)
		}
	}
	if ls[len(ls)-1] != "after" {
		t.Fatalf("last line %q, want the entry written after the stall", ls[len(ls)-1])
	}
	if st := w.Stats(); st.Dropped != dropped || st.DroppedByLevel[InfoLevel.index()] != dropped {
		t.Fatalf("stats %+v: want the %d drops still counted, all Info", st, dropped)
	}
	if got := int(dropped) + len(ls); got != n+1 {
		t.Fatalf("written %d + dropped %d = %d, want %d", len(ls), dropped, got, n+1)
	}
}

// TestBuffersGrowToTheBound: with the destination stalled, a Writer with
// default settings takes DefaultMaxBuffers batches' worth of entries (4
// buffers allocated up front, the rest made as they fill) before its
// overflow policy drops anything; WithBuffers alone fixes the count.
func TestBuffersGrowToTheBound(t *testing.T) {
	line := []byte(strings.Repeat("g", 199) + "\n")
	for _, tc := range []struct {
		name             string
		opts             []Option
		initial, buffers int
	}{
		{"default", nil, DefaultBuffers, DefaultMaxBuffers},
		{"WithBuffers alone", []Option{WithBuffers(3)}, 3, 3},
		{"WithMaxBuffers", []Option{WithMaxBuffers(6)}, DefaultBuffers, 6},
		{"WithMaxBuffers below the default count", []Option{WithMaxBuffers(2)}, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := make(chan struct{})
			d := &memDest{gate: gate}
			opts := append([]Option{WithDropBelow(WarnLevel), WithBatchBytes(64 << 10), WithWindow(0)}, tc.opts...)
			w := newTestWriter(t, d, opts...)
			if got := w.Stats().Buffers; got != tc.initial {
				t.Fatalf("Stats.Buffers = %d right after New, want %d", got, tc.initial)
			}
			const total = 64 << 10 * (DefaultMaxBuffers + 2) / 200
			for range total {
				if _, err := w.WriteEntry(InfoLevel, line); err != nil {
					t.Fatal(err)
				}
			}
			st := w.Stats()
			if st.Buffers != tc.buffers || st.Dropped == 0 {
				t.Fatalf("stats %+v, want %d buffers and drops", st, tc.buffers)
			}
			// Every buffer full but for the lanes' unused chunk ends, and
			// no more than fits in them.
			accepted := total - int(st.Dropped)
			if lo, hi := (tc.buffers-1)*(64<<10)/len(line), tc.buffers*(64<<10)/len(line); accepted < lo || accepted > hi {
				t.Fatalf("accepted %d entries in %d buffers, want %d..%d", accepted, tc.buffers, lo, hi)
			}
			close(gate)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := len(d.lines()); got != accepted+1 { // and the drop notice
				t.Fatalf("%d lines written, want %d entries and the notice", got, accepted)
			}
		})
	}
}

func TestZerologLevelWriter(t *testing.T) {
	w, d, gate, _ := stalledWriter(t, ErrorLevel)
	zl := zerolog.New(w)
	for i := range 100 {
		zl.Info().Int("i", i).Msg("filler to fill the buffers while the destination is stalled")
	}
	if w.Stats().DroppedByLevel[InfoLevel.index()] == 0 {
		t.Fatal("zerolog Info entries were not subject to the drop policy")
	}
	d.mu.Lock()
	d.gate = nil
	d.mu.Unlock()
	close(gate)
	zl.Error().Str("k", "v").Msg("kept")
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	// The Error entry waited for room instead of being dropped, and the
	// drop notice went out by Sync at the latest.
	ls := noticeTimeless(d.lines())
	notice := fmt.Sprintf(`{"level":"warn","msg":"snail dropped entries","dropped":%d,"dropped_info":%[1]d}`, w.Stats().Dropped)
	if !slices.Contains(ls, `{"level":"error","k":"v","message":"kept"}`) || !slices.Contains(ls, notice) {
		t.Fatalf("the Error entry or the notice %s is missing; last lines %q", notice, ls[max(len(ls)-3, 0):])
	}
	if got := int(w.Stats().Dropped) + len(ls); got != 100+2 {
		t.Fatalf("written + dropped = %d, want 102", got)
	}
}

func TestWriteDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	w := newTestWriter(t, &memDest{})
	line := []byte(strings.Repeat("x", 199) + "\n")
	if n := testing.AllocsPerRun(100000, func() { w.Write(line) }); n != 0 {
		t.Fatalf("Write: %v allocs per entry", n)
	}
	if n := testing.AllocsPerRun(100000, func() { w.WriteLevel(zerolog.InfoLevel, line) }); n != 0 {
		t.Fatalf("WriteLevel: %v allocs per entry", n)
	}
}

func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		got, want Level
	}{
		{FromZerolog(zerolog.TraceLevel), TraceLevel}, {FromZerolog(zerolog.PanicLevel), FatalLevel},
		{FromZerolog(zerolog.NoLevel), InfoLevel}, {FromZerolog(zerolog.WarnLevel), WarnLevel},
		{FromZerolog(zerolog.Level(-5)), TraceLevel}, {FromZerolog(zerolog.Disabled), InfoLevel},
	} {
		if tc.got != tc.want {
			t.Fatalf("got %v, want %v", tc.got, tc.want)
		}
	}
}

func TestConcurrentWritersExactlyOnce(t *testing.T) {
	for _, dk := range dests {
		t.Run(dk.name, func(t *testing.T) { testConcurrentWritersExactlyOnce(t, dk.make) })
	}
}

func testConcurrentWritersExactlyOnce(t *testing.T, mk func() (Destination, *memDest)) {
	dst, d := mk()
	w := newTestWriter(t, dst, WithBatchBytes(4096))
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 2000 {
				fmt.Fprintf(w, "%d-%d\n", g, i)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, l := range d.lines() {
		if seen[l] {
			t.Fatalf("duplicate %q", l)
		}
		seen[l] = true
	}
	if len(seen) != 64000 {
		t.Fatalf("%d entries, want 64000", len(seen))
	}
	// Lanes (amd64, arm64) leave batches in pieces between chunks.
	if vd, ok := dst.(*vecDest); ok && (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64") && vd.vectored == 0 {
		t.Fatal("no batch came in pieces: WriteBatchVec went untested")
	}
}

// TestCloseRacingWrites: writers keep writing while Close runs. Every
// Write that returned nil is in the destination once, whole; the others
// returned ErrClosed; and the destination was closed after the last batch.
func TestCloseRacingWrites(t *testing.T) {
	for round := range 20 {
		d := &memDest{}
		w, err := New(d, WithBatchBytes(4<<10), WithWindow(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		const writers = 16
		accepted := make([][]int, writers)
		var total atomic.Int64
		var wg sync.WaitGroup
		for g := range writers {
			wg.Go(func() {
				var line []byte
				for i := 0; ; i++ {
					line = fmt.Appendf(line[:0], "g=%d i=%d pad=%s\n", g, i, strings.Repeat("p", i%200))
					_, err := w.Write(line)
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					accepted[g] = append(accepted[g], i)
					total.Add(1)
				}
			})
		}
		for total.Load() < int64(500*(round+1)) {
			runtime.Gosched()
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		d.mu.Lock()
		seen := make([]map[int]bool, writers)
		for g := range seen {
			seen[g] = map[int]bool{}
		}
		for _, l := range strings.Split(strings.TrimSuffix(d.buf.String(), "\n"), "\n") {
			var g, i int
			head, pad, ok := strings.Cut(l, " pad=")
			if _, err := fmt.Sscanf(head, "g=%d i=%d", &g, &i); err != nil || !ok || g < 0 || g >= writers || len(pad) != i%200 {
				t.Fatalf("round %d: torn line %q", round, l)
			}
			if seen[g][i] {
				t.Fatalf("round %d: g=%d i=%d twice", round, g, i)
			}
			seen[g][i] = true
		}
		closed := d.closed
		d.mu.Unlock()
		for g := range writers {
			if len(seen[g]) != len(accepted[g]) {
				t.Fatalf("round %d: writer %d had %d writes accepted, %d in the destination", round, g, len(accepted[g]), len(seen[g]))
			}
		}
		if !closed {
			t.Fatalf("round %d: destination not closed", round)
		}
	}
}

// Close's error says each distinct error once: every batch given up fails
// with the same one. An error that wraps others with words of its own
// stays whole.
func TestJoinDistinct(t *testing.T) {
	a, b := errors.New("a"), errors.New("b")
	wrapped := fmt.Errorf("both: %w, %w", a, b)
	for _, tc := range []struct {
		errs []error
		want string
	}{
		{nil, ""},
		{[]error{nil, a, nil}, "a"},
		{[]error{a, a, errors.Join(b, a, errors.New("a"))}, "a\nb"},
		{[]error{wrapped, a, wrapped}, "both: a, b\na"},
	} {
		err := joinDistinct(tc.errs...)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("joinDistinct(%q) = %q, want %q", tc.errs, got, tc.want)
		}
		if tc.want != "" && !errors.Is(err, tc.errs[len(tc.errs)-1]) && !errors.Is(err, a) {
			t.Errorf("joinDistinct(%q) lost its errors", tc.errs)
		}
	}
}

// noticeTimeless returns lines with the time taken out of drop notices,
// for comparisons: {"time":"...","level":"warn",... becomes {"level":"warn",...
func noticeTimeless(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = noticeTime.ReplaceAllString(l, "{$2")
	}
	return out
}

var noticeTime = regexp.MustCompile(`^\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z",("level":"warn","msg":"snail dropped entries")`)

// flakyDest fails its first fails batches (slowly, as a full disk does),
// then takes every batch.
type flakyDest struct {
	memDest
	fails atomic.Int64
}

func (d *flakyDest) WriteBatch(b []byte, n int) error {
	if d.fails.Add(-1) >= 0 {
		time.Sleep(2 * time.Millisecond)
		return errors.New("no space left on device")
	}
	return d.memDest.WriteBatch(b, n)
}

// TestErrorHandlerMayLog: an error handler that logs the destination's
// error through the same Writer, as a logger's "cannot write the log"
// entry would, while every buffer is full. That entry can only wait for
// the goroutine running the handler, so it is refused with an error
// instead: the Writer hung there for good before. So are Sync and Close
// from the handler. Every entry of the writers (blocking) arrives once;
// each of the handler's arrives or was refused.
func TestErrorHandlerMayLog(t *testing.T) {
	d := &flakyDest{}
	d.fails.Store(5)
	var w *Writer
	var handled, refused atomic.Int64
	var syncErr, closeErr error
	w, err := New(d, WithBatchBytes(4096), WithBuffers(2), WithMaxBuffers(2), WithWindow(time.Millisecond),
		WithErrorHandler(func(err error) {
			if handled.Add(1) == 1 {
				// A handler that gives up on the log: Sync and Close
				// would wait for the goroutine running it.
				syncErr, closeErr = w.Sync(), w.Close()
			}
			if _, err := w.Write([]byte(`{"msg":"cannot write the log","error":"` + err.Error() + `"}` + "\n")); err != nil {
				if !errors.Is(err, batcher.ErrReentry) {
					t.Errorf("the handler's Write: %v, want batcher.ErrReentry", err)
				}
				refused.Add(1)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	const g, n = 8, 2000
	var wg sync.WaitGroup
	for i := range g {
		wg.Go(func() {
			for j := range n {
				for {
					// The destination's error comes back while it fails;
					// the entry is written again, as a caller that must not
					// lose it does.
					if _, err := fmt.Fprintf(w, `{"id":%d}`+"\n", i*n+j); err == nil {
						break
					}
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	done := make(chan error, 1)
	go func() { wg.Wait(); done <- w.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("hung: the error handler's entry waited for the goroutine running it")
	}
	seen := map[int]int{}
	fromHandler := 0
	for line := range strings.Lines(d.buf.String()) {
		var e struct {
			ID  *int
			Msg string
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if e.ID == nil {
			fromHandler++
			continue
		}
		seen[*e.ID]++
	}
	for id := range g * n {
		if seen[id] != 1 {
			t.Fatalf("id %d written %d times", id, seen[id])
		}
	}
	if !errors.Is(syncErr, batcher.ErrReentry) || !errors.Is(closeErr, batcher.ErrReentry) {
		t.Errorf("Sync and Close from the handler: %v, %v; want batcher.ErrReentry", syncErr, closeErr)
	}
	if h := handled.Load(); h == 0 || int64(fromHandler)+refused.Load() != h {
		t.Errorf("handler called %d times: %d of its entries written, %d refused", h, fromHandler, refused.Load())
	}
	t.Logf("handler called %d times: %d entries written, %d refused", handled.Load(), fromHandler, refused.Load())
}
