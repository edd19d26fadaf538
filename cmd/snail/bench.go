package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/snail-log/snail/collector"
	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
)

// Front-ends snail bench can log through.
var benchFronts = []string{"zap", "zerolog", "slog", "raw"}

type benchConfig struct {
	entries    int
	goroutines int
	front      string
	comp       encoder.Compression
	dir        string
	keep       bool
	progress   bool
}

// maxBenchGoroutines bounds -goroutines: far past the 1024 of the
// benchmarks, and a few hundred MB of stacks.
const maxBenchGoroutines = 1 << 17

func bench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("snail bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c benchConfig
	var comp string
	fs.IntVar(&c.entries, "entries", 2_000_000, "log entries to write in each run [SNAIL_BENCH_ENTRIES]")
	fs.IntVar(&c.goroutines, "goroutines", 64, fmt.Sprintf("goroutines logging at once, at most %d [SNAIL_BENCH_GOROUTINES]", maxBenchGoroutines))
	fs.StringVar(&c.front, "front", "zap", "the logger entries go through: zap, zerolog, slog or raw (pre-encoded lines) [SNAIL_BENCH_FRONT]")
	fs.StringVar(&comp, "compress", "none", "compression on the wire to the collector: none, s2 or zstd [SNAIL_BENCH_COMPRESS]")
	fs.StringVar(&c.dir, "dir", "", "directory for the output files (default: a new temporary directory)")
	fs.BoolVar(&c.keep, "keep", false, "keep the output files")
	fs.BoolVar(&c.progress, "progress", true, "show a progress bar when stderr is a terminal")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: snail bench [flags]\n\n"+
			"Logs -entries JSON entries of about 200 bytes from -goroutines goroutines through a\n"+
			"logger (-front), three times: through snail to a collector started in this process on\n"+
			"loopback (every batch acked once the collector wrote it to its file); through snail\n"+
			"into a local file; and, as the reference, the way that logger usually writes a file\n"+
			"(zap: its BufferedWriteSyncer of 256 KiB; zerolog, slog: straight to the file; raw: a\n"+
			"mutex and one write() per entry). Then counts the lines in each output file and prints\n"+
			"entries/s, MB/s, entries acked and lost, write() calls and call latency.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := envFlags(fs, map[string]string{"entries": "SNAIL_BENCH_ENTRIES", "goroutines": "SNAIL_BENCH_GOROUTINES",
		"front": "SNAIL_BENCH_FRONT", "compress": "SNAIL_BENCH_COMPRESS"}); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if c.entries < 1 || c.goroutines < 1 {
		return flagError("-entries and -goroutines must be at least 1")
	}
	if c.goroutines > min(c.entries, maxBenchGoroutines) {
		// Each goroutine has a stack: 100 million of them would take
		// the machine's memory before the first entry.
		return flagError("-goroutines %d: at most -entries (%d) and %d", c.goroutines, c.entries, maxBenchGoroutines)
	}
	if !slices.Contains(benchFronts, c.front) {
		return flagError("-front %q: want one of %s", c.front, strings.Join(benchFronts, ", "))
	}
	var err error
	if c.comp, err = encoder.ParseCompression(comp); err != nil {
		return flagError("-compress: %w", err)
	}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "snail-bench-")
		if err != nil {
			return err
		}
		c.dir = d
		if !c.keep {
			defer os.RemoveAll(d)
		}
	}

	fmt.Fprintf(stdout, "snail bench: %d entries through %s from %d goroutines, into %s\n\n", c.entries, c.front, c.goroutines, c.dir)
	ref := map[string]string{"zap": "zap BufferedWriteSyncer -> file", "zerolog": "zerolog -> file",
		"slog": "slog.JSONHandler -> file", "raw": "mutex, write() per entry"}[c.front]
	targets := []struct {
		name string
		open opener
	}{
		{c.front + " -> snail -> collector (" + c.comp.String() + ")", openNet},
		{c.front + " -> snail -> file", openSnail},
		{ref, openReference},
	}
	var results []benchResult
	for _, t := range targets {
		r, err := runBench(c, t.name, t.open, stderr)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		results = append(results, r)
	}

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "writer\tentries/s\tMB/s\tacked\tlost\twrite()s per 1000\tp50 call\tp99 call\tvs reference\t")
	base := results[len(results)-1].rate()
	for _, r := range results {
		acked := "-"
		if r.acked >= 0 {
			acked = strconv.FormatInt(r.acked, 10)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%d\t%.2f\t%v\t%v\t%.1fx\t\n", r.name, r.rate(), r.rate()*r.lineSize/1e6,
			acked, c.entries-r.lines, float64(r.writes)*1000/float64(c.entries), short(r.p50), short(r.p99), r.rate()/base)
	}
	return tw.Flush()
}

