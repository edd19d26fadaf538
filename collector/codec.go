package collector

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/netlog"
)

// request is one batch read from a connection, or (goodbye set) the
// reason the connection ends, to be sent before it closes.
type request struct {
	stream, seq uint64
	entries     int
	payload     []byte
	hold        int64
	frame, raw  *[]byte
	goodbye     *ackResp
}

// ackResp is an ack (or, goodbye set, a Goodbye) to send.
type ackResp struct {
	stream, first, last uint64
	status              encoder.Status
	reason              string
	goodbye             bool
	maxFrame, maxRaw    uint32 // a goodbye that refuses batch first: the limits it broke
}

// codec is the server half of the log protocol, for netlog.Server.
type codec struct{ c *Collector }

var bufPool sync.Pool

func getBuf(n int) *[]byte {
	bp, _ := bufPool.Get().(*[]byte)
	if bp == nil || cap(*bp) < n {
		b := make([]byte, n)
		return &b
	}
	*bp = (*bp)[:n]
	return bp
}

func putBuf(bp *[]byte) {
	if bp != nil && cap(*bp) <= 32<<20 {
		bufPool.Put(bp)
	}
}

// Refuse tells a client turned away before the handshake why, with a
// goodbye its handshake reads as a refusal: a collector at its connection
// limit (unavailable: the client tries again later), or one that takes TLS
// only, spoken to without it (unauthorized: the client must change).
func (k *codec) Refuse(conn net.Conn, reason error) {
	st, text := encoder.StatusUnavailable, reason.Error()
	if errors.Is(reason, netlog.ErrTLSRequired) {
		st, text = encoder.StatusUnauthorized, "this collector takes TLS connections only (snail send --tls-ca, netlog.WithTLS)"
	}
	_, _ = conn.Write(netlog.AppendGoodbye(nil, st, text))
}

var _ netlog.Refuser = (*codec)(nil)

// Accept reads the Hello, checks version, token and stream name, and
// answers with a Welcome that tells the client the highest sequence number
// written for its stream id.
func (k *codec) Accept(conn net.Conn, br *bufio.Reader) (netlog.ServerConn[*request, ackResp], error) {
	c := k.c
	refuse := func(stream uint64, st encoder.Status, err error) error {
		_, _ = conn.Write(netlog.AppendWelcome(nil, netlog.Welcome{Status: st, Reason: err.Error(), Stream: stream}))
		return err
	}
	hdr, err := peekHello(br)
	if errors.Is(err, errNotSnail) {
		return nil, k.turnAway(conn, hdr, refuse)
	}
	if err != nil {
		return nil, err
	}
	h, err := c.dec.ParseHeader(hdr)
	if err != nil {
		return nil, refuse(0, statusOf(err), err)
	}
	if h.Kind != netlog.KindHello || h.PayloadLen > 2048 {
		return nil, refuse(h.Stream, encoder.StatusBadFrame, fmt.Errorf("%w: expected a hello, got %v of %d bytes", netlog.ErrProtocol, h.Kind, h.PayloadLen))
	}
	buf := make([]byte, encoder.HeaderSize+int(h.PayloadLen))
	if _, err := io.ReadFull(br, buf); err != nil {
		return nil, err
	}
	f, _, err := c.dec.Decode(buf, nil)
	if err != nil {
		return nil, refuse(h.Stream, statusOf(err), err)
	}
	hello, err := netlog.ParseHello(f)
	if err != nil {
		return nil, refuse(h.Stream, encoder.StatusBadFrame, err)
	}
	if hello.Version != netlog.ProtocolVersion {
		return nil, refuse(h.Stream, encoder.StatusBadFrame, fmt.Errorf("%w: %d, this collector speaks %d", ErrProtocolVersion, hello.Version, netlog.ProtocolVersion))
	}
	if !c.authorized(hello.Token) {
		return nil, refuse(h.Stream, encoder.StatusUnauthorized, ErrUnauthorized)
	}
	if err := checkStreamName(hello.Name); err != nil {
		return nil, refuse(h.Stream, encoder.StatusBadStream, err)
	}
	out, err := c.output(hello.Name)
	if err != nil {
		return nil, refuse(h.Stream, encoder.StatusUnavailable, err)
	}
	if msg := out.failing.Load(); msg != nil {
		// Its writes fail (a full disk) and hold its lock: say so now,
		// rather than hold the handshake until they succeed, so that a
		// client with other collectors to try goes to them.
		c.release(out)
		return nil, refuse(h.Stream, encoder.StatusUnavailable, fmt.Errorf("%w: stream %s cannot be written now: %s", ErrUnavailable, hello.Name, *msg))
	}
	welcome := netlog.Welcome{Status: encoder.StatusOK, Stream: h.Stream, Written: out.seenOf(h.Stream),
		MaxFrame: uint32(c.cfg.MaxFrameSize), MaxRaw: uint32(c.cfg.MaxDecompressedSize), Idle: c.cfg.IdleTimeout}
	if _, err := conn.Write(netlog.AppendWelcome(nil, welcome)); err != nil {
		c.release(out)
		return nil, err
	}
	c.metrics.conns.Inc()
	c.metrics.connsTotal.Inc()
	return &sconn{c: c, br: br, stream: h.Stream, out: out}, nil
}

