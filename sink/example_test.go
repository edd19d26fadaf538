package sink_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/sink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// printer is a Destination that prints each batch it is given, with its
// entry count. Any type with these three methods can take a Writer's
// batches; filelog.File and netlog.Stream are the two snail provides.
type printer struct{}

func (printer) WriteBatch(batch []byte, entries int) error {
	fmt.Printf("batch of %d entries:\n%s", entries, batch)
	return nil
}
func (printer) Sync() error  { return nil }
func (printer) Close() error { return nil }

// A Writer gathers the entries of every goroutine into batches; Sync
// returns once the destination has all of them, here as one batch (with
// an hour's window, only Sync sends it).
func ExampleNew() {
	w, err := sink.New(printer{}, sink.WithWindow(time.Hour))
	if err != nil {
		fmt.Println(err) // a bad option
		return
	}
	defer w.Close() // drains, closes the destination, stops the goroutines
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { fmt.Fprintf(w, "{\"worker\":%d}\n", i) })
	}
	wg.Wait()
	if err := w.Sync(); err != nil {
		fmt.Println(err)
	}
	fmt.Println(w.Stats().Written, "written")
	// Unordered output:
	// batch of 3 entries:
	// {"worker":0}
	// {"worker":1}
	// {"worker":2}
	// 3 written
}

// openLog opens a Writer on app.log in a fresh directory, and returns a
// function that closes it and prints the file.
func openLog(opts ...sink.Option) (*sink.Writer, func()) {
	dir, _ := os.MkdirTemp("", "sink-example-")
	path := filepath.Join(dir, "app.log")
	f, err := filelog.Open(path, filelog.WithMaxSize(100<<20), filelog.WithCompression(filelog.Zstd))
	if err != nil {
		panic(err) // a missing directory, a permission denied: with the path
	}
	w, err := sink.New(f, opts...)
	if err != nil {
		panic(err)
	}
	return w, func() {
		if err := w.Close(); err != nil {
			fmt.Println(err)
		}
		b, _ := os.ReadFile(path)
		fmt.Print(string(b))
		os.RemoveAll(dir)
	}
}

// zap keeps its encoder and its call sites; NewZapCore puts snail under
// them. Entries above Error (DPanic, Panic, Fatal) are synced before zap
// panics or exits.
func ExampleNewZapCore() {
	w, done := openLog()
	defer done()
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{MessageKey: "msg", LevelKey: "level", EncodeLevel: zapcore.LowercaseLevelEncoder})
	logger := zap.New(sink.NewZapCore(enc, w, zap.InfoLevel))
	logger.Info("order paid", zap.String("order", "A-17"), zap.Int("cents", 1250))
	logger.Debug("not enabled")
	// Output: {"level":"info","msg":"order paid","order":"A-17","cents":1250}
}

// A Writer is a zerolog.LevelWriter: zerolog writes into it directly, and
// the overflow policy knows each entry's level.
func ExampleWriter_zerolog() {
	w, done := openLog()
	defer done()
	logger := zerolog.New(w)
	logger.Info().Str("order", "A-17").Int("cents", 1250).Msg("order paid")
	// Output: {"level":"info","order":"A-17","cents":1250,"message":"order paid"}
}

// NewSlogHandler is a slog.Handler with the JSON shape of
// slog.NewJSONHandler, and no allocation per record for the common kinds
// of attribute.
func ExampleNewSlogHandler() {
	w, done := openLog()
	defer done()
	h := sink.NewSlogHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // for a stable output here
			}
			return a
		},
	})
	logger := slog.New(h).With("service", "checkout")
	logger.Info("order paid", "order", "A-17", slog.Int("cents", 1250))
	// Output: {"level":"INFO","msg":"order paid","service":"checkout","order":"A-17","cents":1250}
}

// gate is a Destination that holds the first batch until opened, as a
// disk that cannot keep up would.
type gate struct {
	open chan struct{}
	once sync.Once
	out  strings.Builder
}

func (g *gate) WriteBatch(batch []byte, entries int) error {
	g.once.Do(func() { <-g.open })
	g.out.Write(batch)
	return nil
}
func (g *gate) Sync() error  { return nil }
func (g *gate) Close() error { return nil }

// With WithDropBelow(WarnLevel), Debug and Info entries are dropped while
// every buffer is full, and Warn and above wait for room. The drops are
// counted, and said in the stream once room returns.
func ExampleWithDropBelow() {
	g := &gate{open: make(chan struct{})}
	w, err := sink.New(g, sink.WithDropBelow(sink.WarnLevel),
		sink.WithBatchBytes(4096), sink.WithBuffers(2), sink.WithMaxBuffers(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	logger := zerolog.New(w)
	for i := range 1000 { // far more than two buffers of 4 KiB hold
		logger.Info().Int("i", i).Msg("request served")
	}
	close(g.open) // the disk catches up
	logger.Warn().Msg("disk was slow")
	if err := w.Close(); err != nil {
		fmt.Println(err)
	}
	st := w.Stats()
	fmt.Println("some info dropped:", st.Dropped > 0, "- all counted:", st.Written+st.Dropped == 1000+1+1)
	fmt.Println("warn written:", strings.Contains(g.out.String(), `"disk was slow"`))
	fmt.Println("drops said in the stream:", strings.Contains(g.out.String(), `"msg":"snail dropped entries"`))
	// Output:
	// some info dropped: true - all counted: true
	// warn written: true
	// drops said in the stream: true
}
