package netlog

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/snail-log/snail/encoder"
)

// Defaults of the client options.
const (
	DefaultWindowFrames     = 16
	DefaultWindowBytes      = 16 << 20
	DefaultDialTimeout      = 5 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultMinWriteRate     = 8 << 10 // bytes a second
	DefaultAckTimeout       = 30 * time.Second
	DefaultBackoffMin       = 100 * time.Millisecond
	DefaultBackoffMax       = 10 * time.Second
	DefaultReportAfter      = 10 * time.Second
	DefaultKeepAlive        = 15 * time.Second
	DefaultSendWindow       = 200 * time.Microsecond
	DefaultDrainTimeout     = 30 * time.Second
	DefaultStreamName       = "default"
)

// ClientOption configures a Client (NewClient) or a log Stream (Dial).
// Options validate their value; the constructor returns the error wrapped
// in ErrInvalidOption. Options of the log layer (WithStreamName, WithToken,
// WithCompression, WithDrainTimeout) have no effect on a bare Client.
type ClientOption func(*clientConfig) error

type clientConfig struct {
	addrs            []string
	tls              *tls.Config
	maxFrames        int
	maxBytes         int64
	dialTimeout      time.Duration
	handshakeTimeout time.Duration
	writeTimeout     time.Duration
	ackTimeout       time.Duration
	minWriteRate     int64
	backoffMin       time.Duration
	backoffMax       time.Duration
	reportAfter      time.Duration
	keepAlive        time.Duration
	sendWindow       time.Duration
	shipEach         bool // every request is shipped by its sender (Stream): no window timer
	onError          func(error)
	rep              *reporter // runs onError; made by whoever starts the goroutines

	// log layer
	stream      string
	token       string
	compression encoder.Compression
	zstdLevel   int
	drain       time.Duration
	giveUp      time.Duration // 0: the drain ends at its timeout only
	spoolDir    string
	spoolMax    int64
	spoolFull   SpoolFull
	spoolAll    bool
}

func (c *clientConfig) report(err error) {
	switch {
	case c.rep != nil:
		c.rep.report(err)
	case c.onError != nil:
		c.onError(err)
	}
}

func newClientConfig(opts []ClientOption) (clientConfig, error) {
	c := clientConfig{
		maxFrames:        DefaultWindowFrames,
		maxBytes:         DefaultWindowBytes,
		dialTimeout:      DefaultDialTimeout,
		handshakeTimeout: DefaultHandshakeTimeout,
		writeTimeout:     DefaultWriteTimeout,
		ackTimeout:       DefaultAckTimeout,
		minWriteRate:     DefaultMinWriteRate,
		backoffMin:       DefaultBackoffMin,
		backoffMax:       DefaultBackoffMax,
		reportAfter:      DefaultReportAfter,
		keepAlive:        DefaultKeepAlive,
		sendWindow:       DefaultSendWindow,
		stream:           DefaultStreamName,
		drain:            DefaultDrainTimeout,
		zstdLevel:        1,
		onError:          printError,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&c); err != nil {
			return c, invalidOption(err)
		}
	}
	if len(c.addrs) == 0 {
		return c, fmt.Errorf("%w: no address to connect to", ErrInvalidOption)
	}
	return c, nil
}

func positive(name string, d time.Duration, dst *time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s must be positive, got %v", name, d)
	}
	*dst = d
	return nil
}

func rate(name string, bytesPerSecond int64, dst *int64) error {
	if bytesPerSecond < 0 {
		return fmt.Errorf("%s must not be negative, got %d bytes/s", name, bytesPerSecond)
	}
	*dst = bytesPerSecond
	return nil
}

// WithAddrs sets the addresses (host:port) to connect to. The client uses
// the first and moves to the next one whenever a connection attempt fails
// (failover), round and round. Each entry may itself be a comma-separated
// list.
func WithAddrs(addrs ...string) ClientOption {
	return func(c *clientConfig) error {
		for _, a := range addrs {
			for _, one := range strings.Split(a, ",") {
				one = strings.TrimSpace(one)
				if one == "" {
					continue
				}
				if err := checkAddr(one); err != nil {
					return fmt.Errorf("address %q: %w", one, err)
				}
				c.addrs = append(c.addrs, one)
			}
		}
		return nil
	}
}

