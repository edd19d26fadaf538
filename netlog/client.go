package netlog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/snail-log/snail/batcher"
	"github.com/snail-log/snail/internal/goid"
)

// ClientCodec turns a Client's requests into bytes and bytes into responses.
// A Client calls it from one goroutine at a time, except NewResponseReader's
// reader, which runs on a goroutine of its own.
type ClientCodec[Req, Resp any] interface {
	// Handshake runs on every new connection before any request is sent.
	// The connection's deadline is set to the handshake timeout.
	Handshake(conn net.Conn) error
	// AppendRequest appends the frame of request id to dst. A non-nil
	// payload is sent right after the appended bytes without being copied
	// (for a batch already in memory), in the same vectored write.
	AppendRequest(dst []byte, id uint64, req Req) (out, payload []byte, err error)
	// AppendPing appends a keep-alive frame the server ignores.
	AppendPing(dst []byte) []byte
	// NewResponseReader returns the reader of responses on a connection.
	NewResponseReader(r io.Reader) ResponseReader[Resp]
}

// A KeepAliver is a ClientCodec whose handshake can learn that the server
// closes idle connections sooner than the client's keep-alive
// (WithKeepAlive) expects. After each handshake the client pings at least
// every KeepAlive(), if that is shorter; 0 leaves the keep-alive as it is.
type KeepAliver interface {
	KeepAlive() time.Duration
}

// A Finisher is a ClientCodec whose peer may close a connection on purpose
// right after an answer that says why (a refusal): Final reports whether
// resp is such an answer. The end of that connection (the peer's close,
// or a reset) is then not reported as a lost connection, which would read
// as a fault after the answer already said what happened; the client
// connects again as after any loss.
type Finisher[Resp any] interface {
	Final(resp Resp) bool
}

// ResponseReader reads the responses on one connection.
type ResponseReader[Resp any] interface {
	// ReadResponse returns the next response and the range of request ids
	// it answers, first to last inclusive. An error ends the connection: the
	// unanswered requests are sent again on the next one.
	ReadResponse() (first, last uint64, resp Resp, err error)
}

// call is one request on its way: queued, sent, or waiting for its answer.
type call[Req, Resp any] struct {
	req      Req
	size     int64
	id       uint64
	done     func(Resp, error)
	answered bool // claimed by an answer (or an error)
	finished bool // its done callback has returned
	sent     bool // written on some connection at least once
}

// Client is the client half of the request-response core. See the package
// documentation for what it does; NewClient for how to make one.
type Client[Req, Resp any] struct {
	codec ClientCodec[Req, Resp]
	cfg   clientConfig
	// ownRep: the Client made cfg.rep, and stops it at Close (a Stream
	// makes its own, which it shares with its Client).
	ownRep bool
	b      *batcher.Batcher[*call[Req, Resp]]

	// wmu serializes everything that writes to a connection and numbers
	// requests, so that requests leave in id order on every connection.
	wmu sync.Mutex
	// handed is the highest request id written to a connection (under
	// wmu; read by the readers): a peer's answer past it is a protocol
	// error (checkAnswer).
	handed  atomic.Uint64
	scratch []byte
	spans   []span
	iov     net.Buffers
	watch   writeWatch
	nextID  uint64 // last id given out
	lastW   atomic.Int64
	// keepAlive is how long a connection may go without a write before a
	// ping: the configured keep-alive, or less if the last handshake said
	// so (KeepAliver).
	keepAlive atomic.Int64

	mu        sync.Mutex
	cond      *sync.Cond
	pending   []*call[Req, Resp] // sorted by id, oldest first
	inflight  int                // requests sent to Send and not answered
	inBytes   int64
	conn      net.Conn
	connGen   uint64
	finalGen  uint64         // the connection whose peer gave a final answer (Finisher)
	src       *respBuf[Resp] // conn's responses, if Poll can read them
	downSince time.Time      // zero while connected
	ackSeen   uint64         // bytes conn's peer had acknowledged at the last look (stretchAckWait)
	// Per address, in this down time: the last rejection reported, and
	// whether its last attempt ended in a Permanent one.
	rejected  []string
	refusedBy []bool
	lastErr   error
	failing   bool            // down for longer than reportAfter, or refused for good by every address
	outCtx    context.Context // set by WaitOutages: Send and Wait wait through an outage until it ends
	closed    bool            // no more Sends
	stopped   bool            // Close: no more connections
	// inCallback lists the goroutines running response callbacks now,
	// each with the room it may still use: the window room of the
	// requests it answers, which answer releases only once their
	// callbacks have returned (see reserveLocked).
	inCallback []callbackRun

	wakeSup chan struct{}
	ctx     context.Context // ends at Close: stops dials and backoff sleeps
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	stats clientCounters
}

// callbackRun is a goroutine (goid.G) running response callbacks, and the
// requests it may still send without waiting for the window.
type callbackRun struct {
	g      uintptr
	credit int
}

// callbackLocked returns the index in inCallback of the calling goroutine,
// or -1. Called with mu held.
func (c *Client[Req, Resp]) callbackLocked() int {
	if len(c.inCallback) == 0 {
		return -1
	}
	g := goid.G()
	for i, r := range c.inCallback {
		if r.g == g {
			return i
		}
	}
	return -1
}

// inCallbackNow reports whether the caller is running a response callback:
// Wait, Shutdown and Close would wait for it to return.
func (c *Client[Req, Resp]) inCallbackNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.callbackLocked() >= 0
}

type span struct {
	off, end int
	payload  []byte
}

