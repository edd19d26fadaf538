package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/slogtest"
	"time"
)

func newTestWriter(t testing.TB, d Destination, opts ...Option) *Writer {
	t.Helper()
	w, err := New(d, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func TestSlogtest(t *testing.T) {
	var d *memDest
	var w *Writer
	slogtest.Run(t, func(t *testing.T) slog.Handler {
		d = &memDest{}
		w = newTestWriter(t, d)
		return NewSlogHandler(w, nil)
	}, func(t *testing.T) map[string]any {
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		ls := d.lines()
		if len(ls) != 1 {
			t.Fatalf("%d lines, want 1: %q", len(ls), ls)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(ls[0]), &m); err != nil {
			t.Fatalf("%v: %s", err, ls[0])
		}
		return m
	})
}

type token string

func (t token) LogValue() slog.Value { return slog.StringValue("REDACTED") }

type point struct{ X, Y int }

// panicJSON, panicText and a nil *ptrErr panic when slog asks them for
// their value.
type panicJSON struct{}

func (panicJSON) MarshalJSON() ([]byte, error) { panic("json boom") }

type panicText struct{}

func (panicText) MarshalText() ([]byte, error) { panic("text boom") }

type panicError struct{}

func (panicError) Error() string { panic("error boom") }

type ptrJSON struct{ n int }

func (p *ptrJSON) MarshalJSON() ([]byte, error) { return []byte(strconv.Itoa(p.n)), nil }

type ptrErr struct{ msg string }

func (e *ptrErr) Error() string { return e.msg }

type marshalErr struct{}

func (marshalErr) Error() string                { return "plain error text" }
func (marshalErr) MarshalJSON() ([]byte, error) { return []byte(`{"custom":true}`), nil }

// TestSlogSameBytesAsJSONHandler logs the same records through
// slog.NewJSONHandler and through SlogHandler and compares the bytes.
func TestSlogSameBytesAsJSONHandler(t *testing.T) {
	at := time.Date(2026, 11, 25, 23, 35, 29, 123456000, time.FixedZone("X", 3600))
	pc, _, _, _ := runtime.Caller(0)
	type step func(h slog.Handler) slog.Handler
	withAttrs := func(as ...slog.Attr) step { return func(h slog.Handler) slog.Handler { return h.WithAttrs(as) } }
	withGroup := func(g string) step { return func(h slog.Handler) slog.Handler { return h.WithGroup(g) } }
	replace := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.Attr{}
		}
		if a.Key == "secret" {
			return slog.String("secret", fmt.Sprintf("%d groups", len(groups)))
		}
		return a
	}}
	for _, tc := range []struct {
		name  string
		opts  *slog.HandlerOptions
		steps []step
		level slog.Level
		msg   string
		attrs []slog.Attr
		pc    uintptr
	}{
		{name: "plain", msg: "hello"},
		{name: "kinds", msg: "kinds", attrs: []slog.Attr{
			slog.String("s", "v"), slog.Int("i", -42), slog.Uint64("u", 1<<63), slog.Bool("b", true),
			slog.Float64("f", 3.25), slog.Float64("tiny", 1e-7), slog.Float64("huge", 1e21), slog.Float64("zero", 0),
			slog.Float64("neg", -0.000001), slog.Duration("d", 1500*time.Millisecond), slog.Time("t", at),
			slog.Any("err", errors.New("boom")), slog.Any("nil", nil), slog.Any("struct", point{1, 2}),
			slog.Any("map", map[string]int{"b": 2, "a": 1}), slog.Any("slice", []string{"x", "<y>"}),
			slog.Any("jsonerr", marshalErr{}), slog.Any("valuer", token("hunter2")), slog.Any("level", slog.LevelWarn),
			slog.Float64("nan", math.NaN()),
		}},
		{name: "panics", msg: "values whose methods panic", attrs: []slog.Attr{
			slog.Any("json", panicJSON{}), slog.Any("nilerr", (*ptrErr)(nil)), slog.Any("nilerr2", error((*ptrErr)(nil))),
			slog.Any("text", panicText{}), slog.Float64("inf", math.Inf(-1)), slog.Any("ok", ptrErr{"fine"})}},
		{name: "not JSON", msg: "values JSON cannot hold, or that marshal badly", attrs: []slog.Attr{
			slog.Any("chan", make(chan int)), slog.Any("func", func() {}), slog.Any("complex", complex(1, 2)),
			slog.Any("map", map[string]any{"c": make(chan int)}), slog.Any("badtext", badText{}), slog.Any("badjson", badJSON{}),
			slog.Any("errpanic", panicError{}), slog.Any("nilptr", (*ptrJSON)(nil))}},
		{name: "escaping", msg: "quote \" backslash \\ newline \n tab \t ctrl \x01 html <&> bad \xff utf8 é ls \u2028 ps \u2029", attrs: []slog.Attr{
			slog.String("k\"ey", "v\nal"), slog.String("", "empty key")}},
		{name: "levels", level: slog.LevelWarn + 2, msg: "offset"},
		{name: "error", level: slog.LevelError, msg: "named"},
		{name: "debug", level: slog.LevelDebug, msg: "named", opts: &slog.HandlerOptions{Level: slog.LevelDebug}},
		{name: "debug-1", level: slog.LevelDebug - 1, msg: "below", opts: &slog.HandlerOptions{Level: slog.LevelDebug - 4}},
		{name: "groups", msg: "g", attrs: []slog.Attr{
			slog.Group("req", slog.String("method", "GET"), slog.Group("inner", slog.Int("n", 1))),
			slog.Group("empty"), slog.Group("", slog.String("inlined", "yes")), {}, slog.Int("after", 2)}},
		{name: "with attrs and groups", msg: "nested",
			steps: []step{withAttrs(slog.String("svc", "api")), withGroup("a"), withAttrs(slog.Int("x", 1)), withGroup("b")},
			attrs: []slog.Attr{slog.Int("y", 2)}},
		{name: "group with no record attrs", msg: "none", steps: []step{withAttrs(slog.Int("x", 1)), withGroup("g")}},
		{name: "group then empty attrs", msg: "empties", steps: []step{withGroup("g"), withAttrs(slog.Group("e"))},
			attrs: []slog.Attr{{}, slog.Group("e2")}},
		{name: "only empty record attrs", msg: "m", steps: []step{withGroup("g")}, attrs: []slog.Attr{{}}},
		{name: "replace attr", msg: "r", opts: replace, steps: []step{withGroup("g")},
			attrs: []slog.Attr{slog.String("secret", "x"), slog.Group("h", slog.String("secret", "y"))}},
		{name: "source", msg: "src", opts: &slog.HandlerOptions{AddSource: true}, pc: pc},
		{name: "source without pc", msg: "src", opts: &slog.HandlerOptions{AddSource: true}},
		{name: "zero time", msg: "no time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want bytes.Buffer
			var ref slog.Handler = slog.NewJSONHandler(&want, tc.opts)
			d := &memDest{}
			w := newTestWriter(t, d)
			var ours slog.Handler = NewSlogHandler(w, tc.opts)
			for _, s := range tc.steps {
				ref, ours = s(ref), s(ours)
			}
			tm := at
			if tc.name == "zero time" {
				tm = time.Time{}
			}
			for _, h := range []slog.Handler{ref, ours} {
				r := slog.NewRecord(tm, tc.level, tc.msg, tc.pc)
				r.AddAttrs(tc.attrs...)
				if err := h.Handle(context.Background(), r); err != nil {
					t.Fatal(err)
				}
			}
			w.Sync()
			if got := d.String(); got != want.String() {
				t.Fatalf("\ngot  %s\nwant %s", got, want.String())
			}
		})
	}
}