// checkAddr rejects an address no connection attempt could ever use, so
// that a typo fails at the start instead of being retried for good: no
// port, or a port out of range or unknown. A host that does not resolve
// is retried, since DNS may come back.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return err
	}
	if p == 0 {
		return fmt.Errorf("port 0")
	}
	return nil
}

// WithTLS makes the client speak TLS with cfg: the server's certificate is
// verified against cfg.RootCAs (or the system's roots), and cfg.Certificates
// are offered as client certificates. An empty ServerName is taken from the
// address.
func WithTLS(cfg *tls.Config) ClientOption {
	return func(c *clientConfig) error {
		if cfg == nil {
			return fmt.Errorf("nil TLS config")
		}
		c.tls = cfg
		return nil
	}
}

// WithWindow bounds the requests sent and not yet answered (for the log
// client: batches not yet acked), in number and in bytes. When either is
// reached Send waits. Defaults to 16 frames and 16 MiB: with 1 MiB batches
// that covers about 16 ms of a 1 GB/s stream, far more than a round trip
// on a LAN, and keeps what is in flight small enough to stay in the
// caches (a 64-frame window ran 19-29% slower on loopback, the frames
// going cold while they waited). Raise it for long round trips. A single
// request larger than the byte bound is still sent, alone.
func WithWindow(frames int, bytes int64) ClientOption {
	return func(c *clientConfig) error {
		if frames < 1 || frames > 1<<20 {
			return fmt.Errorf("window of %d frames out of range [1, %d]", frames, 1<<20)
		}
		if bytes < 1 {
			return fmt.Errorf("window of %d bytes must be positive", bytes)
		}
		c.maxFrames, c.maxBytes = frames, bytes
		return nil
	}
}

// WithDialTimeout bounds one connection attempt, TLS handshake included.
// Defaults to 5s.
func WithDialTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) error { return positive("dial timeout", d, &c.dialTimeout) }
}

// WithHandshakeTimeout bounds the protocol handshake. Defaults to 5s.
func WithHandshakeTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) error { return positive("handshake timeout", d, &c.handshakeTimeout) }
}

// WithWriteTimeout bounds the time a write waits without the peer
// acknowledging any bytes (on Linux; elsewhere, every write, stretched by
// the time its bytes take at WithMinWriteRate): a peer that stops reading
// breaks the connection. Defaults to 10s.
func WithWriteTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) error { return positive("write timeout", d, &c.writeTimeout) }
}

// WithMinWriteRate stretches the write timeout of a write by the time its
// bytes take at this rate (bytes a second) where the client cannot see
// the peer's TCP acknowledge bytes (not Linux), so that a large write on a
// slow link (the window sent again after a reconnect, 16 MiB by default)
// is not cut: cut, it would be cut again on every connection, for good.
// A peer that stops reading is then noticed later after a large write. 0
// makes the write timeout bound every write whole there. Defaults to 8
// KiB/s, the collector's minimum frame rate.
func WithMinWriteRate(bytesPerSecond int64) ClientOption {
	return func(c *clientConfig) error { return rate("min write rate", bytesPerSecond, &c.minWriteRate) }
}

// WithAckTimeout is how long the client waits for progress (any response)
// while requests are pending before it gives the connection up and sends
// them again on a new one. On Linux, bytes the peer's TCP acknowledges
// count as progress too, so that a request that takes longer than this to
// cross a slow link is not cut (cut, it would be cut again on every
// connection). Defaults to 30s.
func WithAckTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) error { return positive("ack timeout", d, &c.ackTimeout) }
}

// WithBackoff sets the delays between connection attempts: min after the
// first failure, doubling up to max, each multiplied by a random factor in
// [0.5, 1.5). Defaults to 100ms and 10s.
func WithBackoff(min, max time.Duration) ClientOption {
	return func(c *clientConfig) error {
		if min <= 0 || max < min {
			return fmt.Errorf("backoff %v..%v: want 0 < min <= max", min, max)
		}
		c.backoffMin, c.backoffMax = min, max
		return nil
	}
}

// WithReportAfter is how long the client may stay without a connection
// before it reports the error: to the error handler, from Wait (the log
// Stream's Sync), and from Send while the window is full. The requests stay
// queued and are sent once a connection succeeds. Defaults to 10s. The
// delay holds even while an attempt to connect is under way (a peer may
// hold a handshake up to WithHandshakeTimeout). A connection that is lost
// (a write or read deadline, a reset), while it resends the pending
// requests included, is reported to the error handler at once, and so is
// a refusal that trying again will not change (Permanent): once every
// address has refused so, the client is unavailable without the delay.
func WithReportAfter(d time.Duration) ClientOption {
	return func(c *clientConfig) error { return positive("report delay", d, &c.reportAfter) }
}

