package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// SlogHandler is a slog.Handler that writes JSON to a Writer, in the same
// shape as slog.NewJSONHandler (the same bytes for the same record and
// options), with its own append-only encoder: no allocation per record for
// attributes of the common kinds (string, numbers, bool, time, duration,
// error, groups). It is safe for concurrent use.
type SlogHandler struct {
	w      *Writer
	opts   slog.HandlerOptions
	pre    []byte   // attributes from WithAttrs, encoded
	groups []string // groups from WithGroup
	nOpen  int      // how many of groups pre has opened
}

var _ slog.Handler = (*SlogHandler)(nil)

// NewSlogHandler returns a handler writing to w. A nil opts means the
// defaults, as for slog.NewJSONHandler.
func NewSlogHandler(w *Writer, opts *slog.HandlerOptions) *SlogHandler {
	h := &SlogHandler{w: w}
	if opts != nil {
		h.opts = *opts
	}
	return h
}

// Enabled reports whether level is at or above the handler's minimum level
// (Info unless HandlerOptions.Level says otherwise).
func (h *SlogHandler) Enabled(_ context.Context, level slog.Level) bool {
	min := slog.LevelInfo
	if h.opts.Level != nil {
		min = h.opts.Level.Level()
	}
	return level >= min
}

func (h *SlogHandler) clone() *SlogHandler {
	h2 := *h
	h2.pre = slices.Clip(h.pre)
	h2.groups = slices.Clip(h.groups)
	return &h2
}

// WithAttrs returns a handler whose records carry as, encoded once here.
func (h *SlogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	empty := 0
	for _, a := range as {
		if a.Value.Kind() == slog.KindGroup && len(a.Value.Group()) == 0 {
			empty++
		}
	}
	if empty == len(as) {
		return h
	}
	h2 := h.clone()
	s := &encState{h: h2, buf: h2.pre}
	s.sep = len(s.buf) > 0 && s.buf[len(s.buf)-1] != '{'
	if h.opts.ReplaceAttr != nil {
		s.groups = slices.Clone(h.groups[:h.nOpen])
	}
	pos, sep := len(s.buf), s.sep
	s.openGroups(h.groups[h.nOpen:])
	if s.attrs(as) {
		h2.nOpen = len(h2.groups)
	} else {
		s.buf, s.sep = s.buf[:pos], sep
	}
	h2.pre = s.buf
	return h2
}

// WithGroup returns a handler that puts the attributes that follow in
// group name.
func (h *SlogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := h.clone()
	h2.groups = append(h2.groups, name)
	return h2
}

var statePool = sync.Pool{New: func() any { return &encState{buf: make([]byte, 0, 1024)} }}

// Handle encodes r as one JSON line and writes it.
func (h *SlogHandler) Handle(_ context.Context, r slog.Record) error {
	s := statePool.Get().(*encState)
	s.h, s.buf, s.sep, s.groups = h, append(s.buf[:0], '{'), false, s.groups[:0]
	rep := h.opts.ReplaceAttr
	s.builtin = true // ReplaceAttr sees no groups for the built-in keys
	if !r.Time.IsZero() {
		t := r.Time.Round(0)
		if rep == nil {
			s.rawKey(`"time":`) // slog.TimeKey, escaped
			s.time(t)
		} else {
			s.attr(slog.Time(slog.TimeKey, t))
		}
	}
	if rep == nil {
		s.rawKey(`"level":`) // slog.LevelKey, escaped
		s.level(r.Level)
	} else {
		s.attr(slog.Any(slog.LevelKey, r.Level))
	}
	if h.opts.AddSource {
		src := r.Source()
		if src == nil {
			src = &slog.Source{}
		}
		s.attr(slog.Any(slog.SourceKey, src))
	}
	if rep == nil {
		s.rawKey(`"msg":`) // slog.MessageKey, escaped
		s.str(r.Message)
	} else {
		s.attr(slog.String(slog.MessageKey, r.Message))
	}
	s.builtin = false

	if len(h.pre) > 0 {
		s.comma()
		s.buf = append(s.buf, h.pre...)
		s.sep = h.pre[len(h.pre)-1] != '{'
	}
	nOpen := h.nOpen
	if r.NumAttrs() > 0 {
		if rep != nil {
			s.groups = append(s.groups, h.groups[:h.nOpen]...)
		}
		pos, sep := len(s.buf), s.sep
		s.openGroups(h.groups[h.nOpen:])
		nOpen = len(h.groups)
		empty := true
		r.Attrs(func(a slog.Attr) bool {
			if s.attr(a) {
				empty = false
			}
			return true
		})
		if empty {
			s.buf, s.sep, nOpen = s.buf[:pos], sep, h.nOpen
		}
	}
	for range nOpen {
		s.buf = append(s.buf, '}')
	}
	s.buf = append(s.buf, '}', '\n')
	_, err := h.w.WriteEntry(FromSlog(r.Level), s.buf)
	if cap(s.buf) <= 64<<10 { // keep big buffers out of the pool
		s.h = nil
		statePool.Put(s)
	}
	return err
}

