package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/snail-log/snail/batcher"
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
			"file, twice: through snail's batcher (one write() per batch) and through a mutex with\n"+
			"one write() per entry, as an unbuffered logger does. Then counts the lines in each\n"+
			"file and prints entries/s and call latency.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := envInts(fs, map[string]string{"entries": "SNAIL_BENCH_ENTRIES", "goroutines": "SNAIL_BENCH_GOROUTINES"}); err != nil {
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
		open func(f *os.File) (write func([]byte) error, close func() error, err error)
	}{
		{"snail batcher -> file", openSnail},
		{"mutex, write per entry", openMutex},
	} {
		r, err := runBench(c, w.name, w.open)
		if err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
		results = append(results, r)
	}

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "writer\tentries/s\tMB/s\tlines in file\tlost\tp50 call\tp99 call\tvs write-per-entry\t")
	base := results[len(results)-1].rate()
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%d\t%d\t%v\t%v\t%.1fx\t\n", r.name, r.rate(), r.rate()*float64(r.lineSize)/1e6,
			r.lines, c.entries-r.lines, r.p50, r.p99, r.rate()/base)
	}
	return tw.Flush()
}

// envInts sets flag defaults from environment variables.
func envInts(fs *flag.FlagSet, env map[string]string) error {
	for name, key := range env {
		if v, ok := os.LookupEnv(key); ok {
			if _, err := strconv.Atoi(v); err != nil {
				return fmt.Errorf("%s=%q: not a number", key, v)
			}
			if err := fs.Set(name, v); err != nil {
				return err
			}
		}
	}
	return nil
}

type benchResult struct {
	name     string
	elapsed  time.Duration
	lines    int
	lineSize int
	p50, p99 time.Duration
	entries  int
}

func (r benchResult) rate() float64 { return float64(r.entries) / r.elapsed.Seconds() }

func openSnail(f *os.File) (func([]byte) error, func() error, error) {
	b, err := batcher.NewBytes(func(batch []byte, _ int) error {
		_, err := f.Write(batch)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return func(p []byte) error { _, err := b.Write(p); return err }, b.Close, nil
}

func openMutex(f *os.File) (func([]byte) error, func() error, error) {
	var mu sync.Mutex
	return func(p []byte) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := f.Write(p)
		return err
	}, func() error { return nil }, nil
}

func runBench(c benchConfig, name string, open func(*os.File) (func([]byte) error, func() error, error)) (benchResult, error) {
	path := filepath.Join(c.dir, fmt.Sprintf("bench-%d.log", time.Now().UnixNano()))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		return benchResult{}, err
	}
	defer f.Close()
	write, closeW, err := open(f)
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
