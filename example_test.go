package snail_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"
	"github.com/snail-log/snail"
	"github.com/snail-log/snail/collector"
	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/sink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logFile returns a path in a fresh directory, and prints the file once the
// example is done.
func logFile() (path string, show func()) {
	dir, _ := os.MkdirTemp("", "snail-example-")
	path = filepath.Join(dir, "app.log")
	return path, func() {
		b, _ := os.ReadFile(path)
		fmt.Print(string(b))
		os.RemoveAll(dir)
	}
}

// zap through snail: keep the encoder, swap the core.
func Example_zap() {
	path, show := logFile()
	defer show()
	w, err := snail.OpenFile(path, []filelog.Option{filelog.WithMaxSize(100 << 20), filelog.WithCompression(filelog.Zstd)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close() // drains every entry, closes the file

	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{MessageKey: "msg", LevelKey: "level", EncodeLevel: zapcore.LowercaseLevelEncoder})
	logger := zap.New(sink.NewZapCore(enc, w, zap.InfoLevel))
	logger.Info("hello", zap.String("from", "zap"))
	// Output: {"level":"info","msg":"hello","from":"zap"}
}

// zap through snail by URL, as in zap.Config's OutputPaths.
func Example_zapURL() {
	path, show := logFile()
	defer show()
	ws, closeSinks, err := zap.Open("snail://" + path + "?maxsize=100MiB&compress=zstd")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer closeSinks()
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{MessageKey: "msg"})
	zap.New(zapcore.NewCore(enc, ws, zap.InfoLevel)).Info("by URL")
	// Output: {"msg":"by URL"}
}

// zap to a collector by URL: snail://host:port/stream. Sync returns once
// the collector has the entries in its file.
func Example_zapCollectorURL() {
	dir, _ := os.MkdirTemp("", "snail-example-")
	defer os.RemoveAll(dir)
	c, err := collector.New(collector.Config{Dir: dir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println(err)
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go c.Serve(l)
	defer c.Shutdown(context.Background())

	ws, closeSinks, err := zap.Open("snail://" + l.Addr().String() + "/checkout?compress=zstd")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer closeSinks()
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{MessageKey: "msg"})
	logger := zap.New(zapcore.NewCore(enc, ws, zap.InfoLevel))
	logger.Info("to the collector")
	if err := logger.Sync(); err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(filepath.Join(dir, "checkout.log"))
	fmt.Print(string(b))
	// Output: {"msg":"to the collector"}
}

// zerolog through snail: the Writer is a zerolog.LevelWriter.
func Example_zerolog() {
	path, show := logFile()
	defer show()
	w, err := snail.OpenFile(path, nil, sink.WithDropBelow(sink.WarnLevel))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()

	logger := zerolog.New(w)
	logger.Info().Str("from", "zerolog").Msg("hello")
	// Output: {"level":"info","from":"zerolog","message":"hello"}
}

// slog through snail's handler: the JSON of slog.NewJSONHandler, faster.
func Example_slog() {
	path, show := logFile()
	defer show()
	w, err := snail.OpenFile(path, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()

	noTime := func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.Attr{}
		}
		return a
	}
	logger := slog.New(sink.NewSlogHandler(w, &slog.HandlerOptions{ReplaceAttr: noTime}))
	logger.Info("hello", "from", "slog", slog.Group("req", "id", 7))
	// Output: {"level":"INFO","msg":"hello","from":"slog","req":{"id":7}}
}