// encState encodes one record (or one WithAttrs call).
type encState struct {
	h       *SlogHandler
	buf     []byte
	sep     bool     // a comma is due before the next key
	groups  []string // open groups, kept only for ReplaceAttr
	builtin bool

	// The last whole second time formatted, for records that come many
	// to a second: its date and clock, and its zone.
	tSec   int64
	tLoc   *time.Location
	tClock [19]byte // 2006-01-02T15:04:05
	tZone  [6]byte  // Z or -07:00
	tZLen  int
}

func (s *encState) comma() {
	if s.sep {
		s.buf = append(s.buf, ',')
	}
}

// rawKey appends a key already quoted and followed by its colon: the
// built-in keys, which need no escaping each time.
func (s *encState) rawKey(k string) {
	s.comma()
	s.buf = append(s.buf, k...)
	s.sep = true
}

func (s *encState) key(k string) {
	b := s.buf
	if s.sep {
		b = append(b, ',')
	}
	s.sep = true
	if plain(k) {
		b = append(b, '"')
		b = append(b, k...)
		s.buf = append(b, '"', ':')
		return
	}
	s.buf = b
	s.escape(k)
	s.buf = append(s.buf, ':')
}

func (s *encState) openGroups(names []string) {
	for _, n := range names {
		s.openGroup(n)
	}
}

func (s *encState) openGroup(name string) {
	s.key(name)
	s.buf = append(s.buf, '{')
	s.sep = false
	if s.h.opts.ReplaceAttr != nil {
		s.groups = append(s.groups, name)
	}
}

func (s *encState) closeGroup() {
	s.buf = append(s.buf, '}')
	s.sep = true
	if s.h.opts.ReplaceAttr != nil {
		s.groups = s.groups[:len(s.groups)-1]
	}
}

// attrs appends as and reports whether any of them was not empty.
func (s *encState) attrs(as []slog.Attr) bool {
	nonEmpty := false
	for _, a := range as {
		if s.attr(a) {
			nonEmpty = true
		}
	}
	return nonEmpty
}

// attr appends a, following slog's rules: values resolved, ReplaceAttr
// applied to non-groups, empty attrs and empty groups elided, groups with
// an empty key inlined. It reports whether a was not empty.
func (s *encState) attr(a slog.Attr) bool {
	if s.h.opts.ReplaceAttr == nil && a.Key != "" {
		// The common case, a named value of a built-in kind: one look at
		// the kind instead of the general path's several.
		switch a.Value.Kind() {
		case slog.KindString:
			s.key(a.Key)
			s.str(a.Value.String())
			return true
		case slog.KindInt64:
			s.key(a.Key)
			s.buf = strconv.AppendInt(s.buf, a.Value.Int64(), 10)
			return true
		case slog.KindFloat64:
			s.key(a.Key)
			s.float(a.Value.Float64())
			return true
		case slog.KindBool:
			s.key(a.Key)
			s.buf = strconv.AppendBool(s.buf, a.Value.Bool())
			return true
		}
	}
	a.Value = resolve(a.Value)
	if rep := s.h.opts.ReplaceAttr; rep != nil && a.Value.Kind() != slog.KindGroup {
		var gs []string
		if !s.builtin {
			gs = s.groups
		}
		a = rep(gs, a)
		a.Value = resolve(a.Value)
	}
	if a.Key == "" && a.Value.Kind() == slog.KindAny && a.Value.Any() == nil {
		return false
	}
	if a.Value.Kind() == slog.KindAny {
		if src, ok := a.Value.Any().(*slog.Source); ok {
			a.Value = sourceGroup(src)
		}
	}
	if a.Value.Kind() != slog.KindGroup {
		s.key(a.Key)
		s.value(a.Value)
		return true
	}
	as := a.Value.Group()
	if len(as) == 0 {
		return true // as slog: counts, writes nothing
	}
	pos, sep := len(s.buf), s.sep
	if a.Key != "" {
		s.openGroup(a.Key)
	}
	if !s.attrs(as) {
		s.buf, s.sep = s.buf[:pos], sep
		if a.Key != "" && s.h.opts.ReplaceAttr != nil {
			s.groups = s.groups[:len(s.groups)-1]
		}
		return false
	}
	if a.Key != "" {
		s.closeGroup()
	}
	return true
}

