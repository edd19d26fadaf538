package batcher

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lineCollector checks each Bytes batch as it arrives: whole lines only, the
// entry count right, the size bound kept; then keeps the lines.
type lineCollector struct {
	t        *testing.T
	capBytes int
	mu       sync.Mutex
	lines    []string
	batches  int
	perProd  map[string]int // lines delivered by producer (the first field)
}

// delivered is the number of lines producer p has had delivered.
func (c *lineCollector) delivered(p int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.perProd[strconv.Itoa(p)]
}

func (c *lineCollector) out(batch []byte, entries int) error {
	if len(batch) == 0 || entries == 0 {
		c.t.Errorf("empty batch (%d bytes, %d entries)", len(batch), entries)
	}
	if batch[len(batch)-1] != '\n' {
		c.t.Errorf("batch does not end on an entry boundary: %q", tail(batch))
	}
	lines := strings.Split(strings.TrimSuffix(string(batch), "\n"), "\n")
	if len(lines) != entries {
		c.t.Errorf("batch says %d entries, holds %d lines", entries, len(lines))
	}
	if len(batch) > c.capBytes && entries != 1 {
		c.t.Errorf("batch of %d bytes with %d entries exceeds %d bytes", len(batch), entries, c.capBytes)
	}
	c.mu.Lock()
	c.lines = append(c.lines, lines...)
	c.batches++
	if c.perProd == nil {
		c.perProd = map[string]int{}
	}
	for _, l := range lines {
		p, _, _ := strings.Cut(l, " ")
		c.perProd[p]++
	}
	c.mu.Unlock()
	return nil
}

func tail(b []byte) []byte {
	if len(b) > 20 {
		return b[len(b)-20:]
	}
	return b
}

// entry formats a line "producer seq padding\n" into buf, reusing it the
// way zap and zerolog reuse their buffers.
func entry(buf []byte, p, s, pad int) []byte {
	buf = strconv.AppendInt(buf[:0], int64(p), 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, int64(s), 10)
	buf = append(buf, ' ')
	for range pad {
		buf = append(buf, 'x')
	}
	return append(buf, '\n')
}

// checkLines asserts every producer's lines arrived exactly once, in order.
func checkLines(t *testing.T, lines []string, producers, per int) {
	t.Helper()
	if len(lines) != producers*per {
		t.Fatalf("got %d lines, want %d", len(lines), producers*per)
	}
	next := make([]int, producers)
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 {
			t.Fatalf("torn line %q", l)
		}
		p, _ := strconv.Atoi(f[0])
		s, _ := strconv.Atoi(f[1])
		if p < 0 || p >= producers || s != next[p] {
			t.Fatalf("line %q: want producer seq %d (lost, duplicated or reordered)", l, next[p])
		}
		if len(f) == 3 && strings.Trim(f[2], "x") != "" {
			t.Fatalf("corrupt line %q", l)
		}
		next[p]++
	}
}

func TestBytesExactlyOnceWholeEntries(t *testing.T) {
	for _, tc := range []struct {
		producers, per, capBytes, maxEntries, buffers int
		bigEvery                                      int // every n-th entry is larger than a batch
		maxBuffers                                    int // WithMaxBuffers, if not 0
	}{
		{1, 20000, 4096, 0, 3, 0, 0},
		{8, 5000, 1000, 0, 2, 0, 0},
		{64, 1000, 64 << 10, 0, 3, 0, 0},
		{32, 1000, 300, 5, 2, 0, 0},
		{16, 2000, 2048, 0, 3, 97, 0},
		{100, 200, 50, 0, 2, 0, 0}, // most entries close to the batch size
		{64, 1000, 1000, 0, 2, 0, 16},
		{16, 2000, 2048, 0, 2, 97, 8},
	} {
		t.Run(fmt.Sprintf("p%d_cap%d_max%d_big%d_grow%d", tc.producers, tc.capBytes, tc.maxEntries, tc.bigEvery, tc.maxBuffers), func(t *testing.T) {
			col := &lineCollector{t: t, capBytes: tc.capBytes}
			opts := []Option{WithBatchBytes(tc.capBytes), WithBuffers(tc.buffers)}
			if tc.maxEntries > 0 {
				opts = append(opts, WithBatchSize(tc.maxEntries))
			}
			if tc.maxBuffers > 0 {
				opts = append(opts, WithMaxBuffers(tc.maxBuffers))
			}
			b, err := NewBytes(col.out, opts...)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for p := range tc.producers {
				wg.Go(func() {
					buf := make([]byte, 0, 2*tc.capBytes+64)
					for s := range tc.per {
						pad := (p*7 + s*13) % 40
						if tc.bigEvery > 0 && s%tc.bigEvery == 0 {
							pad = tc.capBytes + s%50
						}
						if tc.capBytes < 100 {
							pad %= 30
						}
						buf = entry(buf, p, s, pad)
						n, err := b.Write(buf)
						if err != nil || n != len(buf) {
							t.Errorf("Write = %d, %v", n, err)
							return
						}
						// The caller reuses its buffer at once.
						for i := range buf {
							buf[i] = '#'
						}
					}
				})
			}
			wg.Wait()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			checkLines(t, col.lines, tc.producers, tc.per)
			st := b.Stats()
			if want := uint64(tc.producers * tc.per); st.Added != want || st.Delivered != want || st.Batches != uint64(col.batches) {
				t.Fatalf("stats %+v, want %d entries in %d batches", st, want, col.batches)
			}
			if most := max(tc.maxBuffers, tc.buffers); st.Buffers < tc.buffers || st.Buffers > most {
				t.Fatalf("Stats.Buffers = %d, want %d..%d", st.Buffers, tc.buffers, most)
			}
		})
	}
}