// errNotSnail is peekHello's: the first bytes are not a frame's magic.
var errNotSnail = errors.New("not a snail client")

// peekHello returns the header of a new connection's first frame, unread.
// It checks the magic as the bytes arrive, so that a client of another
// protocol (HTTP, TLS to a collector without it, noise) is turned away as
// soon as its first bytes say so, not when the handshake timeout ends a
// wait for 40 bytes that may never come. On errNotSnail it returns the
// bytes that arrived.
func peekHello(br *bufio.Reader) ([]byte, error) {
	magic := encoder.Magic
	want := 1
	for {
		p, err := br.Peek(want)
		if len(p) < br.Buffered() && len(p) < encoder.HeaderSize {
			p, _ = br.Peek(min(br.Buffered(), encoder.HeaderSize)) // all that came, at no wait
		}
		if n := min(len(p), len(magic)); string(p[:n]) != magic[:n] {
			if err == nil && mayBeHTTP(p) {
				want = len(p) + 1 // tell an HTTP client, once its method is in
				continue
			}
			p, _ = br.Peek(br.Buffered())
			return p, errNotSnail
		}
		switch {
		case len(p) == encoder.HeaderSize:
			return p, nil
		case len(p) == 0 && errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%w: closed before hello", netlog.ErrProtocol)
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%w: closed after %d bytes of a hello", netlog.ErrProtocol, len(p))
		case err != nil:
			return nil, err
		case len(p) >= len(magic):
			want = encoder.HeaderSize // the rest is checked whole
		default:
			want = len(p) + 1
		}
	}
}

// turnAway refuses a client whose first bytes p are not snail's, in terms
// it may understand: an HTTP client (a scraper pointed at this port rather
// than the metrics listener, a browser) gets an HTTP answer, a client with
// TLS on is told this collector does not speak it, and anything else gets a
// refusing Welcome.
func (k *codec) turnAway(conn net.Conn, p []byte, refuse func(uint64, encoder.Status, error) error) error {
	if p[0] == 0x16 { // a TLS handshake record
		return refuse(0, encoder.StatusBadFrame, fmt.Errorf("%w: the client speaks TLS, and this collector does not (--tls-cert)", netlog.ErrTLSHandshake))
	}
	if line, ok := httpRequestLine(p); ok {
		_, _ = conn.Write([]byte(httpRefusal))
		return fmt.Errorf("%w: an HTTP request (%q) on the log port", netlog.ErrProtocol, line)
	}
	return refuse(0, encoder.StatusBadFrame, fmt.Errorf("%w: % x, not a snail client", encoder.ErrBadMagic, p[:min(len(p), 4)]))
}

// httpRefusal answers an HTTP request made to the log port.
var httpRefusal = "HTTP/1.1 400 Bad Request\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(httpRefusalBody)) + "\r\n" +
	"\r\n" + httpRefusalBody

const httpRefusalBody = "This port speaks snail's log protocol, not HTTP. /metrics, /healthz and\n" +
	"/readyz are on the collector's metrics listener (snail collector --metrics).\n"

