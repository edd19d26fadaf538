package collector

import (
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/netlog"
)

// Errors a collector gives as the reason it closed a connection.
var (
	ErrUnauthorized    = errors.New("collector: wrong or missing token")
	ErrBadStream       = errors.New("collector: bad stream name")
	ErrProtocolVersion = errors.New("collector: unsupported protocol version")
	ErrWrongStream     = errors.New("collector: batch for another stream id")
	ErrUnavailable     = errors.New("collector: cannot write")
	// ErrDirInUse is New's error when another collector serves Dir: two
	// would write the same files and journals over each other.
	ErrDirInUse = errors.New("collector: output directory in use by another collector")
)

// Collector receives batches from snail clients over TCP, writes each batch
// whole to the file of its stream and acks it. It is the library behind
// `snail collector`. New makes one; Serve or ListenAndServe runs it;
// Shutdown or Close stops it.
type Collector struct {
	cfg     Config
	log     *slog.Logger
	dec     *encoder.Decoder
	mem     *budget
	metrics *metrics
	srv     *netlog.Server[*request, ackResp]

	mu      sync.Mutex
	outputs map[string]*output
	addr    net.Addr
	maddr   net.Addr // the metrics listener's (ServeWithMetrics)
	http    *http.Server
	stopped bool

	dirMu  sync.Mutex
	lock   *os.File      // Dir/.snail/lock, held until the files are closed; under dirMu
	dirGen atomic.Uint64 // how many times restoreDir made the directory again

	stopping chan struct{} // closed when Shutdown or Close starts
	stopOnce sync.Once

	janitor     bool          // its goroutine runs (under mu)
	janitorDone chan struct{} // closed when it has stopped

	tokens atomic.Pointer[[][]byte] // the tokens a client may present; none: no token needed

	connLog     logLimit    // of "connection closed" lines
	warnedLimit atomic.Bool // checkFileLimit has warned
}

// logLimit lets through at most connLogsPerSecond lines a second, and
// counts the others, so that a flood of bad connections cannot flood the
// collector's log; the rejects counter still counts each one.
type logLimit struct {
	mu         sync.Mutex
	second     time.Time // the second being counted
	n          int       // lines in it
	suppressed int       // lines left out since the last one let through
}

const connLogsPerSecond = 20

// allow reports whether a line may go out now, and how many were left out
// before it (to say so with it).
func (l *logLimit) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec := now.Truncate(time.Second); !sec.Equal(l.second) {
		l.second, l.n = sec, 0
	}
	if l.n >= connLogsPerSecond {
		l.suppressed++
		return false, 0
	}
	l.n++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// outputIdle is how long an output stays open once its last connection
// went: a client that reconnects finds it open, and the rotated files
// queued for compression get compressed (closing the file abandons that
// until the stream's next connection). Tests shorten it.
var outputIdle = 30 * time.Second

// maxIdleOutputs bounds the outputs kept open without a connection, so
// that many streams connecting briefly (a job each) do not hold a file and
// a journal open each for outputIdle: past it the oldest idle ones close
// at once (those still compressing stay until done). Tests shrink it.
var maxIdleOutputs = 64

// output is one stream's file and its deduplication state: for each client
// stream id, the highest sequence number written, journaled beside the data
// (state.go) so that it survives a crash.
type output struct {
	name string
	sm   *streamMetrics
	refs int       // connections using it, under Collector.mu
	idle time.Time // when refs fell to 0, under Collector.mu: closed by the janitor later
	mu   sync.Mutex
	f    *filelog.File
	j    *journal
	seen map[uint64]uint64
	// used is when each client stream id in seen last wrote, as a count
	// of writes (tick): seen is bounded (maxClientIDs), and the least
	// recently written are forgotten first.
	used map[uint64]uint64
	tick uint64
	// failing is the error of a write being retried now, or nil: a new
	// client of the stream is turned away meanwhile instead of waiting.
	failing atomic.Pointer[string]
	// gaps are, per client stream id, sequence numbers below its seen
	// mark that were never written: a batch came with a number past the
	// next one. A correct client over TCP never skips one its window
	// still holds, but if one comes late after all (a link that lost a
	// whole frame, a client's bug), it is written, not taken for a
	// duplicate and lost. In memory only, at most maxGaps an id, newest
	// kept; a gap a client gave up (a batch refused for good) stays until
	// pushed out.
	gaps map[uint64][]uint64

	// With AckFsync, what a failed fsync leaves to do (under mu). Linux
	// reports a failed writeback once and may have dropped the pages it
	// could not write, so every batch written since the last fsync that
	// succeeded may be lost, and a later fsync that succeeds does not
	// mean otherwise. Those batches go to redo: they are not acked, and
	// when their clients send them again they are written again instead
	// of being taken for duplicates.
	jGen uint64 // the Collector's dirGen when j was last started anew (under mu)

	writes   uint64              // batches written so far, a clock for waiters
	unsynced []batchID           // written since the last fsync that succeeded
	redo     map[uint64][]uint64 // per client stream id, sequence numbers to write again
	failedAt uint64              // if not 0, a batch written at or before this write count is in redo

	// Group commit (AckFsync): replies wait here for the next fsync.
	smu     sync.Mutex
	scond   *sync.Cond
	waiters []waiter
	sstop   bool
	sdone   chan struct{}
}