func TestSlogEnabled(t *testing.T) {
	w := newTestWriter(t, &memDest{})
	h := NewSlogHandler(w, nil)
	if h.Enabled(context.Background(), slog.LevelDebug) || !h.Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("default level is not Info")
	}
	h = NewSlogHandler(w, &slog.HandlerOptions{Level: slog.LevelError})
	if h.Enabled(context.Background(), slog.LevelWarn) {
		t.Fatal("Level option ignored")
	}
}

func TestSlogNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	w := newTestWriter(t, &memDest{})
	h := NewSlogHandler(w, nil).WithAttrs([]slog.Attr{slog.String("svc", "api")}).WithGroup("req")
	// slog.Record keeps 5 attributes inline and allocates for more, so the
	// record is built once: this measures the handler alone.
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "request completed", 0)
	r.AddAttrs(slog.String("method", "GET"), slog.String("path", "/api/v1/users/42"), slog.Int("status", 200),
		slog.Float64("latency_ms", 12.5), slog.Bool("cached", false), slog.Duration("took", time.Millisecond),
		slog.Time("at", time.Now()), slog.Any("err", errors.New("timeout")))
	ctx := context.Background()
	n := testing.AllocsPerRun(1000, func() {
		if err := h.Handle(ctx, r); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocs per record with 8 attributes, want 0", n)
	}
}