// short rounds d to three significant digits: 1.23µs, 45.6ms.
func short(d time.Duration) time.Duration {
	for unit := time.Duration(1000); unit <= time.Hour; unit *= 10 {
		if d < unit {
			return d.Round(unit / 1000)
		}
	}
	return d.Round(time.Second)
}

type benchResult struct {
	name     string
	elapsed  time.Duration
	lines    int
	lineSize float64 // bytes per line in the output file
	p50, p99 time.Duration
	entries  int
	writes   int64
	acked    int64 // entries acked by the collector; -1 for files
}

func (r benchResult) rate() float64 { return float64(r.entries) / r.elapsed.Seconds() }

// logFunc logs entry i of goroutine g. buf is the goroutine's scratch
// buffer for pre-encoded lines; it returns it for reuse.
type logFunc func(g, i int, buf []byte) ([]byte, error)

// bench is one writer under test, open on a file.
type benchTarget struct {
	log    logFunc
	close  func() error
	writes func() int64 // write() calls into the output file
	acked  func() int64 // entries acked; nil for files
	path   string       // the output file, to count its lines
}

// opener opens a target writing path through front-end c.front.
type opener func(c benchConfig, path string) (*benchTarget, error)

// snailLogger logs through front-end front into a sink Writer.
func snailLogger(front string, w *sink.Writer) logFunc {
	switch front {
	case "zap":
		return zapLogger(sink.NewZapCore(zapEncoder(), w, zap.InfoLevel))
	case "zerolog":
		return zerologLogger(w)
	case "slog":
		return slogLogger(sink.NewSlogHandler(w, nil))
	}
	return func(g, i int, buf []byte) ([]byte, error) {
		buf = appendLine(buf[:0], g, i)
		_, err := w.Write(buf)
		return buf, err
	}
}

func zapEncoder() zapcore.Encoder { return zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()) }

func zapLogger(core zapcore.Core) logFunc {
	l := zap.New(core)
	return func(g, i int, buf []byte) ([]byte, error) {
		l.Info("request completed", zap.Int("goroutine", g), zap.Int("seq", i), zap.String("path", "/api/v1/users"),
			zap.Int("status", 200), zap.Float64("latency_ms", 12.5), zap.String("request_id", "7f3c9a2e-51b4"))
		return buf, nil
	}
}

func zerologLogger(w io.Writer) logFunc {
	l := zerolog.New(w).With().Timestamp().Logger()
	return func(g, i int, buf []byte) ([]byte, error) {
		l.Info().Int("goroutine", g).Int("seq", i).Str("path", "/api/v1/users").Int("status", 200).
			Float64("latency_ms", 12.5).Str("request_id", "7f3c9a2e-51b4").Msg("request completed")
		return buf, nil
	}
}

func slogLogger(h slog.Handler) logFunc {
	l := slog.New(h)
	ctx := context.Background()
	return func(g, i int, buf []byte) ([]byte, error) {
		l.LogAttrs(ctx, slog.LevelInfo, "request completed", slog.Int("goroutine", g), slog.Int("seq", i),
			slog.String("path", "/api/v1/users"), slog.Int("status", 200), slog.Float64("latency_ms", 12.5),
			slog.String("request_id", "7f3c9a2e-51b4"))
		return buf, nil
	}
}