var httpMethods = []string{"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE ", "PRI * "}

// httpRequestLine reports whether p begins like an HTTP/1 request, and
// returns its request line (cut short) for the log.
func httpRequestLine(p []byte) (string, bool) {
	for _, m := range httpMethods {
		if bytes.HasPrefix(p, []byte(m)) {
			line, _, _ := bytes.Cut(p[:min(len(p), 80)], []byte("\r\n"))
			return string(line), true
		}
	}
	return "", false
}

// mayBeHTTP reports whether p is the start of an HTTP method, not yet
// whole.
func mayBeHTTP(p []byte) bool {
	for _, m := range httpMethods {
		if len(p) < len(m) && strings.HasPrefix(m, string(p)) {
			return true
		}
	}
	return false
}

// statusOf maps a decoding error to the status a client is told.
func statusOf(err error) encoder.Status {
	if errors.Is(err, encoder.ErrFrameTooLarge) || errors.Is(err, encoder.ErrDecompressedTooLarge) {
		return encoder.StatusTooLarge
	}
	return encoder.StatusBadFrame
}

// sconn is one client connection after its handshake.
type sconn struct {
	c      *Collector
	br     *bufio.Reader
	stream uint64
	out    *output
	err    error // set when the connection must end after its goodbye
}

func (s *sconn) fail(st encoder.Status, err error) (*request, error) {
	s.err = err
	return &request{goodbye: &ackResp{goodbye: true, status: st, reason: err.Error()}}, nil
}

// refuse ends the connection with a goodbye that names batch h as one the
// collector can never take (netlog.AppendRefusal): too large by its header
// (maxFrame and maxRaw the limits), or intact but not decodable (both 0).
// Its client gives that batch up, where it would otherwise send it again
// on every new connection.
func (s *sconn) refuse(h encoder.Header, err error, maxFrame, maxRaw uint32) (*request, error) {
	g, rerr := s.fail(statusOf(err), err)
	g.goodbye.stream, g.goodbye.first = h.Stream, h.Seq
	g.goodbye.maxFrame, g.goodbye.maxRaw = maxFrame, maxRaw
	return g, rerr
}

// ReadRequest reads the next batch frame, or a ping, reported as
// netlog.ErrNoRequest. A frame that fails a check ends the connection,
// with a Goodbye that says why.
func (s *sconn) ReadRequest() (*request, error) {
	if s.err != nil {
		return nil, s.err
	}
	c := s.c
	hdr, err := s.br.Peek(encoder.HeaderSize)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: connection closed inside a frame header", encoder.ErrTruncated)
		}
		return nil, err
	}
	h, err := c.dec.ParseHeader(hdr)
	if err != nil {
		if h.Kind == encoder.KindBatch && h.Stream == s.stream &&
			(errors.Is(err, encoder.ErrFrameTooLarge) || errors.Is(err, encoder.ErrDecompressedTooLarge)) {
			// Over the limits by its header alone: the client checks
			// its own copy against them before it gives the batch up.
			return s.refuse(h, err, uint32(c.cfg.MaxFrameSize), uint32(c.cfg.MaxDecompressedSize))
		}
		return s.fail(statusOf(err), err)
	}
	switch h.Kind {
	case netlog.KindPing:
		if h.PayloadLen != 0 {
			return s.fail(encoder.StatusBadFrame, fmt.Errorf("%w: ping with a payload", netlog.ErrProtocol))
		}
		if _, _, err := c.dec.Decode(hdr, nil); err != nil {
			return s.fail(statusOf(err), err)
		}
		_, _ = s.br.Discard(encoder.HeaderSize)
		return nil, netlog.ErrNoRequest // idle again: the next frame may take its time
	case encoder.KindBatch:
	default:
		return s.fail(encoder.StatusBadFrame, fmt.Errorf("%w: unexpected %v frame", netlog.ErrProtocol, h.Kind))
	}
	if h.Stream != s.stream {
		return s.fail(encoder.StatusBadFrame, fmt.Errorf("%w: %x on the connection of %x", ErrWrongStream, h.Stream, s.stream))
	}
	if h.Seq == 0 {
		// Sequence numbers start at 1; a 0 would be taken for a
		// duplicate, acked and never written.
		return s.fail(encoder.StatusBadFrame, fmt.Errorf("%w: batch with sequence number 0", netlog.ErrProtocol))
	}
	n := encoder.HeaderSize + int(h.PayloadLen)
	var rawLen int64
	if h.Compression != encoder.None {
		rawLen = int64(h.RawLen)
	}
	r := &request{stream: h.Stream, seq: h.Seq, entries: int(h.Entries)}
	if err := s.readFrame(r, n, rawLen); err != nil {
		s.release(r)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: connection closed inside a frame", encoder.ErrTruncated)
		}
		if errors.Is(err, errNoMemory) {
			return s.fail(encoder.StatusUnavailable, err)
		}
		return nil, err
	}
	var raw []byte
	if h.Compression != encoder.None {
		r.raw = getBuf(int(h.RawLen))
		raw = (*r.raw)[:0]
	}
	f, _, err := c.dec.Decode(*r.frame, raw)
	if err != nil {
		s.release(r)
		if !errors.Is(err, encoder.ErrChecksum) {
			// The CRC held, so the frame arrived as it was sent: it
			// will fail the same way every time (a payload that does
			// not decompress to what it announces).
			return s.refuse(h, err, 0, 0)
		}
		return s.fail(statusOf(err), err) // damaged on the way: sent again, it may pass
	}
	r.payload = f.Payload
	c.metrics.frames.Inc()
	c.metrics.bytesIn.Add(float64(n))
	return r, nil
}

