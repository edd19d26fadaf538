package snail

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
	"go.uber.org/zap"
)

// zapSinks holds the Writers opened through the zap scheme, one per file or
// collector stream, so that every open of it in the process shares one
// Writer. zap opens each of OutputPaths and ErrorOutputPaths on its own,
// configs often name one file in both (etcd's do), and programs build
// several loggers from one Config; two Writers rotating one file would
// refuse each other (filelog.ErrInUse), and two on one spool directory too.
var zapSinks = struct {
	sync.Mutex
	m map[string]*sharedWriter
}{m: map[string]*sharedWriter{}}

// sharedWriter is a Writer opened through the zap scheme and the count of
// its opens not closed yet.
type sharedWriter struct {
	w      *sink.Writer
	params string // the URL's parameters, canonical: every open must give the same
	opens  int
}

// openZapSink is the zap scheme's sink factory: OpenURL, shared.
func openZapSink(u *url.URL) (zap.Sink, error) {
	if v := u.Query()["drop_below"]; len(v) > 0 && v[len(v)-1] != "all" {
		return nil, fmt.Errorf("snail: URL %q: drop_below=%s: zap does not tell its output paths an entry's level, "+
			"so every entry would count as info; drop_below=all drops any entry when full, and sink.NewZapCore "+
			"over snail.OpenURL drops by level", redact(u), v[len(v)-1])
	}
	key, params := zapSinkKey(u)
	zapSinks.Lock()
	defer zapSinks.Unlock()
	s, ok := zapSinks.m[key]
	if ok && s.params != params {
		return nil, fmt.Errorf("snail: URL %q: already open in this process with other parameters", redact(u))
	}
	if !ok {
		w, err := OpenURL(u)
		if err != nil {
			return nil, err
		}
		s = &sharedWriter{w: w, params: params}
		zapSinks.m[key] = s
	}
	s.opens++
	return &zapSink{s: s, key: key}, nil
}

// zapSinkKey names what u writes to, a file or a collector's stream, and
// gives its parameters in one canonical form (sorted, the last value of
// each, as ParseURL reads them).
func zapSinkKey(u *url.URL) (key, params string) {
	q := u.Query()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(q)) {
		v := q[k]
		fmt.Fprintf(&b, "%s=%s&", url.QueryEscape(k), url.QueryEscape(v[len(v)-1]))
	}
	if u.Port() != "" {
		stream := strings.TrimPrefix(u.Path, "/")
		if stream == "" {
			stream = netlog.DefaultStreamName
		}
		return "collector " + net.JoinHostPort(u.Hostname(), u.Port()) + " " + stream, b.String()
	}
	path, _ := urlPath(u) // valid: OpenURL has opened it, or will fail
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return "file " + path, b.String()
}

// redact is u without its query, which may hold a token.
func redact(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Opaque: u.Opaque, Host: u.Host, Path: u.Path}).String()
}

// zapSink is one open of a shared Writer, as zap holds it. Closing it
// syncs the Writer, and the last open's Close closes it.
type zapSink struct {
	s      *sharedWriter
	key    string
	closed atomic.Bool
}

func (z *zapSink) Write(p []byte) (int, error) {
	if z.closed.Load() {
		return 0, sink.ErrClosed
	}
	return z.s.w.Write(p)
}

func (z *zapSink) Sync() error {
	if z.closed.Load() {
		return sink.ErrClosed
	}
	return z.s.w.Sync()
}

func (z *zapSink) Close() error {
	if !z.closed.CompareAndSwap(false, true) {
		return nil
	}
	zapSinks.Lock()
	defer zapSinks.Unlock() // held while closing: a new open waits for the file's lock to go
	z.s.opens--
	if z.s.opens > 0 {
		return z.s.w.Sync()
	}
	delete(zapSinks.m, z.key)
	return z.s.w.Close()
}