// openSnail is snail into a local file: a sink Writer over a filelog File
// (one write() per batch).
func openSnail(c benchConfig, path string) (*benchTarget, error) {
	f, err := filelog.Open(path)
	if err != nil {
		return nil, err
	}
	w, err := sink.New(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &benchTarget{log: snailLogger(c.front, w), close: w.Close, writes: func() int64 { return f.Stats().Writes }, path: path}, nil
}

// openNet is snail's main job: a sink Writer over a netlog Stream to a
// collector on loopback, started in this process, which writes path.
// Close returns once every batch is acked; the write()s are the
// collector's, one per batch.
func openNet(c benchConfig, path string) (*benchTarget, error) {
	col, err := collector.New(collector.Config{Dir: filepath.Dir(path), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		col.Close()
		return nil, err
	}
	served := make(chan error, 1)
	go func() { served <- col.Serve(l) }()
	stop := func() error {
		err := col.Shutdown(context.Background())
		<-served
		return err
	}
	st, err := netlog.Dial(l.Addr().String(), netlog.WithStreamName(strings.TrimSuffix(filepath.Base(path), ".log")),
		netlog.WithCompression(c.comp))
	if err != nil {
		stop()
		return nil, err
	}
	w, err := sink.New(st)
	if err != nil {
		st.Close()
		stop()
		return nil, err
	}
	return &benchTarget{
		log:    snailLogger(c.front, w),
		close:  func() error { return errors.Join(w.Close(), stop()) },
		writes: func() int64 { return int64(st.Stats().Acked) },
		acked:  func() int64 { return int64(st.Stats().Entries) },
		path:   path,
	}, nil
}

// openReference is the way each front-end usually writes a file: zap
// through its BufferedWriteSyncer, zerolog and slog straight into the file
// (one write() per entry), raw lines behind a mutex with one write() each.
func openReference(c benchConfig, path string) (*benchTarget, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	cf := &countingFile{f: f}
	t := &benchTarget{close: f.Close, writes: cf.n.Load, path: path}
	switch c.front {
	case "zap":
		ws := &zapcore.BufferedWriteSyncer{WS: cf, Size: 256 << 10}
		t.log = zapLogger(zapcore.NewCore(zapEncoder(), ws, zap.InfoLevel))
		t.close = func() error { return errors.Join(ws.Stop(), f.Close()) }
	case "zerolog":
		t.log = zerologLogger(cf)
	case "slog":
		t.log = slogLogger(slog.NewJSONHandler(cf, nil))
	default:
		var mu sync.Mutex
		t.log = func(g, i int, buf []byte) ([]byte, error) {
			buf = appendLine(buf[:0], g, i)
			mu.Lock()
			defer mu.Unlock()
			_, err := cf.Write(buf)
			return buf, err
		}
	}
	return t, nil
}

// countingFile counts the write() calls into a file.
type countingFile struct {
	f *os.File
	n atomic.Int64
}

func (c *countingFile) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.f.Write(p)
}

func (c *countingFile) Sync() error { return c.f.Sync() }

func runBench(c benchConfig, name string, open opener, stderr io.Writer) (benchResult, error) {
	path := filepath.Join(c.dir, fmt.Sprintf("bench-%d.log", time.Now().UnixNano()))
	t, err := open(c, path)
	if err != nil {
		return benchResult{}, err
	}
	r := benchResult{name: name, entries: c.entries, acked: -1}
	lat := make([][]time.Duration, c.goroutines)
	errs := make(chan error, c.goroutines)
	var done atomic.Int64
	stopBar := startProgress(c, name, &done, stderr)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range c.goroutines {
		n := c.entries / c.goroutines
		if g < c.entries%c.goroutines {
			n++
		}
		wg.Go(func() {
			buf := make([]byte, 0, 256)
			samples := make([]time.Duration, 0, n/64+1)
			var err error
			for i := range n {
				if i%64 == 0 {
					t0 := time.Now()
					buf, err = t.log(g, i, buf)
					samples = append(samples, time.Since(t0))
					done.Add(64)
				} else {
					buf, err = t.log(g, i, buf)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			lat[g] = samples
		})
	}
	wg.Wait()
	closeErr := t.close()
	r.elapsed = time.Since(start)
	stopBar()
	if closeErr != nil {
		return r, closeErr
	}
	close(errs)
	if err := <-errs; err != nil {
		return r, err
	}
	r.writes = t.writes()
	if t.acked != nil {
		r.acked = t.acked()
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	var size int64
	if r.lines, size, err = countLines(t.path); err != nil {
		return r, err
	}
	if r.lines > 0 {
		r.lineSize = float64(size) / float64(r.lines)
	}
	if !c.keep {
		os.Remove(t.path)
	}
	return r, nil
}

// startProgress draws a progress bar for the run on stderr until the
// returned function is called; it then finishes the line.
func startProgress(c benchConfig, name string, done *atomic.Int64, stderr io.Writer) func() {
	if !c.progress || !isTerminal(stderr) {
		return func() {}
	}
	const width = 30
	draw := func(n int64, elapsed time.Duration) {
		n = min(n, int64(c.entries))
		full := int(n * width / int64(c.entries))
		fmt.Fprintf(stderr, "\r%-44s [%s%s] %3d%% %6.2f M entries/s", name, strings.Repeat("#", full),
			strings.Repeat(".", width-full), n*100/int64(c.entries), float64(n)/elapsed.Seconds()/1e6)
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				draw(done.Load(), time.Since(start))
			case <-stop:
				draw(int64(c.entries), time.Since(start))
				fmt.Fprintln(stderr)
				return
			}
		}
	}()
	return func() {
		close(stop)
		<-stopped
	}
}

// isTerminal reports whether w is a character device (a terminal; or
// /dev/null, where drawing is harmless), not a file or a pipe.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// appendLine appends a zap-like JSON line of about 200 bytes.
func appendLine(b []byte, g, i int) []byte {
	b = append(b, `{"level":"info","ts":1764115200.123456,"caller":"bench/main.go:42","msg":"request completed","goroutine":`...)
	b = strconv.AppendInt(b, int64(g), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `,"path":"/api/v1/users","status":200,"latency_ms":12.5}`...)
	return append(b, '\n')
}

// countLines returns the number of lines in the file at path and its size.
func countLines(path string) (lines int, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, 1<<20)
	for {
		k, err := br.Read(buf)
		lines += bytes.Count(buf[:k], []byte{'\n'})
		size += int64(k)
		if err == io.EOF {
			return lines, size, nil
		}
		if err != nil {
			return lines, size, err
		}
	}
}
