package benchmarks

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/diode"
	"github.com/snail-log/snail"
	"github.com/snail-log/snail/sink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"
)

// target is one way of logging: log(i) logs one entry; finish flushes and
// closes everything and returns the path of the file to count (or "").
type target struct {
	log    func(i int)
	finish func() string
	lost   func() int64  // entries the target itself reports lost (the diode)
	stalls func() uint64 // snail: writes that waited for a free buffer
	bufs   func() int    // snail: batch buffers held at the end
}

// stalling reports w's stalls with t.
func stalling(t target, w *sink.Writer) target {
	t.stalls = func() uint64 { return w.Stats().Stalls }
	t.bufs = func() int { return w.Stats().Buffers }
	return t
}

const (
	msg       = "request completed"
	method    = "GET"
	path      = "/api/v1/users/12345/orders"
	requestID = "4f3c2a1b-9d8e-4c7b-a6f5-0e1d2c3b4a59"
)

func zapEncoder() zapcore.Encoder { return zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()) }

func zapTarget(b *testing.B, core zapcore.Core, finish func() string) target {
	l := zap.New(core)
	return target{
		log: func(i int) {
			l.Info(msg, zap.String("method", method), zap.String("path", path), zap.Int("status", 200),
				zap.Float64("latency_ms", 12.5), zap.String("request_id", requestID), zap.Int("user_id", i))
		},
		finish: func() string { l.Sync(); return finish() },
	}
}

func openFile(b *testing.B, name string) (*os.File, string) {
	p := filepath.Join(b.TempDir(), name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		b.Fatal(err)
	}
	return f, p
}

// envSinkOptions are the sink options the environment asks for, for
// experiments: SNAIL_BENCH_BATCH sets the batch bytes (256 KiB ran 0.6-0.8x
// the default 1 MiB on raw lines to a collector here), SNAIL_BENCH_BUFFERS
// the buffer count (fixed: the sink makes no more).
func envSinkOptions() []sink.Option {
	var opts []sink.Option
	if n, _ := strconv.Atoi(os.Getenv("SNAIL_BENCH_BATCH")); n > 0 {
		opts = append(opts, sink.WithBatchBytes(n))
	}
	if n, _ := strconv.Atoi(os.Getenv("SNAIL_BENCH_BUFFERS")); n > 0 {
		opts = append(opts, sink.WithBuffers(n))
	}
	return opts
}

func snailWriter(b *testing.B) (*sink.Writer, string) {
	p := filepath.Join(b.TempDir(), "snail.log")
	w, err := snail.OpenFile(p, nil, envSinkOptions()...)
	if err != nil {
		b.Fatal(err)
	}
	return w, p
}

func closer(c io.Closer, p string) func() string {
	return func() string { c.Close(); return p }
}

var zapTargets = []struct {
	name string
	make func(b *testing.B) target
}{
	{"zap+snail", func(b *testing.B) target {
		w, p := snailWriter(b)
		return stalling(zapTarget(b, sink.NewZapCore(zapEncoder(), w, zap.InfoLevel), closer(w, p)), w)
	}},
	{"zap.file", func(b *testing.B) target {
		f, p := openFile(b, "zap.log")
		return zapTarget(b, zapcore.NewCore(zapEncoder(), zapcore.Lock(f), zap.InfoLevel), closer(f, p))
	}},
	{"zap.BufferedWriteSyncer", func(b *testing.B) target {
		f, p := openFile(b, "zap.log")
		ws := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(f), Size: 256 << 10}
		return zapTarget(b, zapcore.NewCore(zapEncoder(), ws, zap.InfoLevel), func() string { ws.Stop(); f.Close(); return p })
	}},
	{"zap+lumberjack", func(b *testing.B) target {
		p := filepath.Join(b.TempDir(), "lj.log")
		lj := &lumberjack.Logger{Filename: p, MaxSize: 100_000}
		return zapTarget(b, zapcore.NewCore(zapEncoder(), zapcore.AddSync(lj), zap.InfoLevel), closer(lj, p))
	}},
	{"zap+snail.Discard", func(b *testing.B) target {
		w := discardWriter(b)
		return stalling(zapTarget(b, sink.NewZapCore(zapEncoder(), w, zap.InfoLevel), func() string { w.Close(); return "" }), w)
	}},
	{"zap.Discard", func(b *testing.B) target {
		return zapTarget(b, zapcore.NewCore(zapEncoder(), zapcore.AddSync(io.Discard), zap.InfoLevel), func() string { return "" })
	}},
}

