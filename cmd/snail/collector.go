package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/snail-log/snail"
	"github.com/snail-log/snail/collector"
	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/netlog"
)

// envFlags sets each flag from its environment variable, if set, before the
// command line is parsed (so that the command line wins).
func envFlags(fs *flag.FlagSet, env map[string]string) error {
	for name, key := range env {
		if v, ok := os.LookupEnv(key); ok {
			if err := fs.Set(name, v); err != nil {
				// flag's own "parse error" does not say what was expected.
				kind, _ := flag.UnquoteUsage(fs.Lookup(name))
				if b, ok := fs.Lookup(name).Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
					kind = "boolean (true, false, 1, 0)"
				} else if kind == "" {
					kind = "value"
				}
				return flagError("%s=%q: not a valid %s for --%s: %w", key, v, kind, name, err)
			}
		}
	}
	return nil
}

// sizeFlag is a byte count written as 100MiB, 64KB or 1048576.
type sizeFlag struct{ n *int64 }

func (s sizeFlag) String() string {
	if s.n == nil {
		return "0"
	}
	return fmt.Sprint(*s.n)
}

func (s sizeFlag) Set(v string) error {
	n, err := snail.ParseSize(v)
	if err != nil {
		return err
	}
	*s.n = n
	return nil
}

// modeFlag is a file mode in octal, as chmod takes it: 640, 0644.
type modeFlag struct{ m *os.FileMode }

func (f modeFlag) String() string {
	if f.m == nil {
		return "0"
	}
	return fmt.Sprintf("%04o", uint32(*f.m))
}

func (f modeFlag) Set(v string) error {
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o777 {
		return fmt.Errorf("%q: want permission bits in octal, 0 to 0777 (640, 0644)", v)
	}
	if n&0o200 == 0 {
		return fmt.Errorf("%q: the owner must be able to write (snail writes the file after it made it)", v)
	}
	*f.m = os.FileMode(n)
	return nil
}

// backupsFlag is a count of rotated files to keep, or "unlimited" (also
// -1), as the snail URL's maxbackups takes it.
type backupsFlag struct{ n *int }

func (f backupsFlag) String() string {
	switch {
	case f.n == nil:
		return "0"
	case *f.n == filelog.Unlimited:
		return "unlimited"
	}
	return strconv.Itoa(*f.n)
}