// batchID names one written batch: its client stream id and sequence
// number, and the output's write count after it.
type batchID struct{ stream, seq, n uint64 }

// waiter is a reply held until the batch it acks is fsynced. n is the
// output's write count when the batch was written (or found a duplicate).
type waiter struct {
	reply func(ackResp)
	a     ackResp
	n     uint64
}

// New returns a Collector for cfg, after cfg.Validate. It creates the
// output directory and locks it (ErrDirInUse while another collector holds
// it) until Shutdown or Close; it does not listen yet.
func New(cfg Config) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Streams' files are opened as clients come: from the directory of
	// now, not the one the program may move to.
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("collector: output directory: %w", err)
	}
	cfg.Dir = dir
	if err := os.MkdirAll(filepath.Join(cfg.Dir, stateDir), 0o750); err != nil {
		return nil, fmt.Errorf("collector: output directory: %w", err)
	}
	lock, err := filelog.Lock(filepath.Join(cfg.Dir, stateDir, "lock"), 0o640)
	if errors.Is(err, filelog.ErrLocked) {
		return nil, fmt.Errorf("%w: %s", ErrDirInUse, cfg.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("collector: output directory: %w", err)
	}
	dec, err := encoder.NewDecoder(encoder.WithMaxFrameSize(cfg.MaxFrameSize), encoder.WithMaxDecompressedSize(cfg.MaxDecompressedSize))
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	c := &Collector{
		cfg:      cfg,
		log:      cfg.Logger,
		dec:      dec,
		mem:      newBudget(cfg.MaxMemory),
		metrics:  newMetrics(),
		outputs:  make(map[string]*output),
		stopping: make(chan struct{}),
		lock:     lock,
	}
	c.storeTokens(cfg.Tokens)
	opts := []netlog.ServerOption{
		netlog.WithMaxConns(cfg.MaxConns),
		netlog.WithServerHandshakeTimeout(cfg.HandshakeTimeout),
		netlog.WithIdleTimeout(cfg.IdleTimeout),
		netlog.WithFrameTimeout(cfg.FrameTimeout),
		netlog.WithMinFrameRate(max(cfg.MinFrameRate, 0)),
		netlog.WithServerWriteTimeout(cfg.WriteTimeout),
		netlog.WithConnErrorHandler(c.connError),
	}
	if cfg.TLS != nil {
		opts = append(opts, netlog.WithServerTLS(cfg.TLS))
	}
	c.srv, err = netlog.NewServer[*request, ackResp](&codec{c: c}, opts...)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return c, nil
}

// outputExt ends the name of every output file: stream NAME goes to
// Dir/NAME.log.
const outputExt = ".log"

// checkStreamName applies the protocol's rule for stream names
// (netlog.CheckStreamName) and keeps out the names whose file would look
// like a rotated file of another stream (app-20261127T110000.000000000Z
// beside app): that stream's retention would delete this one's live file.
func checkStreamName(name string) error {
	if err := netlog.CheckStreamName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrBadStream, err)
	}
	if filelog.IsBackupName(name + outputExt) {
		return fmt.Errorf("%w: %q ends like the name of a rotated file", ErrBadStream, name)
	}
	return nil
}

// connError counts and logs why a connection ended; the log at most
// connLogsPerSecond lines a second.
func (c *Collector) connError(addr net.Addr, err error) {
	reason := reasonOf(err)
	c.metrics.rejects.WithLabelValues(reason).Inc()
	ok, suppressed := c.connLog.allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		c.log.Warn("connection closed", "remote", addr.String(), "reason", reason, "err", err,
			"not_logged_before", suppressed)
		return
	}
	c.log.Warn("connection closed", "remote", addr.String(), "reason", reason, "err", err)
}

// rejectReasons are the labels reasonOf gives, each exported from the
// start (at 0) so that dashboards and rate() see every reason before its
// first reject.
var rejectReasons = []string{"max_conns", "handshake_timeout", "tls", "idle_timeout", "slow_frame", "unauthorized",
	"bad_stream", "version", "bad_crc", "too_large", "bad_frame", "protocol", "unavailable", "no_memory", "timeout", "io"}

// reasonOf maps an error to the label of the rejects counter.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, netlog.ErrTooManyConns):
		return "max_conns"
	case errors.Is(err, netlog.ErrHandshakeTimeout):
		return "handshake_timeout"
	case errors.Is(err, netlog.ErrTLSHandshake):
		return "tls"
	case errors.Is(err, netlog.ErrIdleTimeout):
		return "idle_timeout"
	case errors.Is(err, netlog.ErrFrameTimeout):
		return "slow_frame"
	case errors.Is(err, ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, ErrBadStream):
		return "bad_stream"
	case errors.Is(err, ErrProtocolVersion), errors.Is(err, encoder.ErrVersion):
		return "version"
	case errors.Is(err, encoder.ErrChecksum):
		return "bad_crc"
	case errors.Is(err, encoder.ErrFrameTooLarge), errors.Is(err, encoder.ErrDecompressedTooLarge):
		return "too_large"
	case errors.Is(err, encoder.ErrBadMagic), errors.Is(err, encoder.ErrKind), errors.Is(err, encoder.ErrFlags),
		errors.Is(err, encoder.ErrCorrupt), errors.Is(err, encoder.ErrTruncated):
		return "bad_frame"
	case errors.Is(err, netlog.ErrProtocol), errors.Is(err, ErrWrongStream):
		return "protocol"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, errNoMemory):
		return "no_memory"
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return "timeout"
	}
	return "io"
}