func zerologTarget(w io.Writer, finish func() string) target {
	l := zerolog.New(w).With().Timestamp().Logger()
	return target{
		log: func(i int) {
			l.Info().Str("method", method).Str("path", path).Int("status", 200).Float64("latency_ms", 12.5).
				Str("request_id", requestID).Int("user_id", i).Msg(msg)
		},
		finish: finish,
	}
}

var zerologTargets = []struct {
	name string
	make func(b *testing.B) target
}{
	{"zerolog+snail", func(b *testing.B) target {
		w, p := snailWriter(b)
		return stalling(zerologTarget(w, closer(w, p)), w)
	}},
	{"zerolog.file", func(b *testing.B) target { f, p := openFile(b, "zl.log"); return zerologTarget(f, closer(f, p)) }},
	{"zerolog.diode", func(b *testing.B) target {
		f, p := openFile(b, "zl.log")
		var dropped atomic.Int64
		dw := diode.NewWriter(f, 1000, 10*time.Millisecond, func(missed int) { dropped.Add(int64(missed)) })
		t := zerologTarget(dw, func() string { dw.Close(); return p }) // Close closes f too
		t.lost = dropped.Load
		return t
	}},
	{"zerolog+snail.Discard", func(b *testing.B) target {
		w := discardWriter(b)
		return stalling(zerologTarget(w, func() string { w.Close(); return "" }), w)
	}},
	{"zerolog.Discard", func(b *testing.B) target { return zerologTarget(io.Discard, func() string { return "" }) }},
}

func slogTarget(h slog.Handler, finish func() string) target {
	l := slog.New(h)
	return target{
		log: func(i int) {
			l.LogAttrs(context.Background(), slog.LevelInfo, msg, slog.String("method", method), slog.String("path", path),
				slog.Int("status", 200), slog.Float64("latency_ms", 12.5), slog.String("request_id", requestID),
				slog.Int("user_id", i))
		},
		finish: finish,
	}
}

var slogTargets = []struct {
	name string
	make func(b *testing.B) target
}{
	{"slog+snail", func(b *testing.B) target {
		w, p := snailWriter(b)
		return stalling(slogTarget(sink.NewSlogHandler(w, nil), closer(w, p)), w)
	}},
	{"slog.JSONHandler.file", func(b *testing.B) target {
		f, p := openFile(b, "slog.log")
		return slogTarget(slog.NewJSONHandler(f, nil), closer(f, p))
	}},
	{"slog.JSONHandler.Discard", func(b *testing.B) target {
		return slogTarget(slog.NewJSONHandler(io.Discard, nil), func() string { return "" })
	}},
	{"slog+snail.Discard", func(b *testing.B) target {
		w := discardWriter(b)
		return stalling(slogTarget(sink.NewSlogHandler(w, nil), func() string { w.Close(); return "" }), w)
	}},
	{"slog.noopHandler", func(b *testing.B) target {
		return slogTarget(noopHandler{}, func() string { return "" })
	}},
}

// noopHandler accepts every record and does nothing with it: slog.Logger's
// own cost per call (the clock, the caller's PC, the record), which bounds
// what any handler can reach through slog.Logger.
type noopHandler struct{}

func (noopHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (noopHandler) Handle(context.Context, slog.Record) error { return nil }
func (h noopHandler) WithAttrs([]slog.Attr) slog.Handler      { return h }
func (h noopHandler) WithGroup(string) slog.Handler           { return h }

// discardWriter is a sink Writer whose destination drops every batch:
// snail's own cost, without the write() into the page cache.
func discardWriter(b *testing.B) *sink.Writer {
	w, err := sink.New(discardDest{})
	if err != nil {
		b.Fatal(err)
	}
	return w
}

// discardDest is a sink destination that drops batches: snail's own cost
// without the disk. Like a file, it takes a batch in pieces (VectorWriter),
// so that the sink does here what it does for a file, short of the
// write(): without it, the sink moved each batch's chunks together first.
type discardDest struct{}

func (discardDest) WriteBatch([]byte, int) error      { return nil }
func (discardDest) WriteBatchVec([][]byte, int) error { return nil }
func (discardDest) Sync() error                       { return nil }
func (discardDest) Close() error                      { return nil }

var _ sink.VectorWriter = discardDest{}

func countLines(b *testing.B, p string) int {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n := 0
	r := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, 1<<20)
	for {
		k, err := r.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err != nil {
			return n
		}
	}
}

// writeSyscalls reads the process's count of write system calls.
func writeSyscalls() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte("syscw: ")); ok {
			n, _ := strconv.ParseInt(string(v), 10, 64)
			return n
		}
	}
	return -1
}