// resolve is v.Resolve() for a LogValuer and v itself otherwise: Resolve
// sets up a deferred recover on every call, about 3% of the CPU of slog +
// snail in a profile (6 attributes a record).
func resolve(v slog.Value) slog.Value {
	if v.Kind() == slog.KindLogValuer {
		return v.Resolve()
	}
	return v
}

func sourceGroup(src *slog.Source) slog.Value {
	var as []slog.Attr
	if src.Function != "" {
		as = append(as, slog.String("function", src.Function))
	}
	if src.File != "" {
		as = append(as, slog.String("file", src.File))
	}
	if src.Line != 0 {
		as = append(as, slog.Int("line", src.Line))
	}
	return slog.GroupValue(as...)
}

func (s *encState) value(v slog.Value) {
	switch v.Kind() {
	case slog.KindString:
		s.str(v.String())
	case slog.KindInt64:
		s.buf = strconv.AppendInt(s.buf, v.Int64(), 10)
	case slog.KindUint64:
		s.buf = strconv.AppendUint(s.buf, v.Uint64(), 10)
	case slog.KindFloat64:
		s.float(v.Float64())
	case slog.KindBool:
		s.buf = strconv.AppendBool(s.buf, v.Bool())
	case slog.KindDuration:
		s.buf = strconv.AppendInt(s.buf, int64(v.Duration()), 10)
	case slog.KindTime:
		s.time(v.Time())
	case slog.KindAny:
		s.any(v.Any())
	}
}

// any appends a value of another type: an error's message, or what
// encoding/json makes of it. A method of the value that panics (a
// MarshalJSON, an Error on a nil pointer) does not take the caller down:
// as slog's JSONHandler does, the value is written as "<nil>" when it is a
// nil pointer, else as "!PANIC: " and the panic's value.
func (s *encState) any(a any) {
	start := len(s.buf)
	defer func() {
		if r := recover(); r != nil {
			s.buf = s.buf[:start]
			if v := reflect.ValueOf(a); v.Kind() == reflect.Pointer && v.IsNil() {
				s.str("<nil>")
				return
			}
			s.str(fmt.Sprintf("!PANIC: %v", r))
		}
	}()
	if l, ok := a.(slog.Level); ok {
		s.level(l)
		return
	}
	_, jm := a.(json.Marshaler)
	if err, ok := a.(error); ok && !jm {
		s.str(err.Error())
		return
	}
	s.marshal(a)
}

// marshal appends v as encoding/json does without HTML escaping, as slog's
// JSONHandler does for values of other types.
func (s *encState) marshal(v any) {
	var bb bytes.Buffer
	enc := json.NewEncoder(&bb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		s.str(fmt.Sprintf("!ERROR:%v", err))
		return
	}
	s.buf = append(s.buf, bytes.TrimSuffix(bb.Bytes(), []byte{'\n'})...)
}