type clientCounters struct {
	sent, resent, answered, reconnects, dialErrors, bytes atomic.Uint64
}

// ClientStats are a Client's counters since NewClient.
type ClientStats struct {
	Sent       uint64 // requests written, first time
	Resent     uint64 // requests written again on a new connection
	Answered   uint64 // requests answered
	Pending    int    // requests sent to Send and not answered yet
	Reconnects uint64 // connections made after the first
	DialErrors uint64 // failed connection attempts (dial, TLS or handshake)
	Bytes      uint64 // bytes written, requests and pings
	Connected  bool
}

// NewClient returns a Client that connects to the configured addresses
// (WithAddrs, required) with codec. It returns at once: the first
// connection is made in the background, and requests wait for it.
func NewClient[Req, Resp any](codec ClientCodec[Req, Resp], opts ...ClientOption) (*Client[Req, Resp], error) {
	if codec == nil {
		return nil, fmt.Errorf("%w: nil codec", ErrInvalidOption)
	}
	cfg, err := newClientConfig(opts)
	if err != nil {
		return nil, err
	}
	return newClient(codec, cfg)
}

// newClient starts a Client on a validated configuration.
func newClient[Req, Resp any](codec ClientCodec[Req, Resp], cfg clientConfig) (*Client[Req, Resp], error) {
	var err error
	c := &Client[Req, Resp]{
		codec:     codec,
		cfg:       cfg,
		wakeSup:   make(chan struct{}, 1),
		downSince: time.Now(),
		rejected:  make([]string, len(cfg.addrs)),
		refusedBy: make([]bool, len(cfg.addrs)),
	}
	if cfg.onError != nil && cfg.rep == nil {
		c.cfg.rep = newReporter(cfg.onError)
		c.ownRep = true
	}
	c.cond = sync.NewCond(&c.mu)
	c.keepAlive.Store(int64(cfg.keepAlive))
	c.ctx, c.cancel = context.WithCancel(context.Background())
	window := cfg.sendWindow
	if cfg.shipEach {
		window = 0 // a timer would only wake the output goroutine for nothing
	}
	c.b, err = batcher.New(c.output,
		batcher.WithBatchSize(cfg.maxFrames),
		batcher.WithBuffers(2),
		batcher.WithWindow(window),
		batcher.WithCohort(false))
	if err != nil {
		c.cancel()
		if c.ownRep {
			c.cfg.rep.close()
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	c.wg.Add(1)
	go c.supervise()
	c.wakeSup <- struct{}{}
	return c, nil
}

// Send queues req, whose size in bytes counts against the window, and
// returns once it is queued; done is called exactly once, from a goroutine
// of the Client, with the response or the error that ends the request
// (the codec's rejection, ErrClosed). While the window is full Send waits
// for space, for ctx, or returns ErrUnavailable once the peer has been
// unreachable for longer than the report delay (or every address has
// refused the client for good: Permanent).
//
// done runs on the goroutine that reads the responses, which it holds up
// while it runs: it should be short. It may call Send (a follow-up
// request): with the window full, it sends as many requests as it answers
// without waiting (their room is its to use), and gets ErrReentry past
// that instead of waiting for itself. Wait, Shutdown and Close from done
// return ErrReentry. (Without goroutine identities, on architectures other
// than amd64 and arm64, such calls wait for good.)
func (c *Client[Req, Resp]) Send(ctx context.Context, req Req, size int, done func(Resp, error)) error {
	return c.send(ctx, &call[Req, Resp]{req: req, size: int64(size), done: done}, false)
}

// SendID is Send with an id chosen by the caller instead of the next one:
// for a protocol whose ids must survive a restart of the client (the log
// Stream's sequence numbers, with a spool). Ids must increase from call to
// call, gaps allowed, and a Client must not mix Send and SendID.
func (c *Client[Req, Resp]) SendID(ctx context.Context, id uint64, req Req, size int, done func(Resp, error)) error {
	if id == 0 {
		return fmt.Errorf("%w: id 0", ErrInvalidOption)
	}
	return c.send(ctx, &call[Req, Resp]{req: req, size: int64(size), done: done, id: id}, false)
}

// send queues cl. With poll, a full window makes it read the responses that
// have arrived (Poll) before it waits: its caller holds nothing the
// callbacks take.
func (c *Client[Req, Resp]) send(ctx context.Context, cl *call[Req, Resp], poll bool) error {
	c.mu.Lock()
	if err := c.reserveLocked(ctx, cl.size, poll); err != nil {
		c.mu.Unlock()
		return err
	}
	c.mu.Unlock()
	if err := c.b.Add(cl); err != nil {
		c.mu.Lock()
		c.releaseLocked(1, cl.size)
		c.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return nil
}

// sendNow ships what Send queued at once and takes the responses that have
// arrived: for the log Stream, whose requests are whole batches, one at a
// time, that gain nothing from waiting for others. The caller holds nothing
// the callbacks take. The frame leaves from the batcher's output goroutine,
// not from the caller (ShipHere): with one logger, the caller's write()
// held up the logger's processor, and the logger ran 10% slower (A/B, 6
// rounds: 0.71x against 0.79x of zerolog into io.Discard; the same at 64
// and 1024 goroutines).
func (c *Client[Req, Resp]) sendNow() {
	c.b.Ship()
	c.Poll()
}

// testHookAfterPoll, set by tests only, runs in reserveLocked after its
// Poll, with the mutex free.
var testHookAfterPoll func()

// reserveLocked waits for room in the window for one request of size bytes.
func (c *Client[Req, Resp]) reserveLocked(ctx context.Context, size int64, poll bool) error {
	var stopWait func() bool
	defer func() {
		if stopWait != nil {
			stopWait()
		}
	}()
	polled := false // since the last wait
	for {
		if c.closed {
			return ErrClosed
		}
		if c.inflight == 0 || (c.inflight < c.cfg.maxFrames && c.inBytes+size <= c.cfg.maxBytes) {
			c.inflight++
			c.inBytes += size
			return nil
		}
		if i := c.callbackLocked(); i >= 0 {
			// Sent from a response callback: the room it waits for
			// is freed by answers, which its goroutine reads (or
			// releases) only once the callback returns.
			if c.inCallback[i].credit == 0 {
				return fmt.Errorf("%w: Send with the window full, past the room of the requests the callback answers", ErrReentry)
			}
			c.inCallback[i].credit--
			c.inflight++
			c.inBytes += size
			return nil
		}
		if c.failing && (c.outCtx == nil || c.refusedLocked()) {
			return fmt.Errorf("%w: window full: %w", ErrUnavailable, c.lastErr)
		}
		if err := c.outEnded(); err != nil {
			return fmt.Errorf("netlog: window full: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if poll && !polled {
			// Then check everything again before waiting: while the
			// mutex was free, the reader may have answered every
			// request, and its broadcast, which came before this wait,
			// is not heard again (the sink's output, waiting here,
			// waited for good, with an empty window).
			polled = true
			c.mu.Unlock()
			if c.Poll() {
				polled = false // answers came: more may have
			}
			if testHookAfterPoll != nil {
				testHookAfterPoll()
			}
			c.mu.Lock()
			continue
		}
		polled = false
		if stopWait == nil && ctx.Done() != nil {
			stopWait = context.AfterFunc(ctx, func() {
				c.mu.Lock()
				c.cond.Broadcast()
				c.mu.Unlock()
			})
		}
		c.cond.Wait()
	}
}

func (c *Client[Req, Resp]) releaseLocked(n int, size int64) {
	c.inflight -= n
	c.inBytes -= size
	c.cond.Broadcast()
}

// output is the batcher's output: it numbers the requests and writes them
// to the connection, if there is one. Requests written on a connection that
// then breaks, or queued while there is none, are sent by the supervisor
// when it connects again.
func (c *Client[Req, Resp]) output(batch []*call[Req, Resp]) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	for _, cl := range batch {
		if cl.id == 0 {
			c.nextID++
			cl.id = c.nextID
		} else {
			c.nextID = max(c.nextID, cl.id)
		}
		c.pending = append(c.pending, cl)
	}
	conn, gen := c.conn, c.connGen
	c.mu.Unlock()
	if conn == nil {
		return nil
	}
	_, err := c.writeCalls(conn, batch)
	if err != nil {
		c.broken(gen, err)
	}
	return nil
}

// writeCalls encodes calls and writes them in one vectored write (or a few,
// for very many), and reports how many were written. Calls the codec cannot
// encode are answered with its error. Called with wmu held.
func (c *Client[Req, Resp]) writeCalls(conn net.Conn, calls []*call[Req, Resp]) (int, error) {
	c.scratch = c.scratch[:0]
	c.spans = c.spans[:0]
	var failed []*call[Req, Resp]
	var errs []error
	var maxID uint64
	for _, cl := range calls {
		off := len(c.scratch)
		out, payload, err := c.codec.AppendRequest(c.scratch, cl.id, cl.req)
		if err != nil {
			failed = append(failed, cl)
			errs = append(errs, err)
			continue
		}
		c.scratch = out
		c.spans = append(c.spans, span{off: off, end: len(out), payload: payload})
		maxID = max(maxID, cl.id)
	}
	for i, cl := range failed {
		c.answer(cl.id, cl.id, *new(Resp), errs[i])
	}
	if len(c.spans) == 0 {
		return 0, nil
	}
	c.iov = c.iov[:0]
	var total int64
	for _, s := range c.spans {
		c.iov = append(c.iov, c.scratch[s.off:s.end])
		total += int64(s.end - s.off)
		if len(s.payload) > 0 {
			c.iov = append(c.iov, s.payload)
			total += int64(len(s.payload))
		}
	}
	// Before the write: the peer may answer before it returns.
	if maxID > c.handed.Load() {
		c.handed.Store(maxID)
	}
	iov := c.iov // WriteTo consumes the slice header, not the backing array
	n, err := c.writeBuffers(conn, &iov, total)
	c.stats.bytes.Add(uint64(n))
	clear(c.iov) // drop references to payloads
	if err != nil {
		return 0, fmt.Errorf("netlog: write to %s: %w", conn.RemoteAddr(), err)
	}
	if n != total {
		return 0, fmt.Errorf("netlog: short write to %s: %d of %d bytes", conn.RemoteAddr(), n, total)
	}
	for _, cl := range calls {
		if cl.sent {
			c.stats.resent.Add(1)
		} else {
			c.stats.sent.Add(1)
		}
		cl.sent = true
	}
	c.lastW.Store(time.Now().UnixNano())
	c.armReadDeadline(conn)
	return len(c.spans), nil
}

// writeBuffers writes iov whole (consuming it). The write timeout bounds
// the time the peer acknowledges nothing, not the whole write: a resend
// of a full window after a reconnect (16 MiB by default) takes minutes on
// a slow link, and cut at the timeout it would be cut again on every
// connection, for good. While a write waits, a watch looks at the bytes
// the peer's TCP acknowledged (Linux's TCP_INFO) and pushes the deadline
// on while they grow; the write itself cannot tell, as Linux wakes a
// writer only once a third of the send buffer (up to 4 MiB) is free, and
// a TLS write that timed out cannot go on. Where the acknowledgements
// cannot be seen, the timeout is stretched by the write's size at the
// minimum write rate instead. A peer that stops reading still breaks the
// connection after the write timeout.
func (c *Client[Req, Resp]) writeBuffers(conn net.Conn, iov *net.Buffers, total int64) (int64, error) {
	raw := underTLS(conn)
	acked, watch := ackedBytes(raw)
	d := c.cfg.writeTimeout
	if !watch && c.cfg.minWriteRate > 0 {
		d += time.Duration(float64(total) / float64(c.cfg.minWriteRate) * float64(time.Second))
	}
	if err := conn.SetWriteDeadline(time.Now().Add(d)); err != nil {
		return 0, err
	}
	if !watch {
		return iov.WriteTo(conn)
	}
	w := &c.watch
	every := max(c.cfg.writeTimeout/4, time.Millisecond)
	w.mu.Lock()
	w.conn, w.raw, w.acked = conn, raw, acked
	if w.t == nil {
		w.t = time.AfterFunc(every, func() { c.watchWrite(every) })
	} else {
		w.t.Reset(every)
	}
	w.mu.Unlock()
	n, err := iov.WriteTo(conn)
	w.mu.Lock()
	w.conn, w.raw = nil, nil
	w.t.Stop()
	w.mu.Unlock()
	return n, err
}

// underTLS returns the connection under conn's TLS, if it speaks TLS.
func underTLS(conn net.Conn) net.Conn {
	if tc, ok := conn.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return conn
}

// writeWatch is the state of the watch over a write that waits.
type writeWatch struct {
	mu        sync.Mutex
	t         *time.Timer
	conn, raw net.Conn // the write's connection, and its TCP one; nil between writes
	acked     uint64   // bytes the peer had acknowledged at the last look
}

// watchWrite pushes the deadline of the write under way on if the peer
// acknowledged bytes since the last look, and looks again later.
func (c *Client[Req, Resp]) watchWrite(every time.Duration) {
	w := &c.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn == nil {
		return
	}
	if a, ok := ackedBytes(w.raw); ok && a != w.acked {
		w.acked = a
		_ = w.conn.SetWriteDeadline(time.Now().Add(c.cfg.writeTimeout))
	}
	w.t.Reset(every)
}

// armReadDeadline gives the peer ackTimeout to answer, now that it has
// something to answer.
func (c *Client[Req, Resp]) armReadDeadline(conn net.Conn) {
	c.mu.Lock()
	// Only while requests wait: the peer may have answered every one
	// before the write returned (and rearm cleared the deadline), and a
	// deadline with nothing to answer cut a quiet connection after the
	// ack timeout ("no answer ... the peer holds the requests
	// unanswered"), its pings never answered.
	if c.conn == conn && len(c.pending) > 0 {
		_ = conn.SetReadDeadline(time.Now().Add(c.cfg.ackTimeout))
	}
	c.mu.Unlock()
}

// pendingReq returns request id if it is still waiting for its answer.
func (c *Client[Req, Resp]) pendingReq(id uint64) (Req, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := sort.Search(len(c.pending), func(i int) bool { return c.pending[i].id >= id })
	if i < len(c.pending) && c.pending[i].id == id && !c.pending[i].answered {
		return c.pending[i].req, true
	}
	var zero Req
	return zero, false
}

// checkAnswer refuses an answer to requests first..last from the peer if
// any of them was never written to a connection: a peer that answers
// requests before it could have read them (a bug, or a forger on a link
// without TLS) would have the client drop requests nobody received, which
// it would otherwise do without a word.
func (c *Client[Req, Resp]) checkAnswer(first, last uint64) error {
	if first > last {
		return fmt.Errorf("%w: the peer answered requests %d to %d", ErrProtocol, first, last)
	}
	if h := c.handed.Load(); last > h {
		return fmt.Errorf("%w: the peer answered request %d, and the last request sent is %d", ErrProtocol, last, h)
	}
	return nil
}

// answer completes the pending requests first..last with resp or err.
// Ids not pending (answered before, or gaps between SendID's ids) are
// ignored: a peer may answer a request it receives twice. The readers
// refuse answers to ids never sent before they get here (checkAnswer).
func (c *Client[Req, Resp]) answer(first, last uint64, resp Resp, err error) {
	var done []*call[Req, Resp]
	c.mu.Lock()
	// pending is sorted by id; ids may have gaps (SendID).
	i := sort.Search(len(c.pending), func(i int) bool { return c.pending[i].id >= first })
	for ; i < len(c.pending) && c.pending[i].id <= last; i++ {
		if cl := c.pending[i]; !cl.answered {
			cl.answered = true
			done = append(done, cl)
		}
	}
	var g uintptr
	if len(done) > 0 {
		// A callback that sends may use the room of the requests it
		// answers: waiting for room, it would wait for itself.
		g = goid.G()
		c.inCallback = append(c.inCallback, callbackRun{g: g, credit: len(done)})
	}
	c.mu.Unlock()
	if len(done) == 0 {
		return
	}
	// The callbacks run before the requests leave pending, so that Wait
	// returns only once they have all run.
	for _, cl := range done {
		if cl.done != nil {
			cl.done(resp, err)
		}
	}
	c.stats.answered.Add(uint64(len(done)))
	c.mu.Lock()
	if g != 0 {
		c.inCallback = slices.DeleteFunc(c.inCallback, func(r callbackRun) bool { return r.g == g })
	}
	var size int64
	for _, cl := range done {
		size += cl.size
		cl.finished = true
	}
	k := 0
	for k < len(c.pending) && c.pending[k].finished {
		c.pending[k] = nil
		k++
	}
	c.pending = c.pending[k:]
	if len(c.pending) == 0 {
		c.pending = c.pending[:0:0] // let the backing array go
	}
	c.releaseLocked(len(done), size)
	c.mu.Unlock()
}

// broken ends connection generation gen after err, if it is still the
// current one, and asks the supervisor to connect again.
func (c *Client[Req, Resp]) broken(gen uint64, err error) {
	c.mu.Lock()
	if c.conn == nil || c.connGen != gen {
		c.mu.Unlock()
		return
	}
	conn := c.conn
	c.conn, c.src = nil, nil
	c.downSince = time.Now()
	c.lastErr = err
	quiet := c.finalGen == gen && peerClosed(err)
	c.mu.Unlock()
	if !quiet {
		c.cfg.report(fmt.Errorf("netlog: connection to %s lost: %w", conn.RemoteAddr(), err))
	}
	conn.Close()
	select {
	case c.wakeSup <- struct{}{}:
	default:
	}
}

// peerClosed reports whether err is the peer's end of a connection: its
// close, or a reset.
func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// final notes that resp, on connection generation gen, is a final answer
// (Finisher): the peer closes that connection on purpose.
func (c *Client[Req, Resp]) final(gen uint64, resp Resp) {
	if f, ok := c.codec.(Finisher[Resp]); ok && f.Final(resp) {
		c.mu.Lock()
		c.finalGen = gen
		c.mu.Unlock()
	}
}

// supervise owns connecting: it dials (with backoff, jitter and failover),
// runs the handshake, sends every pending request again in order, and
// keeps the connection alive with pings while it is idle. Its ticks also
// stretch the wait for answers while the peer takes requests in
// (stretchAckWait): at least two in each ack timeout.
func (c *Client[Req, Resp]) supervise() {
	defer c.wg.Done()
	addr := 0
	attempt := 0
	everConnected := false
	tick := func() time.Duration { return min(time.Duration(c.keepAlive.Load()), c.cfg.ackTimeout/2) }
	every := tick()
	keep := time.NewTicker(every)
	defer keep.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.wakeSup:
		case <-keep.C:
			c.stretchAckWait()
			c.ping()
			continue
		}
		stopWatch := c.watchDown()
		for {
			c.mu.Lock()
			connected, stopped := c.conn != nil, c.stopped
			c.mu.Unlock()
			if connected || stopped {
				break
			}
			a := c.cfg.addrs[addr%len(c.cfg.addrs)]
			err := c.connect(a)
			if err == nil {
				if everConnected {
					c.stats.reconnects.Add(1)
				}
				everConnected = true
				attempt = 0
				break
			}
			var re *resendError
			if errors.As(err, &re) {
				// The peer took the handshake, then the requests did not
				// go through (it stopped reading, or went away): a lost
				// connection, reported as one, not a failed dial.
				c.cfg.report(err)
			} else {
				c.stats.dialErrors.Add(1)
			}
			c.failed(addr%len(c.cfg.addrs), err)
			addr++
			d := backoff(c.cfg.backoffMin, c.cfg.backoffMax, attempt)
			attempt++
			t := time.NewTimer(d)
			select {
			case <-c.ctx.Done():
				t.Stop()
				stopWatch()
				return
			case <-t.C:
			}
		}
		stopWatch()
		if k := tick(); k != every {
			every = k
			keep.Reset(k)
		}
	}
}

// A resendError is a connection that was made, handshake included, and
// lost while the pending requests were written on it again.
type resendError struct {
	addr string
	n    int
	err  error
}

func (e *resendError) Error() string {
	return fmt.Sprintf("netlog: connection to %s lost while resending %d requests: %v", e.addr, e.n, e.err)
}

func (e *resendError) Unwrap() error { return e.err }

// backoff is min x 2^attempt, at most max, times a random factor in
// [0.5, 1.5) so that many clients do not come back at the same instant.
func backoff(min, max time.Duration, attempt int) time.Duration {
	d := min
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	d = time.Duration(float64(d) * (0.5 + rand.Float64()))
	return d
}

// watchDown reports the peer unavailable once it has been down for the
// report delay, at that moment, whether an attempt to connect is under way
// (a peer that stalls can hold a handshake until its timeout) or the client
// waits out its backoff; so that Send and Wait do not wait for the next
// attempt to fail. The returned func stops the watch; it returns once the
// report, if made, is done.
func (c *Client[Req, Resp]) watchDown() (stop func()) {
	c.mu.Lock()
	idle := c.failing || c.conn != nil
	since := c.downSince
	c.mu.Unlock()
	if idle {
		return func() {}
	}
	done := make(chan struct{})
	t := time.AfterFunc(max(time.Until(since.Add(c.cfg.reportAfter)), 0), func() {
		defer close(done)
		c.overdue()
	})
	return func() {
		if !t.Stop() {
			<-done
		}
	}
}

// overdue marks the peer unavailable and reports it, if it is still down
// after the report delay.
func (c *Client[Req, Resp]) overdue() {
	c.mu.Lock()
	down := time.Since(c.downSince)
	if c.conn != nil || c.failing || c.stopped || down < c.cfg.reportAfter {
		c.mu.Unlock()
		return
	}
	if c.lastErr == nil { // the first attempt is still under way
		c.lastErr = c.noAnswerYet()
	}
	err := c.lastErr
	c.failing = true
	c.cond.Broadcast()                                   // Send and Wait return ErrUnavailable from now on
	reported := slices.Contains(c.rejected, err.Error()) // failed said it already
	c.mu.Unlock()
	if !reported {
		c.cfg.report(fmt.Errorf("%w: no connection for %v: %w", ErrUnavailable, down.Round(time.Millisecond), err))
	}
}

// failed records a failed connection attempt to the address at index
// addr: its error is what the watch (watchDown) reports once the peer has
// been down for the report delay. A rejection that will not go away by
// trying again (a configuration problem: a wrong token, a bad stream name,
// TLS on one side only) is reported at once, and once every address has
// answered so, the peer counts as unavailable at once, without the report
// delay: Send and Wait return ErrUnavailable, and a drain (WaitOutages) or
// Shutdown stops waiting for a peer that would only take the client back
// if its operator, or ours, changed something.
func (c *Client[Req, Resp]) failed(addr int, err error) {
	c.mu.Lock()
	c.lastErr = err
	down := time.Since(c.downSince)
	// Such a rejection is reported at once, not at the report delay: it is
	// the peer's word, not a guess. The same one again on the next attempts
	// is not reported again. One that says to come back later (too many
	// connections, a full disk) waits for the report delay, as a peer that
	// does not answer does.
	refused := Permanent(err)
	report := refused && err.Error() != c.rejected[addr]
	if report {
		c.rejected[addr] = err.Error()
	}
	c.refusedBy[addr] = refused
	if c.refusedLocked() && !c.failing {
		c.failing = true
		c.cond.Broadcast()
	}
	c.mu.Unlock()
	if report {
		c.cfg.report(fmt.Errorf("%w: no connection for %v: %w", ErrUnavailable, down.Round(time.Millisecond), err))
	}
}

// refusedLocked reports whether the last attempt on every address ended in
// a rejection that trying again will not change (Permanent). Called with
// mu held.
func (c *Client[Req, Resp]) refusedLocked() bool {
	return c.conn == nil && !slices.Contains(c.refusedBy, false)
}

// refused returns ErrUnavailable, wrapping the last rejection, once every
// address has refused the client for good (refusedLocked), and nil
// otherwise.
func (c *Client[Req, Resp]) refused() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refusedLocked() {
		return fmt.Errorf("%w: %w", ErrUnavailable, c.lastErr)
	}
	return nil
}

