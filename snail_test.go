package snail

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"
	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestMain(m *testing.M) {
	exitChild()
	goleak.VerifyTestMain(m)
}

// A File is a sink destination that takes batches in pieces (one writev).
var _ interface {
	sink.Destination
	sink.VectorWriter
} = (*filelog.File)(nil)

// A Stream is a sink destination that keeps batches until they are acked
// and, at the Writer's Close, waits for a collector that is down.
var _ interface {
	sink.Destination
	sink.Keeper
	sink.Drainer
} = (*netlog.Stream)(nil)

func TestParseURL(t *testing.T) {
	good := "snail:///var/log/app.log?maxsize=100MiB&every=1h&maxbackups=unlimited&maxage=168h&compress=zstd" +
		"&fsync=1s&mode=0600&follow=1s&drop_below=warn&window=50ms&batch=256KiB&buffers=8"
	u, _ := url.Parse(good)
	path, fopts, sopts, err := ParseURL(u)
	if err != nil || path != "/var/log/app.log" || len(fopts) != 8 || len(sopts) != 4 {
		t.Fatalf("ParseURL(%s) = %q, %d, %d, %v", good, path, len(fopts), len(sopts), err)
	}
	for _, rel := range []string{"snail:app.log?maxsize=1MiB", "snail:logs/a%20b.log"} {
		u, _ := url.Parse(rel)
		path, _, _, err := ParseURL(u)
		if err != nil || filepath.IsAbs(path) || !strings.HasSuffix(path, ".log") || strings.Contains(path, "%") {
			t.Fatalf("ParseURL(%s) = %q, %v: want the relative path", rel, path, err)
		}
	}
	for _, bad := range []string{
		"file:///x.log", "snail://host/x.log", "snail://", "snail:///x.log?maxsize=lots", "snail:///x.log?compress=lz4",
		"snail:///x.log?fsync=sometimes", "snail:///x.log?drop_below=loud", "snail:///x.log?colour=blue",
		"snail:///x.log?every=daily", "snail:///x.log?mode=rw", "snail:///x.log?maxbackups=many",
		"snail:///x.log?buffers=lots", "snail:///x.log?follow=often",
	} {
		u, _ := url.Parse(bad)
		if _, _, _, err := ParseURL(u); err == nil {
			t.Fatalf("ParseURL(%s) accepted", bad)
		}
	}
	// Of several bad parameters, the same one is named every time.
	u, _ = url.Parse("snail:///x.log?zeta=1&maxsize=lots&compress=lz4")
	for range 20 {
		if _, _, _, err := ParseURL(u); err == nil || !strings.Contains(err.Error(), "compress") {
			t.Fatalf("ParseURL(%s) = %v, want the error of compress, the first by name", u, err)
		}
	}
	for in, want := range map[string]int64{"3KB": 3000, "5 MiB": 5 << 20, "8": 8, "8191PiB": -1, "1.5MiB": -1, "-1": -1,
		"9999999999GiB": -1, "17179869184GiB": -1, "8589934591GiB": 8589934591 << 30} {
		n, err := ParseSize(in)
		if want < 0 && (err == nil || !strings.Contains(err.Error(), in)) || want >= 0 && (err != nil || n != want) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, n, err, want)
		}
	}
}

// TestZapOutputPath opens a snail URL through zap's sink registry, as
// zap.Config.Build does for OutputPaths.
func TestZapOutputPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	ws, closeSinks, err := zap.Open("snail://" + path + "?maxsize=1MiB&compress=gzip&window=1s")
	if err != nil {
		t.Fatal(err)
	}
	l := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), ws, zap.InfoLevel))
	l.Info("via the snail scheme", zap.Int("n", 1))
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !bytes.Contains(b, []byte(`"msg":"via the snail scheme","n":1`)) {
		t.Fatalf("file: %q", b)
	}
	closeSinks()
	if _, _, err := zap.Open("snail:///no/such/dir/app.log"); err == nil || !strings.Contains(err.Error(), "/no/such/dir/app.log") {
		t.Fatalf("zap.Open of a missing directory = %v, want an error naming the path", err)
	}
}

// frontEnd logs entries with unique ids through one of the loggers.
type frontEnd struct {
	name string
	log  func(w *sink.Writer) func(g, i int)
}

var frontEnds = []frontEnd{
	{"zap", func(w *sink.Writer) func(g, i int) {
		l := zap.New(sink.NewZapCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), w, zap.InfoLevel))
		return func(g, i int) { l.Info("entry", zap.Int("g", g), zap.Int("i", i), zap.String("path", "/api/v1/users")) }
	}},
	{"zerolog", func(w *sink.Writer) func(g, i int) {
		l := zerolog.New(w).With().Timestamp().Logger()
		return func(g, i int) { l.Info().Int("g", g).Int("i", i).Str("path", "/api/v1/users").Msg("entry") }
	}},
	{"slog", func(w *sink.Writer) func(g, i int) {
		l := slog.New(sink.NewSlogHandler(w, nil))
		return func(g, i int) { l.Info("entry", "g", g, "i", i, "path", "/api/v1/users") }
	}},
}