// float appends f as encoding/json does (which is what slog's JSONHandler
// calls for floats): 'f' format, or 'e' for very small and very large
// magnitudes, with a two-digit exponent trimmed to one.
func (s *encState) float(f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		s.str(fmt.Sprintf("!ERROR:json: unsupported value: %s", strconv.FormatFloat(f, 'g', -1, 64)))
		return
	}
	if b, ok := appendShortFloat(s.buf, f); ok {
		s.buf = b
		return
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(s.buf)
	s.buf = strconv.AppendFloat(s.buf, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(s.buf) - start
		if n >= 4 && s.buf[len(s.buf)-4] == 'e' && s.buf[len(s.buf)-3] == '-' && s.buf[len(s.buf)-2] == '0' {
			s.buf[len(s.buf)-2] = s.buf[len(s.buf)-1]
			s.buf = s.buf[:len(s.buf)-1]
		}
	}
}

// appendShortFloat appends f as strconv's shortest 'f' form would, when f
// is a decimal of at most three fractional digits well inside float64's
// precision (latencies, prices, ratios), without strconv's general search
// for the shortest digits; ok is false otherwise. Below 2^50 (scaled), an
// ulp of f is under a quarter of 10^-k, so n/10^k, the first that converts
// back to f exactly, is the only decimal of k or fewer fractional digits
// that does: the shortest. Zero is left to strconv (it keeps -0's sign).
func appendShortFloat(b []byte, f float64) ([]byte, bool) {
	const limit = 1 << 50
	if f == 0 {
		return b, false
	}
	p := 1.0
	for k := 0; k <= 3; k++ {
		v := f * p
		if v <= -limit || v >= limit {
			return b, false
		}
		if n := int64(v); float64(n) == v && float64(n)/p == f {
			return appendFixed(b, n, k), true
		}
		p *= 10
	}
	return b, false
}

// appendFixed appends n/10^k in decimal, with no trailing zeros after the
// point and no point for a whole number.
func appendFixed(b []byte, n int64, k int) []byte {
	if n < 0 {
		b = append(b, '-')
		n = -n
	}
	for k > 0 && n%10 == 0 {
		n /= 10
		k--
	}
	pow := [...]int64{1, 10, 100, 1000}[k]
	b = strconv.AppendInt(b, n/pow, 10)
	if k > 0 {
		b = append(b, '.')
		for d, frac := pow/10, n%pow; d > 0; d /= 10 {
			b = append(b, byte('0'+frac/d%10))
		}
	}
	return b
}

// time appends t as slog's JSONHandler does (time.RFC3339Nano). The date,
// clock and zone of the last second it formatted are kept, since they are
// the same for every record of that second: only the fraction is new.
func (s *encState) time(t time.Time) {
	sec, loc := t.Unix(), t.Location()
	if sec != s.tSec || loc != s.tLoc || s.tZLen == 0 {
		if y := t.Year(); y < 0 || y >= 10000 {
			// RFC 3339 years have 4 digits. slog.JSONHandler writes its
			// error and then the time anyway, "!ERROR:...""-15452-...Z"
			// (Go 1.26), which is not JSON; this writes one string.
			s.buf = append(s.buf, `"!ERROR:time.Time year outside of range [0,9999]: `...)
			s.buf = t.AppendFormat(s.buf, time.RFC3339Nano)
			s.buf = append(s.buf, '"')
			return
		}
		var tmp [32]byte
		whole := t.Add(-time.Duration(t.Nanosecond())).AppendFormat(tmp[:0], time.RFC3339)
		copy(s.tClock[:], whole)
		s.tZLen = copy(s.tZone[:], whole[len(s.tClock):])
		s.tSec, s.tLoc = sec, loc
	}
	b := append(s.buf, '"')
	b = append(b, s.tClock[:]...)
	if ns := t.Nanosecond(); ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i > 1; i -= 2 { // two digits a division
			q := ns / 100
			r := ns - q*100
			frac[i-1], frac[i] = digitPairs[2*r], digitPairs[2*r+1]
			ns = q
		}
		frac[1] = byte('0' + ns)
		n := len(frac)
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	b = append(b, s.tZone[:s.tZLen]...)
	s.buf = append(b, '"')
}