// Permanent reports whether err is, or wraps, a refusal by the peer that
// trying again will not change: a handshake or request it rejected for
// good (a wrong token, a bad stream name, a frame over its limits), or a
// TLS handshake that failed on a disagreement (the peer does not speak
// TLS, a certificate that does not verify). A StatusError that says to come
// back later (Retryable) is not.
func Permanent(err error) bool {
	if !errors.Is(err, ErrRejected) {
		return false
	}
	se, ok := errors.AsType[*StatusError](err)
	return !ok || !se.Retryable()
}

func (c *Client[Req, Resp]) dial(addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: 30 * time.Second}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.dialTimeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if c.cfg.tls != nil {
		cfg := c.cfg.tls.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
				return nil, fmt.Errorf("%w: TLS handshake: the peer does not answer in TLS (is TLS on at its end?): %w", ErrRejected, err)
			}
			if tlsRefusal(err) {
				return nil, fmt.Errorf("%w: TLS handshake: %w", ErrRejected, err)
			}
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		conn = tc
	}
	return conn, nil
}

// tlsRefusal reports whether err, from a TLS handshake, is a disagreement
// that trying again will not settle: the peer's certificate does not
// verify, or the peer refused ours (or our TLS versions, or ciphers).
// Only its operator, or ours, can change that.
func tlsRefusal(err error) bool {
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return true
	}
	code, ok := tlsAlert(err)
	if !ok {
		return false
	}
	switch code {
	case 40, // handshake_failure
		42, 43, 44, 45, 46, // bad, unsupported, revoked, expired, unknown certificate
		48, 49, // unknown_ca, access_denied
		70, 71, // protocol_version, insufficient_security
		116: // certificate_required
		return true
	}
	return false
}

