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
	"text/tabwriter"
	"time"

	"github.com/snail-log/snail/collector"
	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
)

type benchConfig struct {
	entries    int
	goroutines int
	dir        string
	keep       bool
}

func bench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("snail bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c benchConfig
	fs.IntVar(&c.entries, "entries", 2_000_000, "log entries to write in each run (env SNAIL_BENCH_ENTRIES)")
	fs.IntVar(&c.goroutines, "goroutines", 64, "goroutines logging at once (env SNAIL_BENCH_GOROUTINES)")
	fs.StringVar(&c.dir, "dir", "", "directory for the output files (default: a new temporary directory)")
	fs.BoolVar(&c.keep, "keep", false, "keep the output files")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: snail bench [flags]\n\n"+
			"Writes -entries JSON log lines (about 200 bytes each) from -goroutines goroutines to a\n"+
			"file, three times: through snail (the sink Writer that zap, zerolog and slog write to,\n"+
			"over filelog: one write() per batch); through snail to a collector on loopback (netlog,\n"+
			"every batch acked after the collector wrote it); and through a mutex with one write()\n"+
			"per entry, as an unbuffered logger does. Then counts the lines in each file and prints\n"+
			"entries/s, write() calls and call latency.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := envFlags(fs, map[string]string{"entries": "SNAIL_BENCH_ENTRIES", "goroutines": "SNAIL_BENCH_GOROUTINES"}); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.entries < 1 || c.goroutines < 1 {
		return fmt.Errorf("-entries and -goroutines must be at least 1")
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

	fmt.Fprintf(stdout, "snail bench: %d entries from %d goroutines into %s\n\n", c.entries, c.goroutines, c.dir)
	var results []benchResult
	for _, w := range []struct {
		name string
		open opener
	}{
		{"snail sink -> filelog", openSnail},
		{"snail sink -> netlog -> collector", openNet},
		{"mutex, write per entry", openMutex},
	} {
		r, err := runBench(c, w.name, w.open)
		if err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
		results = append(results, r)
	}

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "writer\tentries/s\tMB/s\tlines in file\tlost\twrite()s per 1000\tp50 call\tp99 call\tvs write-per-entry\t")
	base := results[len(results)-1].rate()
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%d\t%d\t%.2f\t%v\t%v\t%.1fx\t\n", r.name, r.rate(), r.rate()*float64(r.lineSize)/1e6,
			r.lines, c.entries-r.lines, float64(r.writes)*1000/float64(c.entries), r.p50, r.p99, r.rate()/base)
	}
	return tw.Flush()
}

type benchResult struct {
	name     string
	elapsed  time.Duration
	lines    int
	lineSize int
	p50, p99 time.Duration
	entries  int
	writes   int64
}

func (r benchResult) rate() float64 { return float64(r.entries) / r.elapsed.Seconds() }

// snailWriter is the product path: a sink Writer (what zap, zerolog and
// slog write to) over a filelog File (one write() per batch).
func openSnail(path string) (func([]byte) error, func() error, func() int64, error) {
	f, err := filelog.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	w, err := sink.New(f)
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	write := func(p []byte) error { _, err := w.Write(p); return err }
	return write, w.Close, func() int64 { return f.Stats().Writes }, nil
}

// openNet is the network path: a sink Writer over a netlog Stream to a
// collector on loopback (in this process), which writes path. Close
// returns once every batch is acked; write()s are the collector's, one
// per batch.
func openNet(path string) (func([]byte) error, func() error, func() int64, error) {
	c, err := collector.New(collector.Config{Dir: filepath.Dir(path), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, nil, nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.Close()
		return nil, nil, nil, err
	}
	served := make(chan error, 1)
	go func() { served <- c.Serve(l) }()
	stop := func() error {
		err := c.Shutdown(context.Background())
		<-served
		return err
	}
	st, err := netlog.Dial(l.Addr().String(), netlog.WithStreamName(strings.TrimSuffix(filepath.Base(path), ".log")))
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	w, err := sink.New(st)
	if err != nil {
		st.Close()
		stop()
		return nil, nil, nil, err
	}
	write := func(p []byte) error { _, err := w.Write(p); return err }
	closeAll := func() error { return errors.Join(w.Close(), stop()) }
	return write, closeAll, func() int64 { return int64(st.Stats().Acked) }, nil
}

// openMutex is what an unbuffered logger does: a mutex and a write() per
// entry.
func openMutex(path string) (func([]byte) error, func() error, func() int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, nil, err
	}
	var mu sync.Mutex
	var n int64
	return func(p []byte) error {
		mu.Lock()
		defer mu.Unlock()
		n++
		_, err := f.Write(p)
		return err
	}, f.Close, func() int64 { return n }, nil
}

// opener opens a writer on path: its write and close functions, and a count
// of the write() calls it made.
type opener func(path string) (write func([]byte) error, close func() error, writes func() int64, err error)

func runBench(c benchConfig, name string, open opener) (benchResult, error) {
	path := filepath.Join(c.dir, fmt.Sprintf("bench-%d.log", time.Now().UnixNano()))
	write, closeW, writes, err := open(path)
	if err != nil {
		return benchResult{}, err
	}
	r := benchResult{name: name, entries: c.entries}
	lat := make([][]time.Duration, c.goroutines)
	errs := make(chan error, c.goroutines)
	var wg sync.WaitGroup
	start := time.Now()
	for g := range c.goroutines {
		n := c.entries / c.goroutines
		if g < c.entries%c.goroutines {
			n++
		}
		wg.Go(func() {
			line := make([]byte, 0, 256)
			samples := make([]time.Duration, 0, n/64+1)
			for i := range n {
				line = appendLine(line[:0], g, i)
				t0 := time.Now()
				if err := write(line); err != nil {
					errs <- err
					return
				}
				if i%64 == 0 {
					samples = append(samples, time.Since(t0))
				}
			}
			lat[g] = samples
		})
	}
	wg.Wait()
	if err := closeW(); err != nil {
		return r, err
	}
	r.elapsed = time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return r, err
	}
	r.lineSize = len(appendLine(nil, 0, 0))
	r.writes = writes()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	if r.lines, err = countLines(path); err != nil {
		return r, err
	}
	if !c.keep {
		os.Remove(path)
	}
	return r, nil
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

func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	br := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, 1<<20)
	for {
		k, err := br.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
