// Package snail wires snail's parts together for the common case: a batched,
// rotated log file under zap, zerolog or slog. The parts themselves live in
// their own packages: batcher, encoder, sink, filelog and netlog.
//
// Importing snail registers the "snail" scheme with zap, so that
//
//	zap.Config{OutputPaths: []string{"snail:///var/log/app.log?maxsize=100MiB&compress=zstd"}}
//
// logs through a snail Writer into a rotated file, and
//
//	zap.Config{OutputPaths: []string{"snail://collector:7777/checkout?compress=zstd"}}
//
// logs to a snail collector. See ParseURL and ParseNetURL for the query
// parameters. Every open of one file (or one collector stream) through zap
// in a process shares one Writer, so that OutputPaths and ErrorOutputPaths
// may name the same file, and several loggers may be built from one Config;
// zap's close function syncs it, and the last one closes it. zap does not
// tell its output paths an entry's level, so drop_below takes only "all"
// there; for dropping by level, use sink.NewZapCore over OpenURL.
package snail

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
	"go.uber.org/zap"
)

// Scheme is the URL scheme registered with zap.
const Scheme = "snail"

func init() {
	if err := zap.RegisterSink(Scheme, openZapSink); err != nil {
		panic(err) // only if another package registered "snail" first
	}
}

