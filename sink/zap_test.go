package sink

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time                         { return c.t }
func (c fixedClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }

// TestZapSameBytes logs the same entries through zap's own file core and
// through snail's core: the files must be identical.
func TestZapSameBytes(t *testing.T) {
	dir := t.TempDir()
	cfg := zap.NewProductionEncoderConfig()
	clock := fixedClock{time.Date(2026, 11, 25, 23, 35, 29, 0, time.UTC)}
	logAll := func(core zapcore.Core) {
		l := zap.New(core, zap.WithClock(clock), zap.AddCaller()).With(zap.String("svc", "api"))
		for i := range 1000 {
			l.Info("request", zap.Int("i", i), zap.String("path", "/x\n\"y\""), zap.Duration("d", time.Second))
			l.Debug("not enabled")
			l.Named("sub").Warn("careful", zap.Error(os.ErrNotExist), zap.Float64("f", 0.5))
		}
		l.Sync()
	}

	zf, _ := os.Create(filepath.Join(dir, "zap.log"))
	logAll(zapcore.NewCore(zapcore.NewJSONEncoder(cfg), zapcore.AddSync(zf), zap.InfoLevel))
	zf.Close()

	sf, _ := os.Create(filepath.Join(dir, "snail.log"))
	w := newTestWriter(t, fileDest{sf})
	logAll(NewZapCore(zapcore.NewJSONEncoder(cfg), w, zap.InfoLevel))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	want, _ := os.ReadFile(filepath.Join(dir, "zap.log"))
	got, _ := os.ReadFile(filepath.Join(dir, "snail.log"))
	if len(want) == 0 || !bytes.Equal(got, want) {
		t.Fatalf("snail's file (%d bytes) differs from zap's (%d bytes)", len(got), len(want))
	}
}

// fileDest is the simplest file destination, for tests that must not depend
// on filelog.
type fileDest struct{ f *os.File }

func (d fileDest) WriteBatch(b []byte, _ int) error { _, err := d.f.Write(b); return err }
func (d fileDest) Sync() error                      { return d.f.Sync() }
func (d fileDest) Close() error                     { return d.f.Close() }

func TestZapFatalIsSyncedBeforeExit(t *testing.T) {
	d := &memDest{}
	w := newTestWriter(t, d, WithWindow(time.Hour))
	core := NewZapCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), w, zap.DebugLevel)
	if err := core.Write(zapcore.Entry{Level: zapcore.InfoLevel, Message: "info"}, nil); err != nil {
		t.Fatal(err)
	}
	if d.String() != "" {
		t.Fatal("an Info entry was written through at once")
	}
	if err := core.Write(zapcore.Entry{Level: zapcore.FatalLevel, Message: "fatal"}, nil); err != nil {
		t.Fatal(err)
	}
	if ls := d.lines(); len(ls) != 2 || d.syncs == 0 {
		t.Fatalf("after a Fatal entry: %d lines, %d syncs; want both entries synced", len(ls), d.syncs)
	}
	if c, ok := core.(interface{ Level() zapcore.Level }); !ok || c.Level() != zap.DebugLevel {
		t.Fatal("core does not report its level")
	}
	if ce := core.Check(zapcore.Entry{Level: zapcore.DebugLevel - 1}, nil); ce != nil {
		t.Fatal("Check accepted a disabled level")
	}
}
