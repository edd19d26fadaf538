package netlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"

	"github.com/snail-log/snail/encoder"
)

// Stream sends batches of log entries to a collector over the log protocol:
// it is a destination for sink.New, so that zap, zerolog and slog log to a
// collector exactly as they log to a file. Each batch becomes one frame,
// numbered within the stream, and is kept until the collector acks it.
//
// Delivery is at-least-once on the wire and exactly-once into the
// collector's files: after a reconnect the Stream sends every unacked batch
// again, in order, and the collector skips those it already wrote.
//
// While the window of unacked batches is full, WriteBatch waits (the sink's
// overflow policy then blocks or drops entries, per level); once the
// collector has been unreachable for longer than the report delay it returns
// ErrUnavailable instead, and Sync returns it too, while every batch already
// taken stays queued and is delivered when a connection succeeds.
type Stream struct {
	c     *Client[*outBatch, ack]
	cfg   clientConfig
	id    uint64
	enc   *encoder.Encoder
	dec   *encoder.Decoder
	bufs  sync.Pool
	close sync.Once
	cerr  error

	mu  sync.Mutex
	err error // batches refused since the last Sync

	batches, acked, entries, lost, rejected, raw, wire atomic.Uint64
}

// outBatch is a batch on its way: its payload as sent (compressed or not).
type outBatch struct {
	buf     *[]byte
	payload []byte
	comp    encoder.Compression
	raw     int
	entries int
}

// ack is the collector's answer to a batch.
type ack struct {
	status encoder.Status
	reason string
}

// StreamStats are a Stream's counters since Dial.
type StreamStats struct {
	Batches   uint64 // batches taken by WriteBatch
	Acked     uint64 // batches acked by the collector
	Entries   uint64 // entries in acked batches
	Lost      uint64 // entries in batches refused or given up at Close
	Rejected  uint64 // batches the collector refused
	RawBytes  uint64 // batch bytes before compression
	WireBytes uint64 // batch bytes as sent, before headers (first send)
	ClientStats
}

// Dial returns a Stream to the collector at addr ("host:port", or a
// comma-separated list for failover; WithAddrs adds more). It returns at
// once: the connection is made in the background and batches wait for it.
// Errors are configuration errors.
func Dial(addr string, opts ...ClientOption) (*Stream, error) {
	cfg, err := newClientConfig(append([]ClientOption{WithAddrs(addr)}, opts...))
	if err != nil {
		return nil, err
	}
	enc, err := encoder.NewEncoder(encoder.WithZstdLevel(cfg.zstdLevel))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	dec, err := encoder.NewDecoder(encoder.WithMaxFrameSize(encoder.MaxAckReason))
	if err != nil {
		return nil, err
	}
	s := &Stream{cfg: cfg, enc: enc, dec: dec}
	for s.id == 0 {
		s.id = rand.Uint64()
	}
	s.c, err = NewClient[*outBatch, ack](&streamCodec{s: s}, append([]ClientOption{WithAddrs(addr)}, opts...)...)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ID returns the stream id, chosen at random at Dial.
func (s *Stream) ID() uint64 { return s.id }

// WriteBatch compresses batch as configured and queues it for sending. It
// waits while the window is full. It is called from one goroutine at a time
// (the sink's), which keeps batches in order.
func (s *Stream) WriteBatch(batch []byte, entries int) error {
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	payload, comp, err := s.enc.AppendPayload((*bp)[:0], batch, s.cfg.compression)
	if err != nil {
		s.bufs.Put(bp)
		return err
	}
	*bp = payload
	ob := &outBatch{buf: bp, payload: payload, comp: comp, raw: len(batch), entries: entries}
	if err := s.c.Send(context.Background(), ob, encoder.HeaderSize+len(payload), func(a ack, err error) { s.done(ob, a, err) }); err != nil {
		s.bufs.Put(bp)
		return err
	}
	s.batches.Add(1)
	s.raw.Add(uint64(len(batch)))
	s.wire.Add(uint64(len(payload)))
	return nil
}

// done is called once per batch with the collector's answer.
func (s *Stream) done(ob *outBatch, a ack, err error) {
	if cap(*ob.buf) <= 8<<20 {
		s.bufs.Put(ob.buf)
	}
	if err == nil && a.status == encoder.StatusOK {
		s.acked.Add(1)
		s.entries.Add(uint64(ob.entries))
		return
	}
	if err == nil {
		err = &StatusError{Status: a.status, Reason: a.reason}
		s.rejected.Add(1)
	}
	s.lost.Add(uint64(ob.entries))
	err = fmt.Errorf("netlog: batch of %d entries not delivered: %w", ob.entries, err)
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	if !errors.Is(err, ErrClosed) {
		s.cfg.report(err)
	}
}

func (s *Stream) takeErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.err
	s.err = nil
	return err
}

