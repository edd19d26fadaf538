package collector

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"time"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/netlog"
)

// ErrInvalidConfig wraps every error of Config.Validate.
var ErrInvalidConfig = errors.New("collector: invalid config")

// AckLevel is when the collector acks a batch, and so what an ack survives.
type AckLevel int

const (
	// AckWrite acks a batch once it is written to its file (in the page
	// cache): it survives a crash of the collector process, not a power
	// loss. The default.
	AckWrite AckLevel = iota
	// AckFsync acks a batch once its file is fsynced: it survives a power
	// loss.
	AckFsync
)

func (a AckLevel) String() string {
	if a == AckFsync {
		return "fsync"
	}
	return "write"
}

// ParseAckLevel maps "write" and "fsync" to their AckLevel.
func ParseAckLevel(s string) (AckLevel, error) {
	switch s {
	case "write", "":
		return AckWrite, nil
	case "fsync":
		return AckFsync, nil
	}
	return 0, fmt.Errorf("%w: ack level %q: want write or fsync", ErrInvalidConfig, s)
}

// Defaults of Config.
const (
	DefaultListen           = "127.0.0.1:7777"
	DefaultDir              = "logs"
	DefaultMaxConns         = 4096
	DefaultMaxFrameSize     = encoder.DefaultMaxFrameSize
	DefaultMaxDecompressed  = encoder.DefaultMaxDecompressedSize
	DefaultMaxMemory        = 256 << 20
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultFrameTimeout     = 30 * time.Second
	DefaultMinFrameRate     = netlog.DefaultMinFrameRate
	DefaultWriteTimeout     = 10 * time.Second
)

// Config is a collector's configuration. The zero value of a field means its
// default; Validate fills the defaults in and checks the rest.
type Config struct {
	// Listen is the address of the log protocol listener, for
	// ListenAndServe. Defaults to 127.0.0.1:7777.
	Listen string
	// Dir is the output directory: stream NAME goes to Dir/NAME.log. It
	// is created if missing. Defaults to ./logs. A relative one is taken
	// from the working directory at New.
	Dir string
	// MetricsListen, if set, is the address of the HTTP listener that
	// serves /metrics (Prometheus) and /healthz. It keeps the log port's
	// timeouts: a request's headers must come within HandshakeTimeout, the
	// request within FrameTimeout, its answer must leave within
	// WriteTimeout, and a kept-alive connection is closed after
	// IdleTimeout.
	MetricsListen string
	// Tokens, if any, are the shared secrets a client may present: it must
	// present one of them. Several let a token be replaced without a
	// stop: accept the new one too (SetTokens), move the clients over,
	// then drop the old one.
	Tokens []string
	// TLS, if set, makes the listener speak TLS. Set ClientAuth and
	// ClientCAs to require client certificates.
	TLS *tls.Config

	// Ack says when a batch is acked: after write (default) or fsync.
	Ack AckLevel

	// MaxConns caps the connections served at once. Defaults to 4096.
	MaxConns int
	// MaxFrameSize caps a frame's payload as sent. Defaults to 16 MiB.
	MaxFrameSize int
	// MaxDecompressedSize caps a batch after decompression. Defaults to
	// 64 MiB.
	MaxDecompressedSize int
	// MaxMemory caps the bytes of frames held at once, over every
	// connection; a connection whose frame does not fit waits (its client
	// waits for acks). A frame takes its memory whole when its header
	// arrives while half of MaxMemory stays free, and as its bytes arrive
	// past that, so that frames announced and not sent cannot take it all.
	// At least MaxFrameSize + MaxDecompressedSize. Defaults to 256 MiB.
	MaxMemory int64
	// HandshakeTimeout bounds the TLS and protocol handshakes. Defaults
	// to 5s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection on which no frame starts for this
	// long (clients ping every 15s). Defaults to 2 minutes.
	IdleTimeout time.Duration
	// FrameTimeout closes a connection whose frame is not whole this long
	// after its first byte (plus MinFrameRate's stretch). Defaults to 30s.
	FrameTimeout time.Duration
	// MinFrameRate stretches FrameTimeout by the time a frame's bytes so
	// far take at this rate (bytes a second), so that a client on a link
	// too slow to send its frames within FrameTimeout is not cut while it
	// sends at least this fast (cut, it would send the frame again, to be
	// cut again), and one sending a byte a second still is. Negative:
	// FrameTimeout bounds the whole frame. Defaults to 8 KiB/s.
	MinFrameRate int64
	// WriteTimeout bounds writing acks to a client. Defaults to 10s.
	WriteTimeout time.Duration

	// Output files, as in filelog: mode (default 0640), rotation by size
	// and time, retention (MaxBackups 0 means filelog's default of 10;
	// filelog.Unlimited keeps all), compression of rotated files.
	FileMode    os.FileMode
	MaxSize     int64
	RotateEvery time.Duration
	MaxBackups  int
	MaxAge      time.Duration
	Compression filelog.Compression

	// Logger receives the collector's own logs. Defaults to slog.Default().
	Logger *slog.Logger
}