// Serve serves the log protocol on l until Shutdown or Close, and returns
// netlog.ErrServerClosed then.
func (c *Collector) Serve(l net.Listener) error {
	c.mu.Lock()
	if c.addr == nil {
		c.addr = l.Addr()
	}
	c.mu.Unlock()
	c.checkFileLimit()
	c.log.Info("collector serving", "addr", l.Addr().String(), "dir", c.cfg.Dir, "ack", c.cfg.Ack.String())
	return c.srv.Serve(l)
}

// filesPerConn is what one connection may hold open at worst: its socket,
// and the output file and state journal of a stream it alone writes.
const filesPerConn = 3

// checkFileLimit warns, once, when the open-file limit cannot hold
// MaxConns connections each writing its own stream: past the limit new
// connections wait in the accept queue and new streams are refused
// ("too many open files") while the operator sees only a lower rate.
func (c *Collector) checkFileLimit() {
	limit, ok := openFileLimit()
	need := uint64(c.cfg.MaxConns)*filesPerConn + 64
	if !ok || limit >= need || !c.warnedLimit.CompareAndSwap(false, true) {
		return
	}
	c.log.Warn("open-file limit below what max-conns may need; raise it (ulimit -n, LimitNOFILE=) or lower max-conns",
		"limit", limit, "max_conns", c.cfg.MaxConns, "needed", need)
}

// ListenAndServe listens on cfg.Listen (and cfg.MetricsListen, if set) and
// serves until Shutdown or Close, and returns netlog.ErrServerClosed then
// (at once if they came first). Addr and MetricsAddr name the listeners
// from then on (with port 0, the ports the system chose).
func (c *Collector) ListenAndServe() error {
	l, err := net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("collector: %w", err)
	}
	var ml net.Listener
	if c.cfg.MetricsListen != "" {
		if ml, err = net.Listen("tcp", c.cfg.MetricsListen); err != nil {
			l.Close()
			return fmt.Errorf("collector: metrics: %w", err)
		}
	}
	return c.ServeWithMetrics(l, ml)
}

// ServeWithMetrics is ListenAndServe on listeners the caller made: the log
// protocol on l, and /metrics, /healthz and /readyz on ml unless it is nil
// (cfg.Listen and cfg.MetricsListen are not used); metrics are served by
// one call only. It is how a collector serves sockets it was handed, as by
// systemd's socket activation.
func (c *Collector) ServeWithMetrics(l, ml net.Listener) error {
	var hs *http.Server
	if ml != nil {
		hs = c.metricsServer()
	}
	c.mu.Lock()
	if isClosed(c.stopping) {
		// Shutdown or Close ran before the listeners were known: they
		// would stay open, the metrics server's goroutine with them.
		c.mu.Unlock()
		l.Close()
		if ml != nil {
			ml.Close()
		}
		return netlog.ErrServerClosed
	}
	if ml != nil && c.http != nil {
		c.mu.Unlock()
		l.Close()
		ml.Close()
		return fmt.Errorf("collector: metrics served already on %v", c.MetricsAddr())
	}
	if c.addr == nil {
		c.addr = l.Addr()
	}
	if ml != nil {
		c.maddr, c.http = ml.Addr(), hs
	}
	c.mu.Unlock()
	if ml != nil {
		go func() {
			if err := hs.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.log.Error("metrics listener", "err", err)
			}
		}()
		c.log.Info("metrics serving", "addr", ml.Addr().String())
	}
	return c.Serve(l)
}

// metricsServer is the HTTP server of the metrics listener. Its timeouts
// are the log port's, so that a scraper or a stranger cannot hold a
// connection and its goroutine for good: the request's headers within the
// handshake timeout, the request within the frame timeout, the answer
// within the write timeout, and a kept-alive connection closed after the
// idle timeout.
func (c *Collector) metricsServer() *http.Server {
	return &http.Server{
		Handler:           c.Handler(),
		ReadHeaderTimeout: c.cfg.HandshakeTimeout,
		ReadTimeout:       c.cfg.FrameTimeout,
		WriteTimeout:      c.cfg.WriteTimeout,
		IdleTimeout:       c.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
	}
}

// Addr returns the address of the first listener served, or nil.
func (c *Collector) Addr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// MetricsAddr returns the address of the metrics listener served
// (ListenAndServe's Config.MetricsListen, or ServeWithMetrics's), or nil.
func (c *Collector) MetricsAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maddr
}

