package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
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
		{name: "escaping", msg: "quote \" backslash \\ newline \n tab \t ctrl \x01 html <&> bad \xff utf8 é ls \u2028 ps \u2029", attrs: []slog.Attr{
			slog.String("k\"ey", "v\nal"), slog.String("", "empty key")}},
		{name: "levels", level: slog.LevelWarn + 2, msg: "offset"},
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