// Validate fills in defaults and checks every field, returning an error
// that wraps ErrInvalidConfig and names the field.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if err := checkListen(c.Listen); err != nil {
		return bad("Listen %q: %v", c.Listen, err)
	}
	if c.MetricsListen != "" {
		if err := checkListen(c.MetricsListen); err != nil {
			return bad("MetricsListen %q: %v", c.MetricsListen, err)
		}
	}
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if err := checkTokens(c.Tokens); err != nil {
		return bad("Tokens: %v", err)
	}
	if c.Ack != AckWrite && c.Ack != AckFsync {
		return bad("Ack level %d", c.Ack)
	}
	defInt := func(name string, v *int, def, lo, hi int) error {
		if *v == 0 {
			*v = def
		}
		if *v < lo || *v > hi {
			return bad("%s %d out of range [%d, %d]", name, *v, lo, hi)
		}
		return nil
	}
	if err := defInt("MaxConns", &c.MaxConns, DefaultMaxConns, 1, 1<<20); err != nil {
		return err
	}
	// What a frame can carry, and an int can count (on 32-bit platforms).
	const maxPayload = min(encoder.MaxPayload, math.MaxInt)
	if err := defInt("MaxFrameSize", &c.MaxFrameSize, DefaultMaxFrameSize, 1024, maxPayload); err != nil {
		return err
	}
	if err := defInt("MaxDecompressedSize", &c.MaxDecompressedSize, DefaultMaxDecompressed, 1024, maxPayload); err != nil {
		return err
	}
	worst := int64(c.MaxFrameSize) + int64(c.MaxDecompressedSize) + encoder.HeaderSize
	if c.MaxMemory == 0 {
		c.MaxMemory = max(DefaultMaxMemory, worst)
	}
	if need := worst; c.MaxMemory < need {
		return bad("MaxMemory %d is below one frame's worst case (MaxFrameSize + MaxDecompressedSize + header = %d)", c.MaxMemory, need)
	}
	switch {
	case c.MinFrameRate == 0:
		c.MinFrameRate = DefaultMinFrameRate
	case c.MinFrameRate < 0:
		c.MinFrameRate = -1
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"HandshakeTimeout", &c.HandshakeTimeout, DefaultHandshakeTimeout},
		{"IdleTimeout", &c.IdleTimeout, DefaultIdleTimeout},
		{"FrameTimeout", &c.FrameTimeout, DefaultFrameTimeout},
		{"WriteTimeout", &c.WriteTimeout, DefaultWriteTimeout},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return bad("%s %v is negative", d.name, *d.v)
		}
	}
	if c.FileMode == 0 {
		c.FileMode = filelog.DefaultMode
	}
	if c.FileMode&^os.ModePerm != 0 {
		return bad("FileMode %v: permission bits only", c.FileMode)
	}
	if c.MaxSize < 0 || c.RotateEvery < 0 || c.MaxAge < 0 {
		return bad("MaxSize, RotateEvery and MaxAge must not be negative")
	}
	if c.MaxBackups < filelog.Unlimited {
		return bad("MaxBackups %d", c.MaxBackups)
	}
	if c.Compression < filelog.NoCompression || c.Compression > filelog.Zstd {
		return bad("Compression %d", c.Compression)
	}
	if err := filelog.CheckOptions(c.fileOptions()...); err != nil {
		return bad("output files: %v", err)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// fileOptions are the filelog options of an output file.
func (c *Config) fileOptions() []filelog.Option {
	// An output file deleted, moved or replaced under the collector (rm,
	// logrotate without a SIGHUP, sed -i) is followed within a second,
	// instead of written unreachable until the next SIGHUP.
	opts := []filelog.Option{filelog.WithMode(c.FileMode), filelog.WithCompression(c.Compression),
		filelog.WithFollowPath(time.Second)}
	if c.MaxSize > 0 {
		opts = append(opts, filelog.WithMaxSize(c.MaxSize))
	}
	if c.RotateEvery > 0 {
		opts = append(opts, filelog.WithRotateEvery(c.RotateEvery))
	}
	if c.MaxBackups != 0 {
		opts = append(opts, filelog.WithMaxBackups(c.MaxBackups))
	}
	if c.MaxAge > 0 {
		opts = append(opts, filelog.WithMaxAge(c.MaxAge))
	}
	return opts
}

// checkListen checks a listen address: host:port, the port a number up to
// 65535 (0 picks one) or a service name, so that a typo is a config error
// at start rather than a failed listen.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	_, err = net.LookupPort("tcp", port)
	return err
}

// checkTokens checks tokens a client could present: none empty, none over
// the handshake's limit.
func checkTokens(tokens []string) error {
	for i, t := range tokens {
		switch {
		case t == "":
			return fmt.Errorf("token %d is empty", i+1)
		case len(t) > netlog.MaxTokenLen:
			return fmt.Errorf("token %d has %d bytes, at most %d", i+1, len(t), netlog.MaxTokenLen)
		}
	}
	return nil
}