// Handler returns the HTTP handler of /metrics, /healthz (200 while the
// collector serves: for a liveness probe) and /readyz (503 also while an
// output file cannot be written, a full disk say: for a readiness probe
// or a load balancer, which can send clients elsewhere meanwhile).
func (c *Collector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", c.metrics.handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-c.stopping:
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok")
		}
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-c.stopping:
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		default:
		}
		if n := value(c.metrics.failing); n > 0 { // outputs in retry's loop now
			http.Error(w, fmt.Sprintf("%d output files cannot be written now (see the log)", n), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// SetTokens replaces the tokens clients may present, for the handshakes
// that follow (connections already made carry on): none turns the check
// off. The tokens are checked as Config.Tokens; on an error the old ones
// stay.
func (c *Collector) SetTokens(tokens []string) error {
	if err := checkTokens(tokens); err != nil {
		return fmt.Errorf("%w: Tokens: %v", ErrInvalidConfig, err)
	}
	c.storeTokens(tokens)
	return nil
}

func (c *Collector) storeTokens(tokens []string) {
	bs := make([][]byte, len(tokens))
	for i, t := range tokens {
		bs[i] = []byte(t)
	}
	c.tokens.Store(&bs)
}

// authorized reports whether token is one of the collector's, or the
// collector wants none. Each is compared in constant time, and all are.
func (c *Collector) authorized(token string) bool {
	tokens := *c.tokens.Load()
	if len(tokens) == 0 {
		return true
	}
	ok := 0
	for _, t := range tokens {
		ok |= subtle.ConstantTimeCompare([]byte(token), t)
	}
	return ok == 1
}

// Reopen reopens every output file, for external rotation (SIGHUP).
func (c *Collector) Reopen() error {
	var errs []error
	for _, o := range c.snapshot() {
		o.mu.Lock()
		if err := o.f.Reopen(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o.name, err))
		}
		o.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (c *Collector) snapshot() []*output {
	c.mu.Lock()
	defer c.mu.Unlock()
	outs := make([]*output, 0, len(c.outputs))
	for _, o := range c.outputs {
		outs = append(outs, o)
	}
	return outs
}

// Shutdown stops accepting, stops reading on every connection, waits for
// the batches being written to be written and acked, then fsyncs and
// closes every file. If ctx ends first it closes the connections at once,
// and returns ctx's error if that cut a batch unacked (its client sends it
// again); the files are still synced and closed.
func (c *Collector) Shutdown(ctx context.Context) error {
	c.stopOnce.Do(func() { close(c.stopping) })
	c.mem.abort()
	err := c.srv.Shutdown(ctx)
	if err != nil && !errors.Is(err, ctx.Err()) {
		err = nil
	}
	c.mu.Lock()
	hs := c.http
	c.mu.Unlock()
	if hs != nil {
		if herr := hs.Shutdown(ctx); herr != nil && err == nil {
			err = herr
		}
	}
	if cerr := c.closeOutputs(); err == nil {
		err = cerr
	}
	return err
}

// Close closes every listener and connection at once and closes the files.
// Batches not acked are sent again by their clients.
func (c *Collector) Close() error {
	c.stopOnce.Do(func() { close(c.stopping) })
	c.mem.abort()
	_ = c.srv.Close()
	c.mu.Lock()
	hs := c.http
	c.mu.Unlock()
	if hs != nil {
		hs.Close()
	}
	return c.closeOutputs()
}

func (c *Collector) closeOutputs() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	outs := c.outputs
	janitor := c.janitor
	c.mu.Unlock()
	if janitor {
		<-c.janitorDone // it stops on c.stopping, closed before this
	}
	var errs []error
	for name, o := range outs {
		o.stopSync()
		o.mu.Lock()
		if err := errors.Join(o.f.Fsync(), o.closeJournal(), o.f.Close()); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		o.mu.Unlock()
	}
	c.dec.Close()
	c.dirMu.Lock()
	c.lock.Close() // another collector may take the directory now
	c.dirMu.Unlock()
	c.log.Info("collector stopped")
	return errors.Join(errs...)
}

// output returns the output of stream name, opening its file on first use.
func (c *Collector) output(name string) (*output, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil, fmt.Errorf("%w: shutting down", ErrUnavailable)
	}
	if o := c.outputs[name]; o != nil {
		o.refs++
		return o, nil
	}
	if !c.janitor {
		c.janitor = true
		c.janitorDone = make(chan struct{})
		go c.closeIdle()
	}
	o, err := c.openOutput(name)
	if tooManyFiles(err) && c.closeIdleLocked(true) > 0 {
		// The open-file limit is reached while outputs that no
		// connection uses hold two descriptors each: without them
		// closed now, rather than when they have been idle for
		// outputIdle, every new stream would be turned away meanwhile
		// (and the descriptors freed by those taken by the next
		// connections, which fail the same way).
		o, err = c.openOutput(name)
	}
	if err != nil {
		return nil, err
	}
	c.outputs[name] = o
	return o, nil
}