// tlsAlert returns the code of the TLS alert the peer sent, if err is one.
// crypto/tls gives a peer's alert over TCP as a net.OpError "remote error"
// around a value of its unexported alert type, a uint8 (tls.AlertError is
// for QUIC only).
func tlsAlert(err error) (uint8, bool) {
	if a, ok := errors.AsType[tls.AlertError](err); ok {
		return uint8(a), true
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" && op.Err != nil {
		if v := reflect.ValueOf(op.Err); v.Kind() == reflect.Uint8 {
			return uint8(v.Uint()), true
		}
	}
	return 0, false
}

// connect makes one connection to addr, runs the handshake, sends the
// pending requests again and installs the connection.
func (c *Client[Req, Resp]) connect(addr string) error {
	conn, err := c.dial(addr)
	if err != nil {
		return fmt.Errorf("netlog: connect to %s: %w", addr, err)
	}
	// Close cuts a handshake or a resend short instead of waiting out
	// their timeouts (a collector that stalls can hold either).
	unhook := context.AfterFunc(c.ctx, func() { conn.Close() })
	defer unhook()
	_ = conn.SetDeadline(time.Now().Add(c.cfg.handshakeTimeout))
	err = c.codec.Handshake(conn)
	if err == nil {
		k := c.cfg.keepAlive
		if ka, ok := c.codec.(KeepAliver); ok {
			if d := ka.KeepAlive(); d > 0 && d < k {
				k = max(d, 10*time.Millisecond)
			}
		}
		c.keepAlive.Store(int64(k))
	}
	if err != nil {
		conn.Close()
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() && c.ctx.Err() == nil {
			// Said without the connection's local port, so that the
			// same stall reads the same on every attempt.
			return fmt.Errorf("netlog: handshake with %s: no answer within %v (the peer accepts connections but does not answer: stopped, overloaded, or not a snail collector): %w",
				addr, c.cfg.handshakeTimeout, os.ErrDeadlineExceeded)
		}
		if tlsRefusal(err) { // TLS 1.3: the peer refused our certificate after our side of the TLS handshake
			return fmt.Errorf("netlog: handshake with %s: %w: %w", addr, ErrRejected, err)
		}
		return fmt.Errorf("netlog: handshake with %s: %w", addr, err)
	}
	_ = conn.SetDeadline(time.Time{})

	acked, _ := ackedBytes(underTLS(conn)) // stretchAckWait's first look

	c.wmu.Lock()
	c.mu.Lock()
	resend := make([]*call[Req, Resp], 0, len(c.pending))
	for _, cl := range c.pending {
		if !cl.answered {
			resend = append(resend, cl)
		}
	}
	c.mu.Unlock()
	if len(resend) > 0 {
		if _, err := c.writeCalls(conn, resend); err != nil {
			c.wmu.Unlock()
			conn.Close()
			return &resendError{addr: addr, n: len(resend), err: err}
		}
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		c.wmu.Unlock()
		conn.Close()
		return ErrClosed
	}
	c.connGen++
	gen := c.connGen
	c.conn = conn
	c.ackSeen = acked
	c.src = newRespBuf(c.codec, conn, gen)
	src := c.src
	c.downSince = time.Time{}
	c.failing = false
	c.lastErr = nil
	clear(c.rejected)
	clear(c.refusedBy)
	if len(c.pending) > 0 {
		_ = conn.SetReadDeadline(time.Now().Add(c.cfg.ackTimeout))
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	c.wmu.Unlock()

	c.wg.Add(1)
	if src != nil {
		go c.pollLoop(src)
	} else {
		go c.readLoop(conn, gen)
	}
	return nil
}

// readLoop reads responses on one connection until it breaks.
func (c *Client[Req, Resp]) readLoop(conn net.Conn, gen uint64) {
	defer c.wg.Done()
	rr := c.codec.NewResponseReader(conn)
	for {
		first, last, resp, err := rr.ReadResponse()
		if err == nil {
			err = c.checkAnswer(first, last)
		}
		if err != nil {
			c.broken(gen, readErr(err, c.cfg.ackTimeout))
			return
		}
		c.final(gen, resp)
		c.answer(first, last, resp, nil)
		c.rearm(conn)
	}
}

// stretchAckWait gives the peer the ack timeout again while its TCP
// acknowledges bytes of the requests on their way: a request that takes
// longer than the ack timeout to cross a slow link (1 MiB at 32 KiB/s) is
// answered only once it has crossed, and cut at the timeout it would be
// cut again on every connection, for good. The ack timeout counts the
// time the peer takes nothing in and answers nothing (where its TCP's
// acknowledgements can be seen: Linux).
func (c *Client[Req, Resp]) stretchAckWait() {
	c.mu.Lock()
	conn := c.conn
	waiting := conn != nil && len(c.pending) > 0
	c.mu.Unlock()
	if !waiting {
		return
	}
	acked, ok := ackedBytes(underTLS(conn))
	if !ok {
		return
	}
	c.mu.Lock()
	if c.conn == conn && len(c.pending) > 0 && acked != c.ackSeen { // bytes went through since the last look
		c.ackSeen = acked
		_ = conn.SetReadDeadline(time.Now().Add(c.cfg.ackTimeout))
	}
	c.mu.Unlock()
}

// ping writes a keep-alive frame if nothing was written for a while. A
// write under way (a large one on a slow link may take minutes) keeps the
// connection busy: ping does not wait for it, so that supervise goes on
// ticking (stretchAckWait) and reconnecting.
func (c *Client[Req, Resp]) ping() {
	if time.Since(time.Unix(0, c.lastW.Load())) < time.Duration(c.keepAlive.Load()) {
		return
	}
	if !c.wmu.TryLock() {
		return
	}
	defer c.wmu.Unlock()
	c.mu.Lock()
	conn, gen := c.conn, c.connGen
	c.mu.Unlock()
	if conn == nil {
		return
	}
	c.scratch = c.codec.AppendPing(c.scratch[:0])
	_ = conn.SetWriteDeadline(time.Now().Add(c.cfg.writeTimeout))
	n, err := conn.Write(c.scratch)
	c.stats.bytes.Add(uint64(n))
	if err != nil {
		c.broken(gen, err)
		return
	}
	c.lastW.Store(time.Now().UnixNano())
}

// Unavailable returns ErrUnavailable, wrapping the last connection error,
// while the peer has been unreachable for longer than the report delay,
// and nil otherwise.
func (c *Client[Req, Resp]) Unavailable() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failing {
		return fmt.Errorf("%w: %w", ErrUnavailable, c.lastErr)
	}
	return nil
}