// noTimeLevel makes slog.JSONHandler leave out the time and the level, so
// that its output is only what a fuzz target compares.
var noTimeLevel = &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
		return slog.Attr{}
	}
	return a
}}

// FuzzSlogString checks the string encoder (messages, keys and values)
// against slog.JSONHandler's escaping, byte for byte.
func FuzzSlogString(f *testing.F) {
	for _, s := range []string{"", "plain ascii key", "quote \" backslash \\ nl \n", "\x00\x1f\x7f", "é\u2028\u2029", "\xff\xfe", "12345678\"", "abcdefg\x01hij", "日本語のテキスト"} {
		f.Add(s, s+"k", s+"v")
	}
	f.Fuzz(func(t *testing.T, msg, key, val string) {
		if key == "" {
			key = "k" // an empty key drops the attribute in both
		}
		var want bytes.Buffer
		ref := slog.NewJSONHandler(&want, noTimeLevel)
		r := slog.NewRecord(time.Time{}, slog.LevelInfo, msg, 0)
		r.AddAttrs(slog.String(key, val))
		if err := ref.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		s := &encState{buf: []byte(`{"msg":`)}
		s.str(msg)
		s.sep = true
		s.key(key)
		s.str(val)
		s.buf = append(s.buf, "}\n"...)
		if string(s.buf) != want.String() {
			t.Fatalf("got  %q\nwant %q", s.buf, want.String())
		}
	})
}

// TestPlainFindsEveryEscape puts each byte that needs escaping, and each
// that does not but sits next to one in value, at every position of
// strings of every length up to three words, so that every word, the
// overlapping last word and the single-byte tail are each tried.
func TestPlainFindsEveryEscape(t *testing.T) {
	for n := 0; n <= 24; n++ {
		base := bytes.Repeat([]byte{'a'}, n)
		if !plain(string(base)) {
			t.Fatalf("plain(%q) = false", base)
		}
		for i := range n {
			for c := range 256 {
				b := bytes.Clone(base)
				b[i] = byte(c)
				want := c >= 0x20 && c < 0x80 && c != '"' && c != '\\'
				if got := plain(string(b)); got != want {
					t.Fatalf("plain(%q) = %v, want %v", b, got, want)
				}
			}
		}
	}
}