// tooManyFiles reports whether err is the process's (EMFILE) or the
// system's (ENFILE) limit on open files.
func tooManyFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// openOutput opens the file and journal of stream name, recovering them
// after a crash. Called with c.mu held.
func (c *Collector) openOutput(name string) (*output, error) {
	path := filepath.Join(c.cfg.Dir, name+outputExt)
	seen, used := make(map[uint64]uint64), make(map[uint64]uint64)
	j, found, err := openJournal(c.cfg.Dir, name, seen, used)
	if err != nil {
		return nil, fmt.Errorf("%w: state of %s: %w", ErrUnavailable, name, err)
	}
	if found {
		if j.damaged > 0 {
			c.log.Warn("skipped damaged records in the state journal; a batch their clients send again may be written twice",
				"stream", name, "records", j.damaged)
		}
		if !j.closedCleanly() {
			cut, err := recoverLive(path, j.last, int64(c.cfg.MaxDecompressedSize)+1)
			switch {
			case errors.Is(err, errNotOurs):
				c.log.Warn("after a crash, the live file is not the one the state journal last wrote and holds more than a batch: kept as is; a batch its client sends again may be written twice",
					"stream", name, "err", err)
			case err != nil:
				j.close()
				return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
			case cut > 0:
				c.log.Warn("cut a batch written in part before a crash; its client sends it again", "stream", name, "bytes", cut)
			}
		}
		if len(seen) > 0 { // not a journal with no batch yet (an open that failed before)
			c.log.Info("recovered stream state", "stream", name, "clients", len(seen))
		}
	}
	// Where the file ends now: what a crash before the first batch's record
	// is cut back to, and nothing before it.
	if err := j.baseline(path, seen); err != nil {
		j.close()
		return nil, fmt.Errorf("%w: state of %s: %w", ErrUnavailable, name, err)
	}
	opts := append(c.cfg.fileOptions(), filelog.WithErrorHandler(func(err error) {
		c.log.Error("output file", "stream", name, "err", err)
	}))
	f, err := filelog.Open(path, opts...)
	if err != nil {
		j.close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	o := &output{name: name, sm: c.metrics.stream(name), f: f, j: j, seen: seen, used: used, tick: uint64(j.records), refs: 1}
	o.forget(c)
	if c.cfg.Ack == AckFsync {
		o.scond = sync.NewCond(&o.smu)
		o.sdone = make(chan struct{})
		go o.syncLoop(c)
	}
	return o, nil
}

// release drops a connection's use of o. After the last one the output
// stays open for outputIdle, and while its rotated files are compressed;
// then closeIdle closes it, so that open files are bounded by the streams
// connected lately, not by every stream ever seen. The next connection of
// the stream opens it again (and reads its journal).
func (c *Collector) release(o *output) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o.refs--
	if o.refs == 0 {
		o.idle = time.Now()
	}
}

// closeIdle is the janitor: it closes the outputs idle for outputIdle
// whose compressions are done, and makes the state directory again if it
// was deleted (restoreDir), until the collector stops.
func (c *Collector) closeIdle() {
	defer close(c.janitorDone)
	t := time.NewTicker(min(outputIdle/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-c.stopping:
			return
		case <-t.C:
		}
		// The state directory alone may have been deleted: the data
		// files, still there, would not tell.
		c.restoreDir()
		c.mu.Lock()
		c.closeIdleLocked(false)
		c.mu.Unlock()
	}
}

// closeIdleLocked closes the outputs that no connection uses and that
// compress nothing: those idle for outputIdle and the oldest past
// maxIdleOutputs, or all of them. It returns how many it closed. Called
// with c.mu held.
func (c *Collector) closeIdleLocked(all bool) int {
	var idle []*output
	for _, o := range c.outputs {
		if o.refs == 0 && !o.f.Compressing() {
			idle = append(idle, o)
		}
	}
	slices.SortFunc(idle, func(a, b *output) int { return a.idle.Compare(b.idle) })
	n := 0
	for i, o := range idle {
		if !all && time.Since(o.idle) < outputIdle && len(idle)-i <= maxIdleOutputs {
			break // the rest are younger and within the bound
		}
		delete(c.outputs, o.name)
		if err := o.close(); err != nil {
			c.log.Error("close output", "stream", o.name, "err", err)
		}
		n++
	}
	return n
}

// close sends the last fsynced acks, syncs and closes the file and journal.
func (o *output) close() error {
	o.stopSync()
	o.mu.Lock()
	defer o.mu.Unlock()
	var errs []error
	if o.scond != nil { // AckFsync: leave everything durable
		errs = append(errs, o.f.Fsync())
	}
	errs = append(errs, o.closeJournal(), o.f.Close())
	return errors.Join(errs...)
}

// closeJournal journals a clean close, syncs and closes the journal.
// Called with o.mu held, after the last write. The close is clean only if
// the journal's last record says where the file ends: a batch written but
// not journaled (its journal write failed, and was given up at shutdown)
// is cut at the next start, as after a crash, rather than kept and written
// again when its client resends it.
func (o *output) closeJournal() error {
	var err error
	if ino, size := o.f.Position(); ino == o.j.last.ino && size == o.j.last.size {
		err = o.j.closed(ino, size, o.marks)
	}
	return errors.Join(err, o.j.close())
}