func (s *sconn) release(r *request) {
	putBuf(r.frame)
	putBuf(r.raw)
	r.frame, r.raw, r.payload = nil, nil, nil
	s.c.mem.release(r.hold)
	r.hold = 0
}

// errNoMemory ends a connection that waited too long for frame memory
// with part of a frame read: see readFrame.
var errNoMemory = errors.New("collector: out of frame memory; try again")

// Frame memory is claimed whole when a frame's header arrives while the
// claim leaves at least half of MaxMemory free: the frame is read at once
// into one buffer. Past that, memory is claimed as the frame's bytes
// arrive, in steps that start at firstStep and double, each taken once a
// byte of it is here, and the decompressed size once the frame is whole.
// Clients that announce large frames and then send nothing (or one byte a
// second) so hold half of MaxMemory at most, whatever their number, and no
// more than about twice what they sent of the rest: they cannot stall the
// others until the frame timeout. A connection that waits for a step
// longer than stepWait while it holds part of a frame ends (errNoMemory;
// its client sends the frame again), so that frames that each hold part
// of the memory do not wait for each other for good.
const (
	firstStep = 16 << 10
	stepWait  = 5 * time.Second
)

// readFrame reads the n bytes of a frame whose header is in s.br into
// r.frame, claiming r.hold bytes of frame memory: n, and rawLen for its
// decompression.
func (s *sconn) readFrame(r *request, n int, rawLen int64) error {
	mem := s.c.mem
	if mem.acquireIfPlenty(int64(n) + rawLen) {
		r.hold = int64(n) + rawLen
		r.frame = getBuf(n)
		_, err := io.ReadFull(s.br, *r.frame)
		return err
	}
	got := 0
	for got < n {
		if int64(got) == r.hold {
			// Claim the next step once a byte of it is here.
			if _, err := s.br.Peek(1); err != nil {
				return err
			}
			step := min(n-got, max(firstStep, got))
			if err := s.claim(r, int64(step)); err != nil {
				return err
			}
			next := getBuf(got + step)
			if r.frame != nil {
				copy(*next, (*r.frame)[:got])
				putBuf(r.frame)
			}
			r.frame = next
		}
		k, err := s.br.Read((*r.frame)[got:r.hold])
		got += k
		if err != nil {
			return err
		}
	}
	return s.claim(r, rawLen)
}

