package netlog_test

import (
	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Ship zap's entries to a collector (or two, for failover), compressed with
// zstd. Dial returns at once; the connection is made in the background.
func ExampleDial() {
	stream, err := netlog.Dial("collector-a:7777,collector-b:7777",
		netlog.WithStreamName("checkout"), netlog.WithCompression(encoder.Zstd), netlog.WithToken("s3cret"))
	if err != nil {
		panic(err) // configuration errors only
	}
	w, err := sink.New(stream, sink.WithDropBelow(sink.WarnLevel))
	if err != nil {
		panic(err)
	}
	defer w.Close() // waits for the acks, up to the drain timeout

	logger := zap.New(sink.NewZapCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), w, zap.InfoLevel))
	logger.Info("order paid", zap.String("order", "A-17"))
}