func (f backupsFlag) Set(v string) error {
	if v == "unlimited" {
		*f.n = filelog.Unlimited
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < filelog.Unlimited {
		return fmt.Errorf("%q: want a count of files, or unlimited (-1)", v)
	}
	*f.n = n
	return nil
}

const collectorHelp = `Usage: snail collector [flags]

Runs the collector daemon: it accepts snail clients (netlog.Dial, snail send)
on --listen, writes each stream to DIR/STREAM.log and acks every batch once it
is written (or fsynced, with --ack fsync). A batch sent again after a
reconnect is acked but not written twice.

Signals: SIGTERM or SIGINT stop it gracefully (stop accepting, finish and ack
what was read, fsync, close); SIGHUP reopens the output files (logrotate) and reloads the --token-file and the TLS files
(a renewed certificate serves new connections).
Every flag can also be set with the environment variable in brackets; the
command line wins.

Flags:
`

// collectorCmd runs `snail collector` until ctx ends (SIGTERM, SIGINT) and
// then shuts it down gracefully. hup delivers SIGHUP.
func collectorCmd(ctx context.Context, args []string, hup <-chan os.Signal, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("snail collector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg collector.Config
	var ack, compress, level, tlsCert, tlsKey, tlsClientCA, token, tokenFile string
	var maxFrame, maxMem int64
	minRate := int64(collector.DefaultMinFrameRate)
	var shutdownTimeout time.Duration
	var cpuProfile string
	fs.StringVar(&cfg.Listen, "listen", collector.DefaultListen, "address to accept clients on, or systemd (systemd#N): the first (Nth) socket of systemd's socket activation [SNAIL_LISTEN]")
	fs.StringVar(&cfg.Dir, "dir", collector.DefaultDir, "output directory: stream NAME goes to DIR/NAME.log [SNAIL_DIR]")
	fs.StringVar(&cfg.MetricsListen, "metrics", "", "address of the HTTP listener for /metrics, /healthz (200 while serving) and /readyz (503 also while an output file cannot be written), or systemd#N (a socket of systemd's socket activation); empty: none [SNAIL_METRICS]")
	fs.StringVar(&token, "token", "", "shared token every client must present; empty: none (ps shows it to every user: prefer --token-file) [SNAIL_TOKEN]")
	fs.StringVar(&tokenFile, "token-file", "", "file of tokens, one per line (# comments): a client must present one; read again on SIGHUP, so that a token is replaced without a stop (add the new one, move the clients, remove the old) [SNAIL_TOKEN_FILE]")
	fs.StringVar(&ack, "ack", "write", "ack a batch after it is written (write: survives a crash of the collector) or fsynced (fsync: survives power loss) [SNAIL_ACK]")
	fs.IntVar(&cfg.MaxConns, "max-conns", collector.DefaultMaxConns, "most client connections at once [SNAIL_MAX_CONNS]")
	fs.Var(sizeFlag{&maxFrame}, "max-frame", "largest frame a client may send (a `size`: 16MiB, 64KB, 1048576), as sent (default 16MiB) [SNAIL_MAX_FRAME]")
	fs.Var(sizeFlag{&maxMem}, "max-memory", "most frame bytes (a `size`) held at once over all connections (default 256MiB); past half of it, a frame takes its share as its bytes arrive, not when announced [SNAIL_MAX_MEMORY]")
	fs.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", collector.DefaultHandshakeTimeout, "time a new connection has to complete its handshake [SNAIL_HANDSHAKE_TIMEOUT]")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", collector.DefaultIdleTimeout, "close a connection that sends nothing for this long (clients ping every 15s, or every third of it, which the collector tells them) [SNAIL_IDLE_TIMEOUT]")
	fs.DurationVar(&cfg.FrameTimeout, "frame-timeout", collector.DefaultFrameTimeout, "close a connection whose frame is not whole this long after its first byte, plus the time its bytes so far take at --min-frame-rate [SNAIL_FRAME_TIMEOUT]")
	fs.Var(sizeFlag{&minRate}, "min-frame-rate", "bytes a second (a `size`) a client must keep up within a frame past --frame-timeout, so that a slow link gets large frames through and a byte a second does not; 0: --frame-timeout bounds the whole frame [SNAIL_MIN_FRAME_RATE]")
	fs.Var(sizeFlag{&cfg.MaxSize}, "max-size", "rotate an output file before it exceeds this `size`; 0: never [SNAIL_MAX_SIZE]")
	fs.DurationVar(&cfg.RotateEvery, "rotate-every", 0, "rotate output files at every multiple of this interval from local midnight (1h, 24h: at midnight, also on daylight saving days; over a day: whole days); 0: never [SNAIL_ROTATE_EVERY]")
	cfg.MaxBackups = filelog.DefaultMaxBackups
	fs.Var(backupsFlag{&cfg.MaxBackups}, "max-backups", "rotated files kept per stream: a `count`, or unlimited (-1) [SNAIL_MAX_BACKUPS]")
	fs.DurationVar(&cfg.MaxAge, "max-age", 0, "delete rotated files older than this; 0: keep by count only [SNAIL_MAX_AGE]")
	fs.StringVar(&compress, "compress", "none", "compress rotated files: none, gzip or zstd [SNAIL_COMPRESS]")
	cfg.FileMode = filelog.DefaultMode
	fs.Var(modeFlag{&cfg.FileMode}, "file-mode", "permissions of the output files it creates, an octal `mode` (0644: readable by a log shipper running as another user) [SNAIL_FILE_MODE]")
	fs.StringVar(&tlsCert, "tls-cert", "", "PEM certificate file: serve TLS [SNAIL_TLS_CERT]")
	fs.StringVar(&tlsKey, "tls-key", "", "PEM key file of --tls-cert [SNAIL_TLS_KEY]")
	fs.StringVar(&tlsClientCA, "tls-client-ca", "", "PEM CA file: require client certificates signed by it [SNAIL_TLS_CLIENT_CA]")
	fs.DurationVar(&shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a graceful stop may take before connections are cut [SNAIL_SHUTDOWN_TIMEOUT]")
	fs.StringVar(&cpuProfile, "cpu-profile", "", "write a Go CPU profile of the daemon to this file until it stops [SNAIL_CPU_PROFILE]")
	fs.StringVar(&level, "log-level", "info", "the collector's own log level: debug, info, warn, error [SNAIL_LOG_LEVEL]")
	fs.Usage = func() {
		fmt.Fprint(stderr, collectorHelp)
		fs.PrintDefaults()
	}
	if err := envFlags(fs, map[string]string{
		"listen": "SNAIL_LISTEN", "dir": "SNAIL_DIR", "metrics": "SNAIL_METRICS", "token": "SNAIL_TOKEN", "token-file": "SNAIL_TOKEN_FILE", "ack": "SNAIL_ACK",
		"max-conns": "SNAIL_MAX_CONNS", "max-frame": "SNAIL_MAX_FRAME", "max-memory": "SNAIL_MAX_MEMORY",
		"handshake-timeout": "SNAIL_HANDSHAKE_TIMEOUT", "idle-timeout": "SNAIL_IDLE_TIMEOUT", "frame-timeout": "SNAIL_FRAME_TIMEOUT", "min-frame-rate": "SNAIL_MIN_FRAME_RATE",
		"max-size": "SNAIL_MAX_SIZE", "rotate-every": "SNAIL_ROTATE_EVERY", "max-backups": "SNAIL_MAX_BACKUPS", "max-age": "SNAIL_MAX_AGE",
		"file-mode": "SNAIL_FILE_MODE", "compress": "SNAIL_COMPRESS", "tls-cert": "SNAIL_TLS_CERT", "tls-key": "SNAIL_TLS_KEY", "tls-client-ca": "SNAIL_TLS_CLIENT_CA",
		"shutdown-timeout": "SNAIL_SHUTDOWN_TIMEOUT", "log-level": "SNAIL_LOG_LEVEL", "cpu-profile": "SNAIL_CPU_PROFILE",
	}); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	var err error
	if cfg.Ack, err = collector.ParseAckLevel(ack); err != nil {
		return usageError{fmt.Errorf("--ack: %w", err)}
	}
	if err := oneToken(args, &token, &tokenFile); err != nil {
		return usageError{err}
	}
	switch {
	case token != "":
		cfg.Tokens = []string{token}
	case tokenFile != "":
		if cfg.Tokens, err = netlog.ReadTokens(tokenFile); err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
	}
	var ok bool
	if cfg.Compression, ok = map[string]filelog.Compression{"none": filelog.NoCompression, "gzip": filelog.Gzip, "zstd": filelog.Zstd}[compress]; !ok {
		return flagError("--compress %q: want none, gzip or zstd", compress)
	}
	// In collector.Config zero means the default; given here, it would
	// read as "none" or "no limit", which it is not.
	var zero error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "max-conns", "max-frame", "max-memory", "handshake-timeout", "idle-timeout", "frame-timeout":
			if v := f.Value.String(); zero == nil && (v == "0" || v == "0s") {
				zero = flagError("--%s %s: must be positive (leave it out for the default)", f.Name, v)
			}
		}
	})
	if zero != nil {
		return zero
	}
	if cfg.MaxBackups == 0 {
		return flagError("--max-backups 0 would delete every rotated file; use unlimited to keep all")
	}
	cfg.MaxFrameSize, cfg.MaxMemory = int(maxFrame), maxMem
	if cfg.MinFrameRate = minRate; minRate == 0 {
		cfg.MinFrameRate = -1 // off; in collector.Config 0 is the default
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return flagError("--log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv}))
	var stls *serverTLS
	if (tlsCert == "") != (tlsKey == "") {
		return flagError("--tls-cert and --tls-key go together")
	}
	if tlsCert != "" || tlsKey != "" {
		var err error
		if stls, err = newServerTLS(tlsCert, tlsKey, tlsClientCA); err != nil {
			return err
		}
		cfg.TLS = stls.config()
	} else if tlsClientCA != "" {
		return flagError("--tls-client-ca needs --tls-cert and --tls-key")
	}

	// A socket from systemd has no address for collector.New to check.
	listen, metrics := cfg.Listen, cfg.MetricsListen
	ln, err := activationSpec("listen", listen)
	if err != nil {
		return err
	}
	mn, err := activationSpec("metrics", metrics)
	if err != nil {
		return err
	}
	if ln > 0 {
		cfg.Listen = ""
	}
	if mn > 0 {
		cfg.MetricsListen = ""
	}

	c, err := collector.New(cfg)
	if err != nil {
		return err
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			c.Close()
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			c.Close()
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	l, ml, err := listeners(listen, ln, metrics, mn)
	if err != nil {
		c.Close()
		return err
	}
	cfg.Logger.Info("snail collector starting", "version", version())
	served := make(chan error, 1)
	go func() { served <- c.ServeWithMetrics(l, ml) }()
	for {
		select {
		case err := <-served:
			c.Close()
			return err // could not listen
		case <-hup:
			if err := c.Reopen(); err != nil {
				cfg.Logger.Error("reopen after SIGHUP", "err", err)
			} else {
				cfg.Logger.Info("reopened output files")
			}
			if tokenFile != "" {
				tokens, err := netlog.ReadTokens(tokenFile)
				if err == nil {
					err = c.SetTokens(tokens)
				}
				if err != nil {
					cfg.Logger.Error("tokens not reloaded after SIGHUP; the ones before still hold", "err", err)
				} else {
					cfg.Logger.Info("reloaded tokens", "tokens", len(tokens))
				}
			}
			if stls != nil {
				if notAfter, err := stls.reload(); err != nil {
					cfg.Logger.Error("TLS files not reloaded after SIGHUP; serving the ones before", "err", err)
				} else {
					cfg.Logger.Info("reloaded TLS files", "cert_expires", notAfter)
				}
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	cfg.Logger.Info("stopping", "timeout", shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = c.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("not stopped within --shutdown-timeout %s: connections cut with batches unacked, which their clients send again: %w", shutdownTimeout, err)
	}
	if serr := <-served; !errors.Is(serr, netlog.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// signals returns the context that SIGTERM and SIGINT end, and the channel
// of SIGHUPs, for the daemon. It also ignores SIGPIPE, so that the daemon
// outlives the reader of its log (snail collector 2>&1 | logger, the
// logger restarted): Go otherwise ends a process whose write to standard
// error meets a closed pipe; now that write fails, and the line is lost.
func signals() (context.Context, context.CancelFunc, chan os.Signal) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	signal.Ignore(syscall.SIGPIPE)
	return ctx, func() { stop(); signal.Stop(hup); signal.Reset(syscall.SIGPIPE) }, hup
}
