// Package snail wires snail's parts together for the common case: a batched,
// rotated log file under zap, zerolog or slog. The parts themselves live in
// their own packages: batcher, encoder, sink, filelog and netlog.
//
// Importing snail registers the "snail" scheme with zap, so that
//
//	zap.Config{OutputPaths: []string{"snail:///var/log/app.log?maxsize=100MiB&compress=zstd"}}
//
// logs through a snail Writer into a rotated file. See ParseURL for the
// query parameters.
package snail

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
	"go.uber.org/zap"
)

// Scheme is the URL scheme registered with zap.
const Scheme = "snail"

func init() {
	if err := zap.RegisterSink(Scheme, func(u *url.URL) (zap.Sink, error) { return OpenURL(u) }); err != nil {
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

// OpenURL opens a snail:///path?... URL, as zap does for OutputPaths.
func OpenURL(u *url.URL) (*sink.Writer, error) {
	path, fopts, sopts, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	return OpenFile(path, fopts, sopts...)
}

// ParseURL reads a snail:///path URL into a path and options. Query
// parameters (all optional):
//
//	maxsize=100MiB     rotate before the file would exceed this (B, KB, MB, GB, KiB, MiB, GiB)
//	every=24h          rotate at every multiple of this duration (local time)
//	maxbackups=10      rotated files to keep, or "unlimited"
//	maxage=168h        delete rotated files older than this
//	compress=zstd      compress rotated files: none, gzip or zstd
//	fsync=never        never, batch, or an interval such as 1s
//	mode=0640          permissions of a new file (octal)
//	drop_below=warn    when full, drop entries below this level (trace ... fatal, all)
//	window=100ms       how long a batch may wait for more entries
//	batch=1MiB         size of one batch buffer
//	buffers=16         most batch buffers held (4 are allocated up front)
func ParseURL(u *url.URL) (string, []filelog.Option, []sink.Option, error) {
	bad := func(format string, args ...any) (string, []filelog.Option, []sink.Option, error) {
		return "", nil, nil, fmt.Errorf("snail: URL %q: %s", u.String(), fmt.Sprintf(format, args...))
	}
	if u.Scheme != Scheme {
		return bad("scheme is not %q", Scheme)
	}
	if u.Host != "" && u.Host != "localhost" {
		return bad("host must be empty: snail:///absolute/path")
	}
	if u.Path == "" {
		return bad("no path")
	}
	var fopts []filelog.Option
	var sopts []sink.Option
	for key, vals := range u.Query() {
		v := vals[len(vals)-1]
		switch key {
		case "maxsize", "batch":
			n, err := ParseSize(v)
			if err != nil {
				return bad("%s: %v", key, err)
			}
			if key == "maxsize" {
				fopts = append(fopts, filelog.WithMaxSize(n))
			} else {
				sopts = append(sopts, sink.WithBatchBytes(int(n)))
			}
		case "every", "maxage", "window":
			d, err := time.ParseDuration(v)
			if err != nil {
				return bad("%s: %v", key, err)
			}
			switch key {
			case "every":
				fopts = append(fopts, filelog.WithRotateEvery(d))
			case "maxage":
				fopts = append(fopts, filelog.WithMaxAge(d))
			default:
				sopts = append(sopts, sink.WithWindow(d))
			}
		case "buffers":
			n, err := strconv.Atoi(v)
			if err != nil {
				return bad("buffers: %v", err)
			}
			sopts = append(sopts, sink.WithMaxBuffers(n))
		case "maxbackups":
			n := filelog.Unlimited
			if v != "unlimited" {
				var err error
				if n, err = strconv.Atoi(v); err != nil {
					return bad("maxbackups: %v", err)
				}
			}
			fopts = append(fopts, filelog.WithMaxBackups(n))
		case "compress":
			c, ok := map[string]filelog.Compression{"none": filelog.NoCompression, "gzip": filelog.Gzip, "zstd": filelog.Zstd}[v]
			if !ok {
				return bad("compress: want none, gzip or zstd, not %q", v)
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
					return bad("fsync: want never, batch or a duration, not %q", v)
				}
				fopts = append(fopts, filelog.WithFsyncInterval(d))
			}
		case "mode":
			m, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				return bad("mode: %v", err)
			}
			fopts = append(fopts, filelog.WithMode(os.FileMode(m)))
		case "drop_below":
			l, ok := levels[v]
			if !ok {
				return bad("drop_below: unknown level %q", v)
			}
			sopts = append(sopts, sink.WithDropBelow(l))
		default:
			return bad("unknown parameter %q", key)
		}
	}
	return u.Path, fopts, sopts, nil
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
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