// syncLoop is an output's group commit (AckFsync): it takes every reply
// waiting, fsyncs the file and the journal once, and sends them all. The
// batches of those replies were written before they waited, so one fsync
// covers them all, however many connections wrote them.
func (o *output) syncLoop(c *Collector) {
	defer close(o.sdone)
	for {
		o.smu.Lock()
		for len(o.waiters) == 0 && !o.sstop {
			o.scond.Wait()
		}
		ws := o.waiters
		o.waiters = nil
		stop := o.sstop
		o.smu.Unlock()
		if len(ws) == 0 && stop {
			return
		}
		// Both fsyncs run outside o.mu: batches keep being written and
		// journaled meanwhile, and wait for the next round.
		start := time.Now()
		o.mu.Lock()
		jf := o.j.f
		upTo := o.writes // every waiter of ws was written by now
		o.mu.Unlock()
		err := o.f.Fsync()
		if err == nil && testHookFsync != nil {
			err = testHookFsync(o.name)
		}
		if err == nil {
			// A compaction that replaced jf meanwhile fsynced its new
			// journal, records of these batches included.
			if jerr := jf.Sync(); jerr != nil && !errors.Is(jerr, os.ErrClosed) {
				err = jerr
			}
		}
		c.metrics.fsyncSeconds.Observe(time.Since(start).Seconds())
		o.mu.Lock()
		if err != nil {
			c.metrics.writeErrors.Inc()
			c.log.Error("fsync failed; the batches written since the last fsync are not acked and will be written again",
				"stream", o.name, "batches", len(o.unsynced), "err", err)
			o.failSynced(c)
		} else {
			o.synced(upTo)
		}
		failedAt := o.failedAt
		o.mu.Unlock()
		for _, w := range ws {
			if err == nil && failedAt > 0 && w.n <= failedAt {
				err = fmt.Errorf("%w: an fsync failed before this batch was known durable", ErrUnavailable)
			}
			if err != nil {
				w.a.status, w.a.reason = encoder.StatusUnavailable, err.Error()
			}
			w.reply(w.a)
		}
	}
}

// testHookFsync, set by tests only, can fail an output's group fsync after
// it ran.
var testHookFsync func(stream string) error

// synced drops the batches written up to write count upTo from unsynced:
// an fsync that started after them succeeded. Called with o.mu held.
func (o *output) synced(upTo uint64) {
	i := 0
	for i < len(o.unsynced) && o.unsynced[i].n <= upTo {
		i++
	}
	o.unsynced = append(o.unsynced[:0], o.unsynced[i:]...)
}

// failSynced moves every batch written since the last fsync that
// succeeded to redo, and journals each stream's lowered mark, so that a
// restarted collector writes those batches again too. Waiters of batches
// written so far are answered "unavailable"; the write count moves on so
// that a duplicate found from now on is not. Called with o.mu held.
func (o *output) failSynced(c *Collector) {
	streams := map[uint64]bool{}
	for _, b := range o.unsynced {
		if o.redo == nil {
			o.redo = make(map[uint64][]uint64)
		}
		o.redo[b.stream] = append(o.redo[b.stream], b.seq)
		streams[b.stream] = true
	}
	o.unsynced = o.unsynced[:0]
	o.failedAt = o.writes
	o.writes++
	ino, size := o.f.Position()
	for id := range streams {
		if err := o.j.add(record{stream: id, seq: o.mark(id), ino: ino, size: size}, o.marks); err != nil {
			c.log.Error("journal the batches to write again", "stream", o.name, "err", err)
		}
	}
	if err := o.j.sync(); err != nil {
		c.log.Error("journal the batches to write again", "stream", o.name, "err", err)
	}
}

// mark is what the journal keeps for client stream id: the highest
// sequence number up to which every batch is written and not waiting to
// be written again. Called with o.mu held.
func (o *output) mark(id uint64) uint64 {
	m := o.seen[id]
	for _, seq := range o.redo[id] {
		m = min(m, seq-1)
	}
	return m
}

// marks returns mark for every client stream id, least recently written
// first, for a journal compaction. Called with o.mu held.
func (o *output) marks() []idMark {
	ms := make([]idMark, 0, len(o.seen))
	for id := range o.seen {
		ms = append(ms, idMark{id, o.mark(id)})
	}
	slices.SortFunc(ms, func(a, b idMark) int { return cmp.Compare(o.used[a.id], o.used[b.id]) })
	return ms
}

// maxClientIDs bounds the client stream ids an output remembers. Each
// client without a spool takes a new id when it starts, so without a bound
// a stream whose clients restart often would grow its state (memory, and
// the journal) without end. Past the bound, the least recently written
// quarter is forgotten, as Kafka expires the ids of idle producers: a
// client forgotten that way and then sending again a batch written before
// gets it written twice; one that writes anything is not forgotten before
// maxClientIDs*3/4 other clients have written since.
var maxClientIDs = 1 << 14

