package snail

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	"github.com/snail-log/snail/collector"
	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/netlog"
)

// startCollector runs a collector on a loopback port until the test ends.
func startCollector(t *testing.T, cfg collector.Config) (*collector.Collector, string) {
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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
			_, addr := startCollector(t, collector.Config{Dir: dir})
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
