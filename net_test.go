package snail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snail-log/snail/collector"
	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/internal/testnet"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// startCollector runs a collector on addr (a free loopback port if empty)
// until the test ends, and returns it with its address.
func startCollector(t *testing.T, addr string, cfg collector.Config) (*collector.Collector, string) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c, err := collector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l := testnet.Listen(t, addr)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Serve(l)
	}()
	t.Cleanup(func() {
		c.Shutdown(context.Background())
		<-done
	})
	return c, l.Addr().String()
}

// TestEveryEntryExactlyOnceOverTCP is the proof of the network issue: 64
// goroutines x 50k entries with unique ids through each front-end to a
// collector on loopback, with each compression; after Close every id is in
// the stream's file exactly once.
func TestEveryEntryExactlyOnceOverTCP(t *testing.T) {
	goroutines, per := 64, 50_000
	if testing.Short() {
		per = 2_000
	}
	comps := []encoder.Compression{encoder.None, encoder.S2, encoder.Zstd}
	for k, fe := range frontEnds {
		comp := comps[k%len(comps)]
		t.Run(fe.name+"/"+comp.String(), func(t *testing.T) {
			dir := t.TempDir()
			_, addr := startCollector(t, "", collector.Config{Dir: dir})
			w, err := Dial(addr, []netlog.ClientOption{netlog.WithStreamName("app"), netlog.WithCompression(comp)})
			if err != nil {
				t.Fatal(err)
			}
			logAll(fe.log(w), goroutines, per)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			checkAll(t, []string{filepath.Join(dir, "app.log")}, goroutines, per)
		})
	}
}

func TestParseNetURL(t *testing.T) {
	spool := t.TempDir()
	good := "snail://collector.example:7777/checkout?compress=zstd&token=s3cret&spool=" + spool +
		"&spool_size=64MiB&drop_below=info&window=10ms&batch=256KiB&buffers=8"
	u, _ := url.Parse(good)
	addr, nopts, sopts, err := ParseNetURL(u)
	if err != nil || addr != "collector.example:7777" || len(nopts) != 5 || len(sopts) != 4 {
		t.Fatalf("ParseNetURL(%s) = %q, %d, %d, %v", good, addr, len(nopts), len(sopts), err)
	}
	for _, bad := range []string{
		"snail://:7777/x", "snail://host:7777/x?compress=lz4", "snail://host:7777/x?spool_size=lots",
		"snail://host:7777/x?tls_ca=/no/such/ca.pem", "snail://host:7777/x?tls=maybe", "snail://host:7777/x?tls_cert=/no/such/cert.pem",
		"snail://host:7777/x?window=soon", "snail://host:7777/x?maxsize=1MiB",
		"snail://host:7777/x?token=s3cret&colour=blue", "snail://host:7777/x?token_file=/no/such/token",
	} {
		u, _ := url.Parse(bad)
		_, _, _, err := ParseNetURL(u)
		if err == nil {
			t.Fatalf("ParseNetURL(%s) accepted", bad)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("the error shows the token: %v", err)
		}
	}
}

// A zap OutputPath snail://host:port/stream logs to a collector, with the
// token read from a file; a bad stream name is an error from zap.Open.
func TestZapOutputPathToCollector(t *testing.T) {
	dir := t.TempDir()
	_, addr := startCollector(t, "", collector.Config{Dir: dir, Tokens: []string{"s3cret"}})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("# the collector's token, as snail send --token-file reads it\ns3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ws, closeSinks, err := zap.Open("snail://" + addr + "/zapnet?compress=s2&window=10ms&token_file=" + tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	l := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), ws, zap.InfoLevel))
	l.Info("to the collector", zap.Int("n", 1))
	if err := l.Sync(); err != nil { // acked: in the collector's file
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "zapnet.log"))
	if !bytes.Contains(b, []byte(`"msg":"to the collector","n":1`)) {
		t.Fatalf("collector's file: %q", b)
	}
	closeSinks()
	if _, _, err := zap.Open("snail://" + addr + "/..bad"); err == nil {
		t.Fatal("zap.Open of a bad stream name succeeded")
	}
}

// freeAddr returns a loopback address that nothing listens on until
// startCollector takes it (testnet.Reserve).
func freeAddr(t *testing.T) string {
	t.Helper()
	return testnet.Reserve(t)
}

