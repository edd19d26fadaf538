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

// Replacing the clients' token without a stop: the collector takes both
// while the clients move over, then the new one only. Connections made
// before a change carry on.
func ExampleCollector_SetTokens() {
	dir, _ := os.MkdirTemp("", "snail-example-")
	defer os.RemoveAll(dir)
	c, err := collector.New(collector.Config{Dir: dir, Tokens: []string{"old"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	// Step 1, with the clients' configuration: accept the new token too.
	if err := c.SetTokens([]string{"old", "new"}); err != nil {
		panic(err)
	}
	// Step 2, once every client presents "new": drop the old one.
	if err := c.SetTokens([]string{"new"}); err != nil {
		panic(err)
	}
	// An empty token is refused, and the tokens stay as they were.
	fmt.Println(c.SetTokens([]string{""}))
	// Output: collector: invalid config: Tokens: token 1 is empty
}