// level appends l quoted, spelled as slog.Level.String spells it ("INFO",
// "WARN+2"), without fmt.
func (s *encState) level(l slog.Level) {
	base, off := "ERROR", l-slog.LevelError
	switch {
	case l < slog.LevelInfo:
		base, off = "DEBUG", l-slog.LevelDebug
	case l < slog.LevelWarn:
		base, off = "INFO", l-slog.LevelInfo
	case l < slog.LevelError:
		base, off = "WARN", l-slog.LevelWarn
	}
	s.buf = append(s.buf, '"')
	s.buf = append(s.buf, base...)
	if off != 0 {
		if off > 0 {
			s.buf = append(s.buf, '+')
		}
		s.buf = strconv.AppendInt(s.buf, int64(off), 10)
	}
	s.buf = append(s.buf, '"')
}

const hexDigits = "0123456789abcdef"

// digitPairs holds "00" to "99", for writing two decimal digits at once.
const digitPairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839" +
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

// jsonSafe[c] reports whether ASCII byte c stands for itself in a JSON
// string (as encoding/json's safeSet: no HTML escaping).
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str appends a JSON string the way slog's JSONHandler escapes it: quotes,
// backslashes and control characters escaped, invalid UTF-8 as \ufffd,
// U+2028 and U+2029 escaped, HTML characters left alone. Runs of plain
// ASCII are found 8 or 4 bytes at a time and copied whole: keys and values
// are mostly that, and this loop was the handler's largest single cost.
func (s *encState) str(str string) {
	if plain(str) {
		b := append(s.buf, '"')
		b = append(b, str...)
		s.buf = append(b, '"')
		return
	}
	s.escape(str)
}

// plain reports whether every byte of str stands for itself in a JSON
// string, testing 8 (or 4) bytes at a time; the last word overlaps the one
// before it rather than falling back to single bytes.
func plain(str string) bool {
	n := len(str)
	switch {
	case n >= 8:
		for i := 0; i < n-8; i += 8 {
			if !plain8(load8(str, i)) {
				return false
			}
		}
		return plain8(load8(str, n-8))
	case n >= 4:
		return plain4(load4(str, 0)) && plain4(load4(str, n-4))
	}
	for i := range n {
		if c := str[i]; c >= utf8.RuneSelf || !jsonSafe[c] {
			return false
		}
	}
	return true
}

// escape appends str quoted and escaped: str's slow path, for strings with
// at least one byte that does not stand for itself.
func (s *encState) escape(str string) {
	b := append(s.buf, '"')
	start := 0
	for i := 0; i < len(str); {
		for i+8 <= len(str) && plain8(load8(str, i)) {
			i += 8
		}
		if i+4 <= len(str) && plain4(load4(str, i)) {
			i += 4
		}
		if i >= len(str) {
			break
		}
		c := str[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, str[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(str[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, str[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, str[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, str[start:]...)
	s.buf = append(b, '"')
}

// Byte-parallel tests on 8 (or 4) bytes in one word. A byte is plain when
// it is ASCII, not a control character, and neither '"' nor '\\': exactly
// the bytes jsonSafe admits. (x-ones)&^x flags a word with a zero byte (x
// being the word xor the quote, or the backslash), and (w-ones*0x20)&^w
// one with a byte below 0x20, in the bytes' high bits; neither misses one,
// and str rechecks a flagged word byte by byte, so a false alarm (a borrow
// into a higher byte) only costs time.
const (
	ones8  = 0x0101010101010101
	highs8 = 0x8080808080808080
)

func plain8(w uint64) bool {
	q, bs := w^(ones8*'"'), w^(ones8*'\\')
	ctl := (w - ones8*0x20) &^ w
	return (ctl|(q-ones8)&^q|(bs-ones8)&^bs|w)&highs8 == 0
}

func plain4(w uint32) bool {
	const ones4, highs4 = 0x01010101, 0x80808080
	q, bs := w^(ones4*'"'), w^(ones4*'\\')
	ctl := (w - ones4*0x20) &^ w
	return (ctl|(q-ones4)&^q|(bs-ones4)&^bs|w)&highs4 == 0
}

// load8 and load4 read 8 or 4 bytes of str from i, little-endian (the
// compiler makes each one load).
func load8(str string, i int) uint64 {
	b := str[i : i+8] // one bounds check
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func load4(str string, i int) uint32 {
	b := str[i : i+4]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