// writeNumbered writes n lines of 196 bytes to w, numbered from 0000.
func writeNumbered(t *testing.T, w io.Writer, n int) {
	t.Helper()
	line := strings.Repeat("x", 190)
	for i := range n {
		if _, err := fmt.Fprintf(w, "%04d %s\n", i, line); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSyncDuringAnOutageLosesNothing: Syncs while the collector is down,
// past the report delay, with the window full, return the outage; the
// batches they waited for stay queued, and when the collector is back every
// entry is delivered once, in order. Before, the Writer gave up every
// batch a Sync waited for: one Sync lost 160 of these 200 entries.
func TestSyncDuringAnOutageLosesNothing(t *testing.T) {
	addr := freeAddr(t)
	w, err := Dial(addr, []netlog.ClientOption{
		netlog.WithStreamName("back"), netlog.WithWindow(2, 1<<20),
		netlog.WithReportAfter(100 * time.Millisecond), netlog.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		netlog.WithDrainTimeout(time.Minute), netlog.WithErrorHandler(func(error) {}),
	}, sink.WithBatchBytes(4096), sink.WithWindow(time.Millisecond), sink.WithErrorHandler(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	const n = 200 // 10 batches of 20 lines: 2 in the window, 8 in the Writer
	writeNumbered(t, w, n)
	for range 5 {
		if err := w.Sync(); !errors.Is(err, netlog.ErrUnavailable) {
			t.Fatalf("Sync with the collector down: %v, want ErrUnavailable", err)
		}
	}
	if lost := w.Stats().Lost; lost != 0 {
		t.Fatalf("%d entries given up by the Syncs", lost)
	}
	dir := t.TempDir()
	startCollector(t, addr, collector.Config{Dir: dir})
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if st := w.Stats(); st.Lost != 0 || st.Written != n {
		t.Errorf("stats %+v: want %d written, none lost", st, n)
	}
	checkNumbered(t, filepath.Join(dir, "back.log"), n)
}

// TestCloseWaitsForTheCollectorToComeBack: the collector is down when Close
// starts, for longer than the report delay already, and the window is
// full; it comes back within the drain timeout. Close waits for it instead
// of giving up at once (batches the window had no room for) or reporting
// the outage that its drain then ended: it returns nil, and every entry is
// in the file once.
func TestCloseWaitsForTheCollectorToComeBack(t *testing.T) {
	addr := freeAddr(t)
	unavailable := make(chan struct{})
	var once sync.Once
	w, err := Dial(addr, []netlog.ClientOption{
		netlog.WithStreamName("back"), netlog.WithWindow(2, 1<<20),
		netlog.WithReportAfter(100 * time.Millisecond), netlog.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		netlog.WithDrainTimeout(time.Minute),
		netlog.WithErrorHandler(func(err error) {
			if errors.Is(err, netlog.ErrUnavailable) {
				once.Do(func() { close(unavailable) })
			}
		}),
	}, sink.WithBatchBytes(4096), sink.WithWindow(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	const n = 200 // 10 batches of 20 lines: 2 in the window, 8 in the Writer
	writeNumbered(t, w, n)
	select {
	case <-unavailable:
	case <-time.After(time.Minute):
		t.Fatal("the outage was never reported")
	}
	dir := t.TempDir()
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	time.Sleep(500 * time.Millisecond) // Close is waiting by then
	startCollector(t, addr, collector.Config{Dir: dir})
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	if st := w.Stats(); st.Lost != 0 || st.Written != n {
		t.Errorf("stats %+v: want %d written, none lost", st, n)
	}
	checkNumbered(t, filepath.Join(dir, "back.log"), n)
}

// checkNumbered checks that the file at path holds the n lines of
// writeNumbered, each once, in order.
func checkNumbered(t *testing.T, path string, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("%d lines in the file, want %d", len(lines), n)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, fmt.Sprintf("%04d ", i)) {
			t.Fatalf("line %d: %.10q", i, l)
		}
	}
}

// TestCloseGivesUpAtTheDrainTimeout: the collector never comes back. Close
// returns once the drain timeout has ended, counts every entry lost, and
// says why once.
func TestCloseGivesUpAtTheDrainTimeout(t *testing.T) {
	addr := testnet.RefusedAddr(t)
	w, err := Dial(addr, []netlog.ClientOption{
		netlog.WithWindow(2, 1<<20), netlog.WithReportAfter(50 * time.Millisecond),
		netlog.WithBackoff(10*time.Millisecond, 50*time.Millisecond), netlog.WithDrainTimeout(time.Second),
		netlog.WithErrorHandler(func(error) {}),
	}, sink.WithBatchBytes(4096), sink.WithWindow(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	writeNumbered(t, w, n)
	start := time.Now()
	err = w.Close()
	took := time.Since(start)
	if err == nil || strings.Count(err.Error(), "drain timeout") != 1 || strings.Contains(err.Error(), "not answered") {
		t.Errorf("Close: %v; want the drain timeout's end said once", err)
	}
	if took < 900*time.Millisecond || took > 30*time.Second {
		t.Errorf("Close took %v, want about the drain timeout (1s)", took)
	}
	if st := w.Stats(); st.Written+st.Lost != n || st.Lost == 0 {
		t.Errorf("stats %+v: want all %d accounted for, some lost", st, n)
	}
}
