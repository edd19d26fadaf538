package snail

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snail-log/snail/sink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// closeZapSinks closes the Writers that zap.Config.Build opened (zap never
// closes them), so that no goroutine outlives the test.
func closeZapSinks(t *testing.T) {
	t.Helper()
	zapSinks.Lock()
	defer zapSinks.Unlock()
	for key, s := range zapSinks.m {
		if err := s.w.Close(); err != nil {
			t.Error(err)
		}
		delete(zapSinks.m, key)
	}
}

// TestZapConfigOneFileTwice builds two loggers from one zap.Config whose
// OutputPaths and ErrorOutputPaths name the same rotated file, as etcd's
// configs do: the four opens share one Writer (two would refuse each
// other's rotation), and every entry, info and error, is there once.
func TestZapConfigOneFileTwice(t *testing.T) {
	defer closeZapSinks(t)
	dir := t.TempDir()
	u := "snail://" + filepath.Join(dir, "app.log") + "?maxsize=256KiB&maxbackups=unlimited&compress=zstd&window=5ms"
	cfg := zap.NewProductionConfig()
	cfg.Sampling = nil
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{u}, []string{u}
	l1, err := cfg.Build()
	if err != nil {
		t.Fatal(err)
	}
	l2, err := cfg.Build()
	if err != nil {
		t.Fatalf("second Build: %v", err)
	}
	if n := len(zapSinks.m); n != 1 {
		t.Fatalf("%d Writers open, want 1 shared", n)
	}
	goroutines, per := 8, 5_000
	logAll(func(g, i int) {
		l := l1
		if g%2 == 1 {
			l = l2
		}
		if i%10 == 0 {
			l.Error("entry", zap.Int("g", g), zap.Int("i", i))
			return
		}
		l.Info("entry", zap.Int("g", g), zap.Int("i", i), zap.String("pad", strings.Repeat("x", 64)))
	}, goroutines, per)
	if err := l1.Sync(); err != nil {
		t.Fatal(err)
	}
	closeZapSinks(t) // waits for the compressions
	files, _ := filepath.Glob(filepath.Join(dir, "app*"))
	if len(files) < 3 {
		t.Fatalf("files %v: want rotations", files)
	}
	checkAll(t, files, goroutines, per)
}

func TestZapSinkOpens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	u := "snail://" + path + "?maxsize=1MiB&window=1h"
	ws1, close1, err := zap.Open(u)
	if err != nil {
		t.Fatal(err)
	}
	ws2, close2, err := zap.Open("snail://" + filepath.Join(dir, ".", "app.log") + "?window=1h&maxsize=1MiB")
	if err != nil {
		t.Fatalf("the same file with the same parameters, spelled otherwise: %v", err)
	}
	t.Chdir(dir)
	ws4, close4, err := zap.Open("snail:app.log?maxsize=1MiB&window=1h")
	if err != nil || len(zapSinks.m) != 1 {
		t.Fatalf("the file by a relative path: %v, %d Writers open (want 1 shared)", err, len(zapSinks.m))
	}
	close4()
	if _, err := ws4.Write([]byte("closed\n")); !errors.Is(err, sink.ErrClosed) {
		t.Fatalf("Write after its close = %v, want ErrClosed", err)
	}
	for _, tc := range []struct{ url, want string }{
		{"snail://" + path + "?maxsize=2MiB", "other parameters"},
		{"snail://" + path + "?maxsize=1MiB&window=1h&token=x", "other parameters"},
		{"snail://" + filepath.Join(dir, "b.log") + "?drop_below=warn", "drop_below=warn"},
		{"snail://127.0.0.1:1/s?drop_below=info&token=s3cret", "drop_below=info"},
	} {
		u, _ := url.Parse(tc.url)
		_, err := openZapSink(u)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("opening %s = %v, want an error about %s (and no token)", tc.url, err, tc.want)
		}
	}
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{MessageKey: "msg"})
	zap.New(zapcore.NewCore(enc, ws1, zap.InfoLevel)).Info("one")
	zap.New(zapcore.NewCore(enc, ws2, zap.InfoLevel)).Info("two")
	close1() // syncs: ws2's open is still there
	if b, _ := os.ReadFile(path); string(b) != "{\"msg\":\"one\"}\n{\"msg\":\"two\"}\n" {
		t.Fatalf("after the first close: %q", b)
	}
	if _, err := ws1.Write([]byte("late\n")); !errors.Is(err, sink.ErrClosed) {
		t.Fatalf("Write after its close = %v, want ErrClosed", err)
	}
	if _, err := ws2.Write([]byte("{\"msg\":\"three\"}\n")); err != nil {
		t.Fatal(err)
	}
	close2() // the last: closes the Writer and the file, and releases it
	if b, _ := os.ReadFile(path); !strings.HasSuffix(string(b), "{\"msg\":\"three\"}\n") {
		t.Fatalf("after the last close: %q", b)
	}
	ws3, close3, err := zap.Open("snail://" + path + "?maxsize=4MiB&drop_below=all")
	if err != nil {
		t.Fatalf("reopening with other parameters once closed: %v", err)
	}
	defer close3()
	if _, err := ws3.Write([]byte("{\"msg\":\"four\"}\n")); err != nil {
		t.Fatal(err)
	}
}