// TestEveryEntryExactlyOnce is the proof of the sink and file issue: 64
// goroutines x 50k entries with unique ids through each front-end into a
// file rotated every few MB and compressed with zstd; after Close every id
// is found exactly once across the live and rotated files.
func TestEveryEntryExactlyOnce(t *testing.T) {
	goroutines, per := 64, 50_000
	if testing.Short() {
		per = 2_000
	}
	for _, fe := range frontEnds {
		t.Run(fe.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "app.log")
			w, err := OpenFile(path, []filelog.Option{filelog.WithMaxSize(4 << 20), filelog.WithMaxBackups(filelog.Unlimited),
				filelog.WithCompression(filelog.Zstd)})
			if err != nil {
				t.Fatal(err)
			}
			logAll(fe.log(w), goroutines, per)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "app*"))
			rotated := 0
			for _, name := range files {
				if name != path {
					rotated++
				}
			}
			if rotated == 0 && !testing.Short() {
				t.Fatal("no rotation happened")
			}
			checkAll(t, files, goroutines, per)
		})
	}
}

// logAll logs ids 0..per-1 from each of goroutines goroutines and waits.
func logAll(log func(g, i int), goroutines, per int) {
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range per {
				log(g, i)
			}
		})
	}
	wg.Wait()
}

// checkAll fails unless the files hold every id of goroutines x per
// exactly once, with no torn line.
func checkAll(t *testing.T, files []string, goroutines, per int) {
	t.Helper()
	seen := make([][]bool, goroutines)
	for g := range seen {
		seen[g] = make([]bool, per)
	}
	for _, name := range files {
		countIDs(t, name, seen)
	}
	for g := range seen {
		for i, ok := range seen[g] {
			if !ok {
				t.Fatalf("entry %d/%d missing", g, i)
			}
		}
	}
}

// countIDs marks the ids found in one file (decompressing .zst; a rotated
// file that Close left uncompressed is read as is) and fails on a duplicate
// or a torn line.
func countIDs(t *testing.T, name string, seen [][]bool) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(name, ".zst") {
		zr, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		g, i := field(sc.Bytes(), `"g":`), field(sc.Bytes(), `"i":`)
		if g < 0 || i < 0 || g >= len(seen) || i >= len(seen[g]) {
			t.Fatalf("%s: bad line %q", name, sc.Text())
		}
		if seen[g][i] {
			t.Fatalf("%s: entry %d/%d twice", name, g, i)
		}
		seen[g][i] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func field(line []byte, key string) int {
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return -1
	}
	rest := line[i+len(key):]
	j := bytes.IndexAny(rest, ",}")
	if j < 0 {
		return -1
	}
	n, err := strconv.Atoi(string(rest[:j]))
	if err != nil {
		return -1
	}
	return n
}

// FuzzParseURL: any URL is read into options or refused with an error,
// never a panic; what is read names a file or an address; and an error
// never shows the token the URL carries (zap repeats its errors whole, in
// logs that others read).
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"snail:///var/log/app.log?maxsize=100MiB&every=24h&maxbackups=10&compress=zstd&fsync=1s&mode=0640",
		"snail:rel/app.log?follow=1s&drop_below=warn&window=10ms&batch=1MiB&buffers=16",
		"snail://collector:7777/app?compress=s2&spool_size=64MiB&tls=true&tls_server_name=x",
		"snail://[::1]:7777/?window=1h&buffers=-1", "snail:///x?maxbackups=unlimited&maxage=-1h",
		"snail://host:7777/app?colour=blue", "snail:///tmp/x.log?tokens=1", "snail://localhost/x",
	} {
		f.Add(s)
	}
	const token = "Zq8xK3pTm9wV"
	f.Fuzz(func(t *testing.T, raw string) {
		withToken := raw + "&token=" + token
		if !strings.Contains(raw, "?") {
			withToken = raw + "?token=" + token
		}
		for _, s := range []string{raw, withToken} {
			u, err := url.Parse(s)
			if err != nil {
				return
			}
			if path, _, _, err := ParseURL(u); err == nil && path == "" {
				t.Fatalf("ParseURL(%q): no path", s)
			} else if err != nil && strings.Contains(err.Error(), token) && !strings.Contains(raw, token) {
				t.Fatalf("ParseURL(%q): the error shows the token: %v", s, err)
			}
			// The address itself is Dial's to check (netlog.Dial).
			if addr, _, _, err := ParseNetURL(u); err == nil {
				if !strings.HasSuffix(addr, ":"+u.Port()) || u.Port() == "" {
					t.Fatalf("ParseNetURL(%q): address %q", s, addr)
				}
			} else if strings.Contains(err.Error(), token) && !strings.Contains(raw, token) {
				t.Fatalf("ParseNetURL(%q): the error shows the token: %v", s, err)
			}
		}
	})
}