func TestBytesBigEntryKeepsOrder(t *testing.T) {
	var got [][]byte
	b, _ := NewBytes(func(batch []byte, n int) error {
		got = append(got, bytes.Clone(batch))
		return nil
	}, WithBatchBytes(16), WithBatchSize(16), WithWindow(0))
	for _, s := range []string{"a\n", "b\n", strings.Repeat("B", 40) + "\n", "c\n"} {
		if _, err := b.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{"a\nb\n", strings.Repeat("B", 40) + "\n", "c\n"}
	if len(got) != len(want) {
		t.Fatalf("got %d batches %q, want %q", len(got), got, want)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Fatalf("batch %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestBytesExactFillAndEntryLimit(t *testing.T) {
	var sizes []int
	var counts []int
	b, _ := NewBytes(func(batch []byte, n int) error {
		sizes = append(sizes, len(batch))
		counts = append(counts, n)
		return nil
	}, WithBatchBytes(8), WithBatchSize(3), WithWindow(0))
	for _, s := range []string{"1234", "5678", "a", "b", "c", "d"} {
		_, _ = b.Write([]byte(s))
	}
	_ = b.Close()
	// "1234"+"5678" fill 8 bytes exactly; "a","b","c" hit the entry limit.
	if fmt.Sprint(sizes, counts) != "[8 3 1] [2 3 1]" {
		t.Fatalf("sizes %v counts %v", sizes, counts)
	}
}

func TestBytesClosedAndDropped(t *testing.T) {
	gate := make(chan struct{})
	b, _ := NewBytes(func([]byte, int) error { <-gate; return nil },
		WithBatchBytes(10), WithBatchSize(10), WithBuffers(2), WithOverflow(DropNewest), WithWindow(0))
	accepted := 0
	for range 50 {
		if _, err := b.Write([]byte("12345")); err == nil {
			accepted++
		} else if !errors.Is(err, ErrDropped) {
			t.Fatal(err)
		}
	}
	if accepted != 4 {
		t.Fatalf("accepted %d entries with the output stuck, want 4 (2 buffers x 2)", accepted)
	}
	if err := b.TryWrite([]byte("x")); !errors.Is(err, ErrDropped) {
		t.Fatalf("TryWrite = %v, want ErrDropped", err)
	}
	if _, err := b.Write(bytes.Repeat([]byte("x"), 100)); !errors.Is(err, ErrDropped) {
		t.Fatalf("big Write with all buffers full = %v, want ErrDropped", err)
	}
	if st := b.Stats(); st.Dropped != 48 {
		t.Fatalf("Dropped = %d, want 48", st.Dropped)
	}
	close(gate)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{[]byte("x"), nil, bytes.Repeat([]byte("x"), 100)} {
		if _, err := b.Write(p); !errors.Is(err, ErrClosed) {
			t.Fatalf("Write(%d bytes) after Close = %v, want ErrClosed", len(p), err)
		}
	}
}

func TestBytesFlushAndBigEntryErrors(t *testing.T) {
	boom := errors.New("boom")
	var fail atomic.Bool
	var n atomic.Int64
	b, _ := NewBytes(func(batch []byte, entries int) error {
		n.Add(int64(entries))
		if fail.Load() {
			return boom
		}
		return nil
	}, WithBatchBytes(64))
	defer b.Close()
	_, _ = b.Write([]byte("a\n"))
	if err := b.Flush(); err != nil || n.Load() != 1 {
		t.Fatalf("Flush = %v, %d entries out", err, n.Load())
	}
	fail.Store(true)
	if _, err := b.Write(bytes.Repeat([]byte("y"), 200)); err != nil {
		t.Fatalf("big Write = %v: output errors are reported by Flush", err)
	}
	if err := b.Flush(); !errors.Is(err, boom) {
		t.Fatalf("Flush = %v, want %v", err, boom)
	}
}

// An output that retries a failed batch itself tells the batcher
// (OutputFailing): Flush returns the error at once instead of waiting for
// the retries, the batch stays in line, and once the output succeeds the
// next Flush waits for it as usual.
func TestBytesFlushWhileOutputRetries(t *testing.T) {
	down := errors.New("down")
	up, resumed := make(chan struct{}), make(chan struct{})
	var out bytes.Buffer
	var b *Bytes
	b, _ = NewBytes(func(batch []byte, entries int) error {
		select {
		case <-up:
		default:
			b.OutputFailing(down)
			<-up // retrying until the destination is back
			b.OutputFailing(nil)
			close(resumed)
		}
		out.Write(batch)
		return nil
	}, WithBatchBytes(64))
	_, _ = b.Write([]byte("a\n"))
	if err := b.Flush(); !errors.Is(err, down) {
		t.Fatalf("Flush while the output retries = %v, want %v", err, down)
	}
	if err := b.Flush(); !errors.Is(err, down) {
		t.Fatalf("second Flush = %v, want %v at once", err, down)
	}
	close(up)
	<-resumed
	_, _ = b.Write([]byte("b\n"))
	if err := b.Flush(); err != nil {
		t.Fatalf("Flush after the output succeeded = %v", err)
	}
	if err := b.Close(); err != nil || out.String() != "a\nb\n" {
		t.Fatalf("Close = %v, output %q; want a and b", err, out.String())
	}
}

// TestFlushWhileOutputRetries is TestBytesFlushWhileOutputRetries for the
// generic Batcher, whose output also learns that it runs there (InOutput).
func TestFlushWhileOutputRetries(t *testing.T) {
	down := errors.New("down")
	up, resumed := make(chan struct{}), make(chan struct{})
	var got []int
	var inOutput atomic.Bool
	var b *Batcher[int]
	b, err := New(func(batch []int) error {
		inOutput.Store(b.InOutput())
		select {
		case <-up:
		default:
			b.OutputFailing(down)
			<-up
			b.OutputFailing(nil)
			close(resumed)
		}
		got = append(got, batch...)
		return nil
	}, WithBatchSize(4))
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Add(1)
	if err := b.Flush(); !errors.Is(err, down) {
		t.Fatalf("Flush while the output retries = %v, want %v", err, down)
	}
	close(up)
	<-resumed
	_ = b.Add(2)
	if err := b.Flush(); err != nil {
		t.Fatalf("Flush after the output succeeded = %v", err)
	}
	if err := b.Close(); err != nil || !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("Close = %v, output %v; want 1 and 2", err, got)
	}
	if !inOutput.Load() || b.InOutput() {
		t.Errorf("InOutput: %v in the output function, %v outside; want true, false", inOutput.Load(), b.InOutput())
	}
}

// TestBytesLimits: what one batch of a Bytes holds, as its options set it.
func TestBytesLimits(t *testing.T) {
	for _, tc := range []struct {
		name              string
		opts              []Option
		bytes, maxEntries int
	}{
		{"defaults", nil, DefaultBatchBytes, DefaultBatchBytes / 32},
		{"batch bytes", []Option{WithBatchBytes(4096)}, 4096, 128},
		{"tiny batch", []Option{WithBatchBytes(16)}, 16, 1},
		{"batch size", []Option{WithBatchBytes(4096), WithBatchSize(10)}, 4096, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBytes(func([]byte, int) error { return nil }, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if n, m := b.Limits(); n != tc.bytes || m != tc.maxEntries {
				t.Fatalf("Limits() = %d bytes, %d entries; want %d, %d", n, m, tc.bytes, tc.maxEntries)
			}
		})
	}
}

func TestBytesWriteDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	b, _ := NewBytes(func([]byte, int) error { return nil }, WithBatchBytes(64<<10))
	defer b.Close()
	line := bytes.Repeat([]byte("x"), 199)
	line = append(line, '\n')
	if n := testing.AllocsPerRun(100000, func() { _, _ = b.Write(line) }); n != 0 {
		t.Fatalf("Write: %v allocs per entry, want 0", n)
	}
}

// TestLanes runs many goroutines on more Ps than cores, yielding between
// entries so that the scheduler moves them between Ps in mid-batch, with
// entries around and above the chunk size: every line must arrive once, in
// per-goroutine order, and batches must stay nearly full.
func TestLanes(t *testing.T) {
	for _, vectors := range []bool{false, true} {
		t.Run(fmt.Sprintf("vectors=%v", vectors), func(t *testing.T) { testLanes(t, vectors) })
	}
}

func testLanes(t *testing.T, vectors bool) {
	if !fastGetg {
		t.Skip("no lanes on " + runtime.GOARCH)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(6))
	const capBytes, producers, per = 64 << 10, 48, 4000
	col := &lineCollector{t: t, capBytes: capBytes}
	opts := []Option{WithBatchBytes(capBytes), WithLanes(true), WithWindow(time.Hour)}
	var vecCalls int
	if vectors {
		// Pieces come in order and hold whole entries: joined, they are
		// the batch compaction would have made.
		opts = append(opts, WithVectors(func(bufs [][]byte, n int) error {
			vecCalls++
			if len(bufs) < 2 {
				t.Errorf("vectors function called with %d pieces", len(bufs))
			}
			return col.out(bytes.Join(bufs, nil), n)
		}))
	}
	b, err := NewBytes(col.out, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if b.nLanes != 6 || b.chunk != uint64(chunkSize(capBytes, 6)) || b.chunk == 0 {
		t.Fatalf("lanes %d, chunk %d", b.nLanes, b.chunk)
	}
	var wg sync.WaitGroup
	var total atomic.Int64
	for p := range producers {
		wg.Go(func() {
			var buf []byte
			for s := range per {
				pad := (p*131 + s*71) % 300
				if s%997 == 0 {
					pad = int(b.chunk) + p // a chunk of its own
				}
				buf = entry(buf, p, s, pad)
				total.Add(int64(len(buf)))
				if _, err := b.Write(buf); err != nil {
					t.Error(err)
					return
				}
				if s%7 == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	checkLines(t, col.lines, producers, per)
	if vectors && vecCalls == 0 {
		t.Error("no batch came in pieces: the vectors path went untested")
	}
	// Every lane's last chunk may be partly empty when a batch seals: a
	// batch still carries at least 3/4 of a buffer on average.
	if full := int(total.Load() / capBytes); col.batches > full*4/3+1 {
		t.Errorf("%d batches for %d buffers' worth of entries", col.batches, full)
	}
}

// TestLanesGrow: with lanes, buffers made under WithMaxBuffers get chunk
// state of their own, and a stuck output lets producers fill every one of
// them before the overflow policy applies.
func TestLanesGrow(t *testing.T) {
	if !fastGetg {
		t.Skip("no lanes on " + runtime.GOARCH)
	}
	const capBytes, most = 4 << 10, 5
	gate := make(chan struct{})
	col := &lineCollector{t: t, capBytes: capBytes}
	b, err := NewBytes(func(p []byte, n int) error {
		<-gate
		return col.out(p, n)
	}, WithBatchBytes(capBytes), WithLanes(true), WithBuffers(2), WithMaxBuffers(most),
		WithOverflow(DropNewest), WithWindow(0))
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	accepted := 0
	for range 1000 {
		buf = entry(buf, 0, accepted, 50)
		switch _, err := b.Write(buf); {
		case err == nil:
			accepted++
		case errors.Is(err, ErrDropped):
		default:
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.Buffers != most || st.Dropped == 0 {
		t.Fatalf("stats %+v: want %d buffers and drops", st, most)
	}
	if min := (most - 1) * capBytes / 2 / len(buf); accepted < min {
		t.Fatalf("accepted %d entries with %d buffers, want at least %d", accepted, most, min)
	}
	close(gate)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	checkLines(t, col.lines, 1, accepted)
}

func TestLanesOptions(t *testing.T) {
	out := func([]byte, int) error { return nil }
	b, err := NewBytes(out, WithLanes(true), WithBatchSize(10))
	if fastGetg && !errors.Is(err, ErrInvalidOption) {
		t.Errorf("Bytes: got %v, want ErrInvalidOption", err)
	}
	if err == nil { // without lanes here, the batch size holds
		b.Close()
	}
	if _, err := New(func([]int) error { return nil }, WithLanes(true)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("Batcher: got %v, want ErrInvalidOption", err)
	}
	vec := func([][]byte, int) error { return nil }
	keep := func([]byte, int) ([]byte, error) { return nil, nil }
	for name, opts := range map[string][]Option{
		"nil vectors":          {WithVectors(nil)},
		"vectors with keep":    {WithLanes(true), WithVectors(vec), WithKeep(keep)},
		"vectors with Batcher": nil, // below
	} {
		var err error
		if opts == nil {
			_, err = New(func([]int) error { return nil }, WithVectors(vec))
		} else {
			_, err = NewBytes(out, opts...)
		}
		if !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: got %v, want ErrInvalidOption", name, err)
		}
	}
}

// keeper is a WithKeep destination that holds batches as if until an ack:
// it checks that a held buffer is never written to while it holds it, and
// gives released ones back as spares (some too small, some calls keep
// nothing).
type keeper struct {
	t        *testing.T
	col      *lineCollector
	calls    int
	held     [][]byte // batches kept, oldest first
	snapshot [][]byte // their bytes when kept
	kept     int
}

func (k *keeper) keep(batch []byte, entries int) ([]byte, error) {
	k.col.out(batch, entries)
	k.calls++
	switch {
	case k.calls%3 == 0:
		return nil, nil // not kept: the batcher reuses it
	case k.calls%5 == 0:
		k.hold(batch)
		return make([]byte, 0, 10), nil // too small: the batcher allocates
	}
	k.hold(batch)
	if len(k.held) < 4 {
		return make([]byte, 0, cap(batch)), nil
	}
	k.check(0)
	spare := k.held[0]
	k.held, k.snapshot = k.held[1:], k.snapshot[1:]
	for i := range spare[:cap(spare)] {
		spare[:cap(spare)][i] = 'Z' // the batcher overwrites it all
	}
	return spare[:0], nil
}

func (k *keeper) hold(batch []byte) {
	k.held = append(k.held, batch)
	k.snapshot = append(k.snapshot, bytes.Clone(batch))
	k.kept++
}

func (k *keeper) check(i int) {
	if !bytes.Equal(k.held[i], k.snapshot[i]) {
		k.t.Errorf("a kept batch was written to after keep returned")
	}
}

func TestBytesKeep(t *testing.T) {
	for _, lanes := range []bool{false, true} {
		t.Run(fmt.Sprintf("lanes=%v", lanes), func(t *testing.T) {
			const capBytes, producers, per = 16 << 10, 16, 3000
			col := &lineCollector{t: t, capBytes: capBytes}
			k := &keeper{t: t, col: col}
			b, err := NewBytes(col.out, WithBatchBytes(capBytes), WithLanes(lanes), WithKeep(k.keep))
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for p := range producers {
				wg.Go(func() {
					var buf []byte
					for s := range per {
						pad := (p*31 + s*17) % 200
						if s%499 == 0 {
							pad = capBytes + 1 // through output, never kept
						}
						buf = entry(buf, p, s, pad)
						if _, err := b.Write(buf); err != nil {
							t.Error(err)
							return
						}
						clear(buf) // the writer's slice is its own again
					}
				})
			}
			wg.Wait()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			checkLines(t, col.lines, producers, per)
			for i := range k.held {
				k.check(i)
			}
			if k.kept < 10 || k.calls < 15 {
				t.Fatalf("keep took %d of %d batches", k.kept, k.calls)
			}
		})
	}
	if _, err := NewBytes(func([]byte, int) error { return nil }, WithKeep(nil)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("nil keep: got %v, want ErrInvalidOption", err)
	}
	if _, err := New(func([]int) error { return nil }, WithKeep(func(b []byte, _ int) ([]byte, error) { return nil, nil })); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("Batcher: got %v, want ErrInvalidOption", err)
	}
}