// downFor returns how long the peer has been unreachable: since the
// connection was lost or, before the first one, since NewClient; 0 while
// connected, and after Close.
func (c *Client[Req, Resp]) downFor() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil || c.downSince.IsZero() {
		return 0
	}
	return time.Since(c.downSince)
}

// downErr returns, while the peer is unreachable (for the report delay or
// not yet), the last connection error, or that the first attempt has not
// ended; nil while connected.
func (c *Client[Req, Resp]) downErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		return nil
	}
	if c.lastErr == nil {
		return c.noAnswerYet()
	}
	return c.lastErr
}

func (c *Client[Req, Resp]) noAnswerYet() error {
	return fmt.Errorf("netlog: no answer yet from %s", strings.Join(c.cfg.addrs, ", "))
}

// WaitOutages makes Send and Wait, from now on and until ctx ends, wait
// through an outage instead of returning ErrUnavailable once the peer has
// been unreachable for the report delay: for a close that drains, whose
// peer may yet come back. Those waiting already wait on, and every Send
// that finds the window full, and every Wait, ends with ctx's error when
// ctx ends, whatever their own ctx. A peer that refuses the client for good
// on every address (Permanent) is not waited for: that takes its operator.
func (c *Client[Req, Resp]) WaitOutages(ctx context.Context) {
	c.mu.Lock()
	c.outCtx = ctx
	c.mu.Unlock()
	context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
}