// Sync returns once every batch written before it is acked, or with the
// error of a batch the collector refused since the last Sync, or with
// ErrUnavailable while the collector is unreachable past the report delay.
func (s *Stream) Sync() error {
	err := s.c.Wait(context.Background())
	if rerr := s.takeErr(); rerr != nil {
		err = errors.Join(rerr, err)
	}
	return err
}

// Close waits up to the drain timeout for every batch to be acked, then
// closes the connection and stops every goroutine. Batches not acked by
// then are counted in Stats().Lost and reported in the error. Later calls
// return the same error.
func (s *Stream) Close() error {
	s.close.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.drain)
		err := s.c.Shutdown(ctx)
		cancel()
		if rerr := s.takeErr(); rerr != nil && !errors.Is(rerr, ErrClosed) {
			err = errors.Join(err, rerr)
		}
		s.enc.Close()
		s.dec.Close()
		s.cerr = err
	})
	return s.cerr
}

// Stats returns the Stream's counters.
func (s *Stream) Stats() StreamStats {
	return StreamStats{
		Batches:     s.batches.Load(),
		Acked:       s.acked.Load(),
		Entries:     s.entries.Load(),
		Lost:        s.lost.Load(),
		Rejected:    s.rejected.Load(),
		RawBytes:    s.raw.Load(),
		WireBytes:   s.wire.Load(),
		ClientStats: s.c.Stats(),
	}
}

// streamCodec is the client half of the log protocol.
type streamCodec struct {
	s *Stream
}

func (c *streamCodec) Handshake(conn net.Conn) error {
	s := c.s
	hello, err := AppendHello(nil, Hello{Version: ProtocolVersion, StreamID: s.id, Name: s.cfg.stream, Token: s.cfg.token})
	if err != nil {
		return err
	}
	if _, err := conn.Write(hello); err != nil {
		return err
	}
	f, err := readOne(conn, s.dec)
	if err != nil {
		return err
	}
	switch f.Kind {
	case KindWelcome, KindGoodbye:
		if st := encoder.Status(f.Flags); st != encoder.StatusOK {
			return &StatusError{Status: st, Reason: string(f.Payload)}
		}
		if f.Kind == KindGoodbye {
			return fmt.Errorf("%w: goodbye with status ok in the handshake", ErrProtocol)
		}
		if f.Stream != s.id {
			return fmt.Errorf("%w: welcome for stream %x, we are %x", ErrProtocol, f.Stream, s.id)
		}
		return nil
	}
	return fmt.Errorf("%w: expected welcome, got %v", ErrProtocol, f.Kind)
}

// readOne reads exactly one frame from r, without reading ahead.
func readOne(r io.Reader, d *encoder.Decoder) (encoder.Frame, error) {
	var hdr [encoder.HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return encoder.Frame{}, err
	}
	h, err := d.ParseHeader(hdr[:])
	if err != nil {
		return encoder.Frame{}, err
	}
	buf := make([]byte, encoder.HeaderSize+int(h.PayloadLen))
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[encoder.HeaderSize:]); err != nil {
		return encoder.Frame{}, err
	}
	f, _, err := d.Decode(buf, nil)
	return f, err
}

func (c *streamCodec) AppendRequest(dst []byte, id uint64, b *outBatch) ([]byte, []byte, error) {
	out, err := encoder.AppendBatchHeaderFor(dst, encoder.Batch{Stream: c.s.id, Seq: id, Entries: b.entries}, b.comp, b.raw, b.payload)
	if err != nil {
		return dst, nil, err
	}
	return out, b.payload, nil
}

func (c *streamCodec) AppendPing(dst []byte) []byte { return AppendPing(dst) }

func (c *streamCodec) NewResponseReader(r io.Reader) ResponseReader[ack] {
	return &ackReader{r: encoder.NewReader(r, c.s.dec), id: c.s.id}
}

type ackReader struct {
	r  *encoder.Reader
	id uint64
}

func (a *ackReader) ReadResponse() (uint64, uint64, ack, error) {
	f, err := a.r.Next()
	if err != nil {
		return 0, 0, ack{}, err
	}
	switch f.Kind {
	case encoder.KindAck:
		if f.Stream != a.id {
			return 0, 0, ack{}, fmt.Errorf("%w: ack for stream %x, we are %x", ErrProtocol, f.Stream, a.id)
		}
		if f.Status == encoder.StatusOK {
			return f.Seq, f.LastSeq, ack{}, nil
		}
		se := &StatusError{Status: f.Status, Reason: string(f.Payload)}
		if se.Retryable() {
			return 0, 0, ack{}, se // ends the connection: the batches go again
		}
		return f.Seq, f.LastSeq, ack{status: f.Status, reason: se.Reason}, nil
	case KindGoodbye:
		return 0, 0, ack{}, &StatusError{Status: encoder.Status(f.Flags), Reason: string(f.Payload)}
	}
	return 0, 0, ack{}, fmt.Errorf("%w: unexpected %v frame", ErrProtocol, f.Kind)
}