// claim adds n bytes to r's frame memory, waiting for them, for at most
// stepWait while r holds some already.
func (s *sconn) claim(r *request, n int64) error {
	if n == 0 {
		return nil
	}
	wait := time.Duration(0)
	if r.hold > 0 {
		wait = stepWait
	}
	switch s.c.mem.acquireWithin(n, wait) {
	case claimed:
		r.hold += n
		return nil
	case stopped:
		return netlog.ErrServerClosed
	default:
		return fmt.Errorf("%w: %d bytes of a frame held, %d more not free after %v", errNoMemory, r.hold, n, wait)
	}
}

// Serve writes the batch (unless it is a duplicate) and acks it.
func (s *sconn) Serve(r *request, reply func(ackResp)) {
	if r.goodbye != nil {
		reply(*r.goodbye)
		return
	}
	dup, n, err := s.c.write(s.out, r)
	s.release(r)
	a := ackResp{stream: r.stream, first: r.seq, last: r.seq}
	switch {
	case err != nil:
		a.status, a.reason = encoder.StatusUnavailable, err.Error()
		reply(a)
		return
	case dup:
		s.c.metrics.duplicates.Inc()
	}
	// With AckFsync the ack waits for the output's next group fsync (a
	// duplicate too: its first copy may not be synced yet).
	s.out.ack(a, n, reply)
}

// AppendResponses writes acks, merging consecutive ok acks of the stream
// into one range.
func (s *sconn) AppendResponses(dst []byte, resps []ackResp) []byte {
	var p ackResp
	have := false
	flush := func() {
		if have {
			dst = encoder.AppendAck(dst, p.stream, p.first, p.last, p.status, p.reason)
			s.c.metrics.acks.Inc()
			have = false
		}
	}
	for _, r := range resps {
		switch {
		case r.goodbye:
			flush()
			dst = netlog.AppendRefusal(dst, r.stream, r.first, r.maxFrame, r.maxRaw, r.status, r.reason)
		case have && r.status == encoder.StatusOK && p.status == encoder.StatusOK && r.stream == p.stream && r.first == p.last+1:
			p.last = r.last
		default:
			flush()
			p, have = r, true
		}
	}
	flush()
	return dst
}

// AppendFarewell makes a connection a netlog.Farewell: on Shutdown, after
// its last ack, its client is told the collector is stopping rather than
// finding the connection closed.
func (s *sconn) AppendFarewell(dst []byte) []byte {
	return netlog.AppendGoodbye(dst, encoder.StatusShuttingDown, "")
}

var _ netlog.Farewell = (*sconn)(nil)

func (s *sconn) Close(cause error) {
	s.c.metrics.conns.Dec()
	s.c.release(s.out)
}

// budget bounds the bytes of frames held at once across connections.
type budget struct {
	mu      sync.Mutex
	cond    *sync.Cond
	size    int64
	free    int64
	aborted bool
}

func newBudget(n int64) *budget {
	b := &budget{size: n, free: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// acquireIfPlenty takes n bytes if at least half of the budget stays free
// after them, and reports whether it did.
func (b *budget) acquireIfPlenty(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.aborted || b.free-n < b.size/2 {
		return false
	}
	b.free -= n
	return true
}

type claimResult int

const (
	claimed claimResult = iota
	stopped             // the collector stops
	timedOut
)

// acquireWithin waits until n bytes are free and takes them, for at most
// wait if wait is not 0.
func (b *budget) acquireWithin(n int64, wait time.Duration) claimResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	expired := false
	if wait > 0 && b.free < n && !b.aborted {
		t := time.AfterFunc(wait, func() {
			b.mu.Lock()
			expired = true
			b.cond.Broadcast()
			b.mu.Unlock()
		})
		defer t.Stop()
	}
	for b.free < n && !b.aborted && !expired {
		b.cond.Wait()
	}
	switch {
	case b.free >= n && !b.aborted:
		b.free -= n
		return claimed
	case b.aborted:
		return stopped
	default:
		return timedOut
	}
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.free += n
	b.cond.Broadcast()
	b.mu.Unlock()
}

// available returns the bytes free now.
func (b *budget) available() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.free
}

func (b *budget) abort() {
	b.mu.Lock()
	b.aborted = true
	b.cond.Broadcast()
	b.mu.Unlock()
}