// outEnded returns the error of WaitOutages's ctx once it has ended.
func (c *Client[Req, Resp]) outEnded() error {
	if c.outCtx == nil {
		return nil
	}
	return c.outCtx.Err()
}

// Wait returns once every request sent before the call is answered, or
// returns ErrUnavailable while the peer is unreachable past the report
// delay (or refuses the client for good on every address), ErrClosed
// after Close, ctx's error, or ErrReentry from a response callback.
func (c *Client[Req, Resp]) Wait(ctx context.Context) error {
	if c.inCallbackNow() {
		return fmt.Errorf("%w: Wait", ErrReentry)
	}
	if err := c.b.Flush(); err != nil {
		if errors.Is(err, batcher.ErrClosed) {
			c.mu.Lock()
			closed := c.stopped
			c.mu.Unlock()
			if closed {
				return ErrClosed
			}
		} else {
			return err
		}
	}
	c.wmu.Lock()
	target := c.nextID
	c.wmu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	stopWait := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stopWait()
	for len(c.pending) > 0 && c.pending[0].id <= target {
		switch {
		case c.stopped:
			return ErrClosed
		case c.failing && (c.outCtx == nil || c.refusedLocked()):
			return fmt.Errorf("%w: %d requests waiting: %w", ErrUnavailable, len(c.pending), c.lastErr)
		case c.outEnded() != nil:
			return fmt.Errorf("netlog: %d requests waiting: %w", len(c.pending), c.outEnded())
		case ctx.Err() != nil:
			return ctx.Err()
		}
		c.cond.Wait()
	}
	return nil
}