// WithKeepAlive sets how long a connection may stay without a write before
// the client sends a ping, so that the server's idle timeout does not close
// a quiet connection. Defaults to 15s. A collector tells its idle timeout
// in its welcome, and a Stream pings at least every third of it.
func WithKeepAlive(d time.Duration) ClientOption {
	return func(c *clientConfig) error { return positive("keep-alive", d, &c.keepAlive) }
}

// WithSendWindow sets how long a request may wait for others to leave with
// it in one write. Defaults to 200µs. Wait and Shutdown send at once. A
// Stream (Dial) sends each batch at once and does not use it.
func WithSendWindow(d time.Duration) ClientOption {
	return func(c *clientConfig) error { return positive("send window", d, &c.sendWindow) }
}

// WithErrorHandler sets a function that sees every connection error and
// rejection as it happens, called from a goroutine of its own, one error
// at a time, in order. It may block, and it may log through a sink.Writer
// over this client: the client goes on meanwhile, and more than 64 errors
// waiting for it are reported as one count. Close waits for its last
// calls. Without it errors are printed to standard error, as filelog
// prints those of its background work: a collector that is down shows
// there at once, not only once the window is full. A nil f discards them.
func WithErrorHandler(f func(error)) ClientOption {
	return func(c *clientConfig) error { c.onError = f; return nil }
}

// printError is the default error handler: standard error.
func printError(err error) { fmt.Fprintln(os.Stderr, err) }

// WithStreamName sets the stream the entries go to: the collector writes
// them to a file of this name. Letters, digits, '.', '_' and '-', at most
// 128 bytes, starting with a letter or a digit (CheckStreamName). Defaults
// to "default".
func WithStreamName(name string) ClientOption {
	return func(c *clientConfig) error {
		if err := CheckStreamName(name); err != nil {
			return err
		}
		c.stream = name
		return nil
	}
}

// WithToken sets the shared token the collector expects, if it expects one.
func WithToken(token string) ClientOption {
	return func(c *clientConfig) error {
		if len(token) > MaxTokenLen {
			return fmt.Errorf("token of %d bytes, at most %d", len(token), MaxTokenLen)
		}
		c.token = token
		return nil
	}
}

// WithCompression sets the compression of batches on the wire: encoder.None
// (the default), encoder.S2 or encoder.Zstd.
func WithCompression(comp encoder.Compression) ClientOption {
	return func(c *clientConfig) error {
		if comp > encoder.Zstd {
			return fmt.Errorf("unknown compression %d", comp)
		}
		c.compression = comp
		return nil
	}
}

// WithZstdLevel sets the zstd level, 1 (fastest, the default) to 4.
func WithZstdLevel(level int) ClientOption {
	return func(c *clientConfig) error {
		if level < 1 || level > 4 {
			return fmt.Errorf("zstd level %d out of range [1, 4]", level)
		}
		c.zstdLevel = level
		return nil
	}
}

// WithDrainTimeout bounds how long the log Stream's Close waits for the
// collector to ack what is in flight. Defaults to 30s.
func WithDrainTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) error { return positive("drain timeout", d, &c.drain) }
}

// WithGiveUpAfter ends the log Stream's drain (see WithDrainTimeout) before
// its timeout once the collector has been unreachable for d without a
// break: one down that long is not waited for the rest of the drain timeout
// (snail send's --give-up-after). A collector that is up but slow to ack
// still gets the whole drain timeout. 0, the default: the timeout alone.
func WithGiveUpAfter(d time.Duration) ClientOption {
	return func(c *clientConfig) error {
		if d < 0 {
			return fmt.Errorf("give-up time must not be negative, got %v", d)
		}
		c.giveUp = d
		return nil
	}
}

// ServerOption configures a Server.
type ServerOption func(*serverConfig) error

// Defaults of the server options.
const (
	DefaultMaxConns       = 4096
	DefaultIdleTimeout    = 2 * time.Minute
	DefaultFrameTimeout   = 30 * time.Second
	DefaultMinFrameRate   = 8 << 10 // bytes a second
	DefaultResponseWindow = 500 * time.Microsecond
)