// FuzzSlogTime checks time values against slog.JSONHandler, byte for byte,
// twice in a row and then a nanosecond later, so that the second and the
// third are formatted from the encoder's cached second when they share it.
func FuzzSlogTime(f *testing.F) {
	f.Add(int64(1764200000), uint32(123456000), int32(3600))
	f.Add(int64(0), uint32(0), int32(0))
	f.Add(int64(-62135596800), uint32(999999999), int32(-36000)) // year 1
	f.Add(int64(253402300799), uint32(1), int32(45))             // year 9999, an offset in seconds
	f.Add(int64(253402300800), uint32(5), int32(0))              // year 10000: an error, in one string (below)
	f.Fuzz(func(t *testing.T, sec int64, nsec uint32, offset int32) {
		loc := time.UTC
		if offset%7 == 1 {
			loc = time.Local
		} else if offset != 0 {
			loc = time.FixedZone("Z", int(offset%(24*3600)))
		}
		s := &encState{}
		for i, tm := range []time.Time{time.Unix(sec, int64(nsec%1e9)).In(loc), {}, {}} {
			switch i {
			case 1:
				tm = time.Unix(sec, int64(nsec%1e9)).In(loc)
			case 2:
				tm = time.Unix(sec, int64(nsec%1e9)).In(loc).Add(time.Nanosecond)
			}
			var want bytes.Buffer
			r := slog.NewRecord(time.Time{}, slog.LevelInfo, "m", 0)
			r.AddAttrs(slog.Time("t", tm))
			if err := slog.NewJSONHandler(&want, noTimeLevel).Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			s.buf = append(s.buf[:0], `{"msg":"m","t":`...)
			s.time(slog.TimeValue(tm).Time()) // as Handle gets it: the zero instant in any zone is time.Time{}
			s.buf = append(s.buf, "}\n"...)
			// For a year outside 0-9999, JSONHandler writes its error and
			// the time as two strings, which is not JSON; SlogHandler
			// writes them as one.
			if w := want.String(); string(s.buf) != strings.Replace(w, `[0,9999]""`, `[0,9999]: `, 1) || !json.Valid(s.buf) {
				t.Fatalf("time %d: got  %q\nwant %q", i, s.buf, want.String())
			}
		}
	})
}

// FuzzSlogFloat checks float values against slog.JSONHandler, byte for
// byte: the short decimals taken without strconv, and the rest.
func FuzzSlogFloat(f *testing.F) {
	for _, v := range []float64{12.5, 0.1, 0.3, 1.0 / 3, -0.05, 0.001, 0.0005, 123.456, 1e15, 9.007e14 + 0.5,
		1 << 50, 1<<50 - 0.5, -7, 42, 1e21, 1e-7, math.Copysign(0, -1), 0, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		var want bytes.Buffer
		r := slog.NewRecord(time.Time{}, slog.LevelInfo, "m", 0)
		r.AddAttrs(slog.Float64("f", v))
		if err := slog.NewJSONHandler(&want, noTimeLevel).Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		s := &encState{buf: []byte(`{"msg":"m","f":`)}
		s.float(v)
		s.buf = append(s.buf, "}\n"...)
		if string(s.buf) != want.String() {
			t.Fatalf("%v: got  %q\nwant %q", v, s.buf, want.String())
		}
	})
}

// TestShortFloatMatchesStrconv runs the short-decimal path over decimals it
// is meant for and their float64 neighbours, at every scale up to its
// limit: whatever it takes, it must write what strconv writes.
func TestShortFloatMatchesStrconv(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	taken := 0
	for i := range 400000 {
		bits := 1 + i%53 // spread the magnitudes evenly
		n := r.Int64N(1<<bits) - 1<<(bits-1)
		k := r.IntN(5)
		f := float64(n) / math.Pow10(k)
		for _, v := range []float64{f, math.Nextafter(f, math.Inf(1)), math.Nextafter(f, math.Inf(-1))} {
			got, ok := appendShortFloat(nil, v)
			if !ok {
				continue
			}
			taken++
			if want := strconv.AppendFloat(nil, v, 'f', -1, 64); string(got) != string(want) {
				t.Fatalf("%v (n %d, k %d): got %s, want %s", v, n, k, got, want)
			}
		}
	}
	if taken < 100000 {
		t.Fatalf("the short path took only %d values", taken)
	}
}