// forget trims o.seen to maxClientIDs*3/4 once it is over maxClientIDs,
// least recently written first; an id with batches to write again stays.
// Called with o.mu held (or before o is shared).
func (o *output) forget(c *Collector) {
	if len(o.seen) <= maxClientIDs {
		return
	}
	ids := make([]uint64, 0, len(o.seen))
	for id := range o.seen {
		if len(o.redo[id]) == 0 {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b uint64) int { return cmp.Compare(o.used[a], o.used[b]) })
	n := min(len(o.seen)-maxClientIDs*3/4, len(ids))
	for _, id := range ids[:n] {
		delete(o.seen, id)
		delete(o.used, id)
		delete(o.gaps, id)
	}
	c.log.Info("forgot the client stream ids that wrote least lately", "stream", o.name, "forgotten", n, "kept", len(o.seen))
}

// maxGaps bounds the sequence numbers an output remembers as skipped, per
// client stream id.
const maxGaps = 16

// noteGaps records that stream id skipped first..last: up to maxGaps of
// them, the newest. Called with o.mu held.
func (o *output) noteGaps(id, first, last uint64) {
	first = max(first, last-min(last-first, maxGaps-1))
	g := o.gaps[id]
	for seq := first; seq <= last; seq++ {
		g = append(g, seq)
	}
	if len(g) > maxGaps {
		g = append(g[:0], g[len(g)-maxGaps:]...)
	}
	if o.gaps == nil {
		o.gaps = make(map[uint64][]uint64)
	}
	o.gaps[id] = g
}

// inGap reports whether seq of stream id was skipped and never written.
// Called with o.mu held.
func (o *output) inGap(id, seq uint64) bool {
	return slices.Contains(o.gaps[id], seq)
}

// fillGap forgets that seq of stream id was skipped: it is written now.
// Called with o.mu held.
func (o *output) fillGap(id, seq uint64) {
	g := slices.DeleteFunc(o.gaps[id], func(s uint64) bool { return s == seq })
	if len(g) == 0 {
		delete(o.gaps, id)
	} else {
		o.gaps[id] = g
	}
}

// inRedo reports whether seq of stream id is to be written again. Called
// with o.mu held.
func (o *output) inRedo(id, seq uint64) bool {
	for _, s := range o.redo[id] {
		if s == seq {
			return true
		}
	}
	return false
}

// doneRedo forgets seq of stream id once it is written again. Called with
// o.mu held.
func (o *output) doneRedo(id, seq uint64) {
	rs := o.redo[id]
	for i, s := range rs {
		if s == seq {
			rs = append(rs[:i], rs[i+1:]...)
			break
		}
	}
	if len(rs) == 0 {
		delete(o.redo, id)
	} else {
		o.redo[id] = rs
	}
}

// ack sends a once its batch is as durable as the ack level says; n is the
// output's write count from write.
func (o *output) ack(a ackResp, n uint64, reply func(ackResp)) {
	if o.scond == nil {
		reply(a)
		return
	}
	o.smu.Lock()
	o.waiters = append(o.waiters, waiter{reply: reply, a: a, n: n})
	o.scond.Signal()
	o.smu.Unlock()
}

// stopSync ends the group commit goroutine once its last replies are sent.
func (o *output) stopSync() {
	if o.scond == nil {
		return
	}
	o.smu.Lock()
	o.sstop = true
	o.scond.Signal()
	o.smu.Unlock()
	<-o.sdone
}

// write writes one batch of stream id to o unless it was written before,
// then journals it. A failing write (a full disk) is retried with backoff
// until it succeeds or the collector stops: the connection stops reading
// meanwhile, so memory stays bounded and the client's window fills. A
// failing journal write is retried alone, so the batch is never written
// twice. It reports whether the batch was a duplicate, and the output's
// write count after it, for ack.
func (c *Collector) write(o *output, r *request) (dup bool, n uint64, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	redo := o.inRedo(r.stream, r.seq)
	late := !redo && r.seq <= o.seen[r.stream] && o.inGap(r.stream, r.seq)
	if r.seq <= o.seen[r.stream] && !redo && !late {
		return true, o.writes, nil
	}
	// Several clients may share the file: a batch that does not end its
	// last line gets a newline, so that the next batch's first line stays
	// its own.
	unterminated := len(r.payload) > 0 && r.payload[len(r.payload)-1] != '\n'
	if err := c.retry(o, func() error {
		start := time.Now()
		var err error
		if unterminated {
			err = o.f.WriteBatchVec([][]byte{r.payload, newline}, r.entries)
		} else {
			err = o.f.WriteBatch(r.payload, r.entries)
		}
		c.metrics.writeSeconds.Observe(time.Since(start).Seconds())
		return err
	}); err != nil {
		return false, 0, err
	}
	prev, known := o.seen[r.stream]
	o.seen[r.stream] = max(prev, r.seq)
	o.tick++
	o.used[r.stream] = o.tick
	if redo {
		o.doneRedo(r.stream, r.seq)
	}
	ino, size := o.f.Position()
	rec := record{stream: r.stream, seq: o.mark(r.stream), ino: ino, size: size}
	if err := c.retry(o, func() error { return o.journal(c, rec) }); err != nil {
		// Not journaled, so not acked: as if not written, though it is.
		o.seen[r.stream] = prev
		if !known {
			delete(o.seen, r.stream)
			delete(o.used, r.stream)
		}
		if redo {
			o.redo[r.stream] = append(o.redo[r.stream], r.seq)
		}
		return false, 0, err
	}
	switch {
	case !known:
		o.forget(c)
	case late:
		o.fillGap(r.stream, r.seq)
		c.log.Warn("a batch came after later ones of its client stream, and was written (a link that lost a frame, or a client's bug)",
			"stream", o.name, "client", fmt.Sprintf("%016x", r.stream), "seq", r.seq, "highest", prev)
	case r.seq > prev+1:
		o.noteGaps(r.stream, prev+1, r.seq-1)
	}
	o.writes++
	if o.scond != nil {
		o.unsynced = append(o.unsynced, batchID{r.stream, r.seq, o.writes})
	}
	wrote := len(r.payload)
	if unterminated {
		wrote++
	}
	c.metrics.bytesWritten.Add(float64(wrote))
	c.metrics.entries.Add(float64(r.entries))
	o.sm.written(r.entries, wrote)
	return false, o.writes, nil
}