type serverConfig struct {
	maxConns         int
	handshakeTimeout time.Duration
	idleTimeout      time.Duration
	frameTimeout     time.Duration
	minFrameRate     int64
	writeTimeout     time.Duration
	respWindow       time.Duration
	tls              *tls.Config
	onConnError      func(net.Addr, error)
}

func newServerConfig(opts []ServerOption) (serverConfig, error) {
	c := serverConfig{
		maxConns:         DefaultMaxConns,
		handshakeTimeout: DefaultHandshakeTimeout,
		idleTimeout:      DefaultIdleTimeout,
		frameTimeout:     DefaultFrameTimeout,
		minFrameRate:     DefaultMinFrameRate,
		writeTimeout:     DefaultWriteTimeout,
		respWindow:       DefaultResponseWindow,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&c); err != nil {
			return c, invalidOption(err)
		}
	}
	return c, nil
}

// WithMaxConns caps the connections served at once; one more is accepted
// and closed at once, and reported as ErrTooManyConns. Defaults to 4096.
func WithMaxConns(n int) ServerOption {
	return func(c *serverConfig) error {
		if n < 1 {
			return fmt.Errorf("max connections %d must be at least 1", n)
		}
		c.maxConns = n
		return nil
	}
}

// WithServerHandshakeTimeout bounds the TLS and protocol handshakes of a
// new connection. Defaults to 5s.
func WithServerHandshakeTimeout(d time.Duration) ServerOption {
	return func(c *serverConfig) error { return positive("handshake timeout", d, &c.handshakeTimeout) }
}

// WithIdleTimeout closes a connection on which no request starts for this
// long. Clients ping well within it. Defaults to 2 minutes.
func WithIdleTimeout(d time.Duration) ServerOption {
	return func(c *serverConfig) error { return positive("idle timeout", d, &c.idleTimeout) }
}

// WithFrameTimeout closes a connection whose request takes longer than
// this to arrive once its first byte has (a client sending a byte a
// second), plus the time its bytes so far take at the minimum rate
// (WithMinFrameRate). Defaults to 30s.
func WithFrameTimeout(d time.Duration) ServerOption {
	return func(c *serverConfig) error { return positive("frame timeout", d, &c.frameTimeout) }
}

// WithMinFrameRate stretches the frame timeout by the time the bytes of a
// request that have arrived take at this rate (bytes a second), so that a
// client on a link at least this fast is never cut, whatever the size of
// its requests, while one that sends a byte a second still is after the
// frame timeout. Without it, a link too slow for a request within the
// frame timeout would never get that request through: cut, sent again,
// cut. 0 makes the frame timeout bound the whole request. Defaults to 8
// KiB/s.
func WithMinFrameRate(bytesPerSecond int64) ServerOption {
	return func(c *serverConfig) error { return rate("min frame rate", bytesPerSecond, &c.minFrameRate) }
}

// WithServerWriteTimeout bounds every write of responses: a client that
// stops reading breaks its connection. Defaults to 10s.
func WithServerWriteTimeout(d time.Duration) ServerOption {
	return func(c *serverConfig) error { return positive("write timeout", d, &c.writeTimeout) }
}

// WithResponseWindow sets how long a response may wait for others to leave
// with it, when the connection still has requests to read. The reader
// checks it after each request, so a response can also wait for the
// request being read to arrive whole. Defaults to 500µs.
func WithResponseWindow(d time.Duration) ServerOption {
	return func(c *serverConfig) error { return positive("response window", d, &c.respWindow) }
}

// WithServerTLS makes the server speak TLS with cfg. Set cfg.ClientAuth
// and cfg.ClientCAs to require client certificates.
func WithServerTLS(cfg *tls.Config) ServerOption {
	return func(c *serverConfig) error {
		if cfg == nil {
			return fmt.Errorf("nil TLS config")
		}
		c.tls = cfg
		return nil
	}
}

// WithConnErrorHandler sets a function called with the reason each time a
// connection ends on an error (a bad frame, a timeout, too many
// connections), but not when the client closes cleanly. It must not block.
func WithConnErrorHandler(f func(remote net.Addr, err error)) ServerOption {
	return func(c *serverConfig) error { c.onConnError = f; return nil }
}

// invalidOption wraps an option's error in ErrInvalidOption, once.
func invalidOption(err error) error {
	if errors.Is(err, ErrInvalidOption) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrInvalidOption, err)
}