// OpenFile opens path with filelog and returns a sink Writer in front of
// it. Close the Writer to drain it and close the file.
func OpenFile(path string, fileOpts []filelog.Option, sinkOpts ...sink.Option) (*sink.Writer, error) {
	f, err := filelog.Open(path, fileOpts...)
	if err != nil {
		return nil, err
	}
	w, err := sink.New(f, sinkOpts...)
	if err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// Dial connects to a snail collector at addr (netlog.Dial) and returns a
// sink Writer in front of the connection: zap, zerolog and slog log to the
// collector exactly as to a file. Sync returns once the collector has acked
// every entry written before it (or netlog.ErrUnavailable once the collector
// has been unreachable for netlog's report delay); Close drains, syncs,
// waits for the acks up to netlog's drain timeout and closes the connection.
func Dial(addr string, netOpts []netlog.ClientOption, sinkOpts ...sink.Option) (*sink.Writer, error) {
	s, err := netlog.Dial(addr, netOpts...)
	if err != nil {
		return nil, err
	}
	w, err := sink.New(s, sinkOpts...)
	if err != nil {
		s.Close()
		return nil, err
	}
	return w, nil
}

// OpenURL opens a snail URL, as zap does for OutputPaths: a file for
// snail:///path?... (ParseURL), a collector for snail://host:port/stream?...
// (ParseNetURL). Unlike zap's opens, each call opens a Writer of its own.
func OpenURL(u *url.URL) (*sink.Writer, error) {
	if u.Port() != "" {
		addr, nopts, sopts, err := ParseNetURL(u)
		if err != nil {
			return nil, err
		}
		return Dial(addr, nopts, sopts...)
	}
	path, fopts, sopts, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	return OpenFile(path, fopts, sopts...)
}

// ParseNetURL reads a snail://host:port/stream URL (a collector, and the
// stream its entries go to; "default" when the path is empty) into an
// address and options. Query parameters (all optional):
//
//	compress=zstd      compression on the wire: none, s2 or zstd
//	token=secret       the shared token the collector expects
//	token_file=/etc/snail/token  the token, read from this file as
//	                   netlog.ReadToken reads it (zap's errors repeat a URL
//	                   whole: a token in it would show there)
//	tls=true           speak TLS, verifying the collector against the system's roots
//	tls_ca=/etc/ca.pem speak TLS, verifying the collector against this PEM CA file
//	tls_server_name=collector.example  the name to verify the collector's
//	                   certificate against (default: the URL's host)
//	tls_cert=/etc/client.pem, tls_key=/etc/client.key  speak TLS with this
//	                   client certificate (a collector with --tls-client-ca);
//	                   read again at each connection (see ClientTLS)
//	spool=/var/spool/app  disk spool directory (netlog.WithSpool and WithSpoolAll)
//	spool_size=1GiB    most bytes the spool holds (default 1GiB); when full, writes wait
//	drop_below, window, batch, buffers  as for files (ParseURL)
func ParseNetURL(u *url.URL) (string, []netlog.ClientOption, []sink.Option, error) {
	bad := func(format string, args ...any) (string, []netlog.ClientOption, []sink.Option, error) {
		return "", nil, nil, fmt.Errorf("snail: URL %q: %s", redact(u), fmt.Sprintf(format, args...))
	}
	if u.Scheme != Scheme {
		return bad("scheme is not %q", Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return bad("want snail://host:port/stream")
	}
	stream := strings.TrimPrefix(u.Path, "/")
	if stream == "" {
		stream = netlog.DefaultStreamName
	}
	nopts := []netlog.ClientOption{netlog.WithStreamName(stream)}
	var spool string
	spoolSize := int64(netlog.DefaultSpoolBytes)
	var useTLS bool
	var tlsCA, tlsCert, tlsKey, tlsName string
	sopts, err := params(u, func(key, v string) error {
		switch key {
		case "compress":
			c, err := encoder.ParseCompression(v)
			if err != nil {
				return err
			}
			nopts = append(nopts, netlog.WithCompression(c))
		case "token":
			nopts = append(nopts, netlog.WithToken(v))
		case "token_file":
			token, err := netlog.ReadToken(v)
			if err != nil {
				return err
			}
			nopts = append(nopts, netlog.WithToken(token))
		case "tls":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return err
			}
			useTLS = useTLS || b
		case "tls_ca":
			tlsCA, useTLS = v, true
		case "tls_cert":
			tlsCert, useTLS = v, true
		case "tls_key":
			tlsKey, useTLS = v, true
		case "tls_server_name":
			tlsName, useTLS = v, true
		case "spool":
			spool = v
		case "spool_size":
			n, err := ParseSize(v)
			if err != nil {
				return err
			}
			spoolSize = n
		default:
			return errUnknownParam
		}
		return nil
	})
	if err != nil {
		return bad("%v", err)
	}
	if useTLS {
		cfg, err := ClientTLS(tlsCA, tlsCert, tlsKey, tlsName)
		if err != nil {
			return bad("%v", err)
		}
		nopts = append(nopts, netlog.WithTLS(cfg))
	}
	if spool != "" {
		nopts = append(nopts, netlog.WithSpool(spool, spoolSize, netlog.SpoolBlock), netlog.WithSpoolAll())
	}
	return net.JoinHostPort(u.Hostname(), u.Port()), nopts, sopts, nil
}

// errUnknownParam is what a params callback returns for a key it does not
// know.
var errUnknownParam = errors.New("unknown parameter")

// params reads u's query parameters (the last value of each): the sink
// Writer's into options, the others through other.
func params(u *url.URL, other func(key, v string) error) ([]sink.Option, error) {
	var sopts []sink.Option
	q := u.Query()
	for _, key := range slices.Sorted(maps.Keys(q)) { // the same error first, every time
		v := q[key][len(q[key])-1]
		if o, ok, err := sinkParam(key, v); ok {
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			sopts = append(sopts, o)
			continue
		}
		if err := other(key, v); err != nil {
			if errors.Is(err, errUnknownParam) {
				return nil, fmt.Errorf("unknown parameter %q", key)
			}
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	return sopts, nil
}

// sinkParam reads the URL parameters of the sink Writer, which files and
// collectors share; ok is false for any other key.
func sinkParam(key, v string) (o sink.Option, ok bool, err error) {
	switch key {
	case "batch":
		n, err := ParseSize(v)
		if err != nil {
			return nil, true, err
		}
		return sink.WithBatchBytes(int(n)), true, nil
	case "window":
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, true, err
		}
		return sink.WithWindow(d), true, nil
	case "buffers":
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, true, err
		}
		return sink.WithMaxBuffers(n), true, nil
	case "drop_below":
		l, ok := levels[v]
		if !ok {
			return nil, true, fmt.Errorf("unknown level %q", v)
		}
		return sink.WithDropBelow(l), true, nil
	}
	return nil, false, nil
}

// ParseURL reads a snail:///absolute/path or snail:relative/path URL (from
// the working directory) into a path and options. Query parameters (all
// optional):
//
//	maxsize=100MiB     rotate before the file would exceed this (B, KB, MB, GB, KiB, MiB, GiB)
//	every=24h          rotate at every multiple of this duration (local time)
//	maxbackups=10      rotated files to keep, or "unlimited"
//	maxage=168h        delete rotated files older than this
//	compress=zstd      compress rotated files: none, gzip or zstd
//	fsync=never        never, batch, or an interval such as 1s
//	mode=0640          permissions of a new file (octal)
//	follow=1s          when the file was deleted, moved or replaced, write a new one at the path (checked at most this often)
//	drop_below=warn    when full, drop entries below this level (trace ... fatal, all)
//	window=100ms       how long a batch may wait for more entries
//	batch=1MiB         size of one batch buffer
//	buffers=16         most batch buffers held (4 are allocated up front)
func ParseURL(u *url.URL) (string, []filelog.Option, []sink.Option, error) {
	bad := func(format string, args ...any) (string, []filelog.Option, []sink.Option, error) {
		return "", nil, nil, fmt.Errorf("snail: URL %q: %s", redact(u), fmt.Sprintf(format, args...))
	}
	if u.Scheme != Scheme {
		return bad("scheme is not %q", Scheme)
	}
	if u.Host != "" && u.Host != "localhost" {
		return bad("host must be empty: snail:///absolute/path or snail:relative/path (a collector is snail://host:port/stream)")
	}
	path, err := urlPath(u)
	if err != nil {
		return bad("%v", err)
	}
	var fopts []filelog.Option
	sopts, err := params(u, func(key, v string) error {
		switch key {
		case "maxsize":
			n, err := ParseSize(v)
			if err != nil {
				return err
			}
			fopts = append(fopts, filelog.WithMaxSize(n))
		case "every", "maxage", "follow":
			d, err := time.ParseDuration(v)
			if err != nil {
				return err
			}
			switch key {
			case "every":
				fopts = append(fopts, filelog.WithRotateEvery(d))
			case "maxage":
				fopts = append(fopts, filelog.WithMaxAge(d))
			default:
				fopts = append(fopts, filelog.WithFollowPath(d))
			}
		case "maxbackups":
			n := filelog.Unlimited
			if v != "unlimited" {
				var err error
				if n, err = strconv.Atoi(v); err != nil {
					return err
				}
			}
			fopts = append(fopts, filelog.WithMaxBackups(n))
		case "compress":
			c, ok := map[string]filelog.Compression{"none": filelog.NoCompression, "gzip": filelog.Gzip, "zstd": filelog.Zstd}[v]
			if !ok {
				return fmt.Errorf("want none, gzip or zstd, not %q", v)
			}
			fopts = append(fopts, filelog.WithCompression(c))
		case "fsync":
			switch v {
			case "never":
				fopts = append(fopts, filelog.WithFsync(filelog.FsyncNever))
			case "batch":
				fopts = append(fopts, filelog.WithFsync(filelog.FsyncBatch))
			default:
				d, err := time.ParseDuration(v)
				if err != nil {
					return fmt.Errorf("want never, batch or a duration, not %q", v)
				}
				fopts = append(fopts, filelog.WithFsyncInterval(d))
			}
		case "mode":
			m, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				return err
			}
			fopts = append(fopts, filelog.WithMode(os.FileMode(m)))
		default:
			return errUnknownParam
		}
		return nil
	})
	if err != nil {
		return bad("%v", err)
	}
	return path, fopts, sopts, nil
}

// urlPath is the file a snail URL names: its path, or its opaque part
// (snail:app.log), which is relative.
func urlPath(u *url.URL) (string, error) {
	if u.Opaque != "" {
		return url.PathUnescape(u.Opaque)
	}
	if u.Path == "" {
		return "", errors.New("no path")
	}
	return u.Path, nil
}

var levels = map[string]sink.Level{"trace": sink.TraceLevel, "debug": sink.DebugLevel, "info": sink.InfoLevel,
	"warn": sink.WarnLevel, "error": sink.ErrorLevel, "fatal": sink.FatalLevel, "all": sink.AllLevels}

// ParseSize reads a byte count written as 100MiB, 64KB or 1048576 (units B,
// KB, MB, GB, KiB, MiB, GiB), as the URL parameters and snail's flags take it.
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult, num := int64(1), s
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSuffix(num, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q: want a whole number of B, KB, MB, GB, KiB, MiB or GiB", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("bad size %q: too large", s) // it wrapped around, to 0 or below
	}
	return n * mult, nil
}