var newline = []byte{'\n'}

// retry runs f until it succeeds, backing off from 10ms to 1s, or until
// the collector stops. While it fails, the output counts as failing
// (/readyz, the failing_outputs gauge). The log says when failing starts,
// when its error changes, every retryLogEvery while it goes on, and when
// writing resumes: an outage of an hour is a few hundred lines, not one per
// retry.
func (c *Collector) retry(o *output, f func() error) error {
	delay := 10 * time.Millisecond
	var since, logged time.Time
	var last string
	failures := 0
	defer func() {
		if failures > 0 {
			c.metrics.failing.Dec()
			o.failing.Store(nil)
		}
	}()
	for {
		err := f()
		if err == nil {
			if failures > 0 {
				c.log.Info("write resumed", "stream", o.name, "failures", failures, "after", time.Since(since).Round(time.Millisecond).String())
			}
			return nil
		}
		if errors.Is(err, fs.ErrNotExist) && c.restoreDir() {
			continue // at once: the directory is back
		}
		if failures == 0 {
			since = time.Now()
			c.metrics.failing.Inc()
		}
		failures++
		msg := err.Error()
		o.failing.Store(&msg)
		c.metrics.writeErrors.Inc()
		if msg != last || time.Since(logged) >= retryLogEvery {
			c.log.Error("write failed; retrying", "stream", o.name, "err", err, "failures", failures, "retry_in", delay.String())
			last, logged = msg, time.Now()
		}
		select {
		case <-c.stopping:
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// journal journals rec. After restoreDir made the directory again, the
// journal first starts anew there with every stream's mark: its old file
// went with the directory.
func (o *output) journal(c *Collector, rec record) error {
	if gen := c.dirGen.Load(); o.jGen != gen {
		if err := o.j.rewrite(o.marks(), rec); err != nil {
			return err
		}
		o.jGen = gen
		return nil
	}
	return o.j.add(rec, o.marks)
}

// restoreDir makes the output directory and its state directory again, and
// takes the directory's lock again, if they were deleted under the running
// collector (rm -rf of the log directory): writing then resumes at once,
// into new files, instead of failing until an operator makes the
// directory or restarts the collector. What was in it is gone; the state
// journals start anew with the marks the outputs hold (output.journal). It
// reports whether it made the directory.
func (c *Collector) restoreDir() bool {
	c.dirMu.Lock()
	defer c.dirMu.Unlock()
	state := filepath.Join(c.cfg.Dir, stateDir)
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) || isClosed(c.stopping) {
		return false
	}
	if err := os.MkdirAll(state, 0o750); err != nil {
		c.log.Error("the output directory was deleted, and cannot be made again", "dir", c.cfg.Dir, "err", err)
		return false
	}
	c.dirGen.Add(1)
	lock, err := filelog.Lock(filepath.Join(state, "lock"), 0o640)
	if err != nil {
		// Another collector started on the directory in the meantime
		// (ErrLocked): both now write it, as they would not have if
		// it had stayed.
		c.log.Error("the output directory was deleted and made again; its lock cannot be taken again", "dir", c.cfg.Dir, "err", err)
	} else {
		c.lock.Close()
		c.lock = lock
	}
	c.log.Warn("the output directory was deleted; made it again, and writing goes on there", "dir", c.cfg.Dir)
	return true
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// retryLogEvery is how often retry logs an error that goes on.
const retryLogEvery = 30 * time.Second

// seenOf returns the highest sequence number up to which every batch of
// stream id is written (and none waits to be written again).
func (o *output) seenOf(id uint64) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mark(id)
}

// Stats are a collector's main counters, for tests and the snail binary.
type Stats struct {
	Conns      int
	Frames     uint64 // batch frames received
	Entries    uint64 // entries written
	Duplicates uint64 // batch frames received again and not written
	Acks       uint64 // ack frames sent
	Rejects    map[string]uint64
}

// Stats returns the collector's counters.
func (c *Collector) Stats() Stats {
	s := c.metrics.stats()
	s.Conns = c.srv.Conns()
	return s
}