// Shutdown stops taking requests, waits until every request is answered
// or ctx ends, then closes the client. On ctx's end it returns ctx's cause
// (context.Cause: ctx.Err() unless one was given) with the number of
// requests left unanswered, which are answered with ErrClosed; it stops
// waiting as early, with ErrUnavailable, once every address has refused
// the client for good (Permanent).
func (c *Client[Req, Resp]) Shutdown(ctx context.Context) error {
	if c.inCallbackNow() {
		return fmt.Errorf("%w: Shutdown", ErrReentry)
	}
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	_ = c.b.Close() // every request queued goes to output
	c.mu.Lock()
	stopWait := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	var err error
	for c.inflight > 0 && !c.stopped {
		if ctx.Err() != nil {
			err = fmt.Errorf("netlog: %d requests not answered: %w", c.inflight, context.Cause(ctx))
			break
		}
		if c.refusedLocked() {
			err = fmt.Errorf("netlog: %d requests not answered: %w: %w", c.inflight, ErrUnavailable, c.lastErr)
			break
		}
		c.cond.Wait()
	}
	c.mu.Unlock()
	stopWait()
	if cerr := c.Close(); err == nil && cerr != nil && !errors.Is(cerr, ErrClosed) {
		err = cerr
	}
	return err
}

// Close closes the connection at once and answers every pending request
// with ErrClosed. It stops every goroutine of the Client before it returns,
// so from a response callback, whose goroutine it would wait for, it does
// nothing and returns ErrReentry.
func (c *Client[Req, Resp]) Close() error {
	c.mu.Lock()
	if c.callbackLocked() >= 0 {
		c.mu.Unlock()
		return fmt.Errorf("%w: Close", ErrReentry)
	}
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.stopped = true
	conn := c.conn
	c.conn, c.src = nil, nil
	c.cond.Broadcast()
	c.mu.Unlock()
	c.cancel()
	if conn != nil {
		conn.Close()
	}
	_ = c.b.Close()
	c.wg.Wait()
	c.mu.Lock()
	left := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, cl := range left {
		if !cl.answered {
			if cl.done != nil {
				cl.done(*new(Resp), ErrClosed)
			}
		}
	}
	c.mu.Lock()
	c.inflight, c.inBytes = 0, 0
	c.cond.Broadcast()
	c.mu.Unlock()
	if c.ownRep {
		c.cfg.rep.close()
	}
	return nil
}

// Stats returns the Client's counters.
func (c *Client[Req, Resp]) Stats() ClientStats {
	c.mu.Lock()
	pending, connected := c.inflight, c.conn != nil
	c.mu.Unlock()
	return ClientStats{
		Sent:       c.stats.sent.Load(),
		Resent:     c.stats.resent.Load(),
		Answered:   c.stats.answered.Load(),
		Pending:    pending,
		Reconnects: c.stats.reconnects.Load(),
		DialErrors: c.stats.dialErrors.Load(),
		Bytes:      c.stats.bytes.Load(),
		Connected:  connected,
	}
}
