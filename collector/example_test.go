package collector_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"
	"github.com/snail-log/snail/collector"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
)

// A collector on a loopback port, and a zerolog logger that ships to it.
func Example() {
	dir, _ := os.MkdirTemp("", "snail-example-")
	defer os.RemoveAll(dir)

	c, err := collector.New(collector.Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go c.Serve(l)
	defer c.Shutdown(context.Background())

	stream, err := netlog.Dial(l.Addr().String(), netlog.WithStreamName("checkout"))
	if err != nil {
		panic(err)
	}
	w, err := sink.New(stream)
	if err != nil {
		panic(err)
	}
	log := zerolog.New(w)
	log.Info().Str("order", "A-17").Msg("paid")
	if err := w.Close(); err != nil { // returns once the collector acked everything
		panic(err)
	}

	b, _ := os.ReadFile(filepath.Join(dir, "checkout.log"))
	fmt.Print(string(b))
	// Output: {"level":"info","order":"A-17","message":"paid"}
}
