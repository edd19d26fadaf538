package encoder

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Batch describes the batch a frame carries.
type Batch struct {
	Stream  uint64 // stream id, stable for the life of a client
	Seq     uint64 // sequence number within the stream
	Entries int    // number of entries in the payload
}

// Encoder appends frames to byte slices, compressing batch payloads with
// reused compressors: after its first frame of each codec it does not
// allocate. An Encoder is not safe for concurrent use: give each writer one.
// Close releases the zstd compressor.
type Encoder struct {
	level zstd.EncoderLevel
	zstd  *zstd.Encoder
}

type encoderConfig struct {
	level zstd.EncoderLevel
}

// EncoderOption configures an Encoder.
type EncoderOption func(*encoderConfig) error

// WithZstdLevel sets the zstd level, from 1 (fastest, the default) to 4
// (best compression), as in zstd.EncoderLevel.
func WithZstdLevel(level int) EncoderOption {
	return func(c *encoderConfig) error {
		if level < int(zstd.SpeedFastest) || level > int(zstd.SpeedBestCompression) {
			return fmt.Errorf("zstd level %d out of range [1, 4]", level)
		}
		c.level = zstd.EncoderLevel(level)
		return nil
	}
}

// NewEncoder returns an Encoder.
func NewEncoder(opts ...EncoderOption) (*Encoder, error) {
	c := encoderConfig{level: zstd.SpeedFastest}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
	}
	return &Encoder{level: c.level}, nil
}

// Close releases the encoder's compressors. The Encoder must not be used
// afterwards.
func (e *Encoder) Close() error {
	if e.zstd != nil {
		err := e.zstd.Close()
		e.zstd = nil
		return err
	}
	return nil
}

func checkBatch(b Batch, n int) error {
	if int64(n) > MaxPayload {
		return fmt.Errorf("%w: payload of %d bytes, a frame carries at most %d", ErrFrameTooLarge, n, int64(MaxPayload))
	}
	if b.Entries < 0 || uint64(b.Entries) > 1<<32-1 {
		return fmt.Errorf("%w: %d entries", ErrFrameTooLarge, b.Entries)
	}
	return nil
}

// AppendBatchHeader appends the header of an uncompressed batch frame whose
// payload is payload, without the payload itself: sending the header and
// then payload (for instance with net.Buffers, one writev) makes the frame
// without copying the batch.
func AppendBatchHeader(dst []byte, b Batch, payload []byte) ([]byte, error) {
	return AppendBatchHeaderFor(dst, b, None, len(payload), payload)
}

// AppendBatch appends a complete batch frame to dst: the header, then
// payload compressed with c. When compression would not make the payload
// smaller the frame carries it uncompressed (its flags say so).
func (e *Encoder) AppendBatch(dst []byte, b Batch, payload []byte, c Compression) ([]byte, error) {
	if err := checkBatch(b, len(payload)); err != nil {
		return dst, err
	}
	start := len(dst)
	body := start + HeaderSize
	dst = slices.Grow(dst, HeaderSize)[:body]
	dst, c, err := e.AppendPayload(dst, payload, c)
	if err != nil {
		return dst[:start], err
	}
	comp := dst[body:]
	h := dst[start:body]
	putHeader(h, KindBatch, uint16(c), b.Stream, b.Seq, uint64(b.Entries)|uint64(len(payload))<<32, uint32(len(comp)))
	binary.LittleEndian.PutUint32(h[36:], crcOf(h, comp))
	return dst, nil
}

// AppendPayload appends payload compressed with c to dst and returns the
// codec it used: None when compression would not make the payload smaller.
// With AppendBatchHeaderFor it lets a sender compress a batch before it knows
// the batch's sequence number (netlog numbers frames as they leave).
func (e *Encoder) AppendPayload(dst, payload []byte, c Compression) ([]byte, Compression, error) {
	if int64(len(payload)) > MaxPayload {
		return dst, c, fmt.Errorf("%w: payload of %d bytes, a frame carries at most %d", ErrFrameTooLarge, len(payload), int64(MaxPayload))
	}
	body := len(dst)
	switch c {
	case None:
	case S2:
		max := s2.MaxEncodedLen(len(payload))
		if max < 0 {
			return dst, c, fmt.Errorf("%w: %d bytes is too much for S2", ErrFrameTooLarge, len(payload))
		}
		dst = slices.Grow(dst, max)
		dst = dst[:body+len(s2.Encode(dst[body:body], payload))] // encodes in place: the capacity is there
	case Zstd:
		if e.zstd == nil {
			z, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(e.level), zstd.WithEncoderConcurrency(1),
				zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true))
			if err != nil {
				return dst, c, fmt.Errorf("encoder: zstd: %w", err)
			}
			e.zstd = z
		}
		dst = slices.Grow(dst, len(payload)+len(payload)/128+64)
		dst = e.zstd.EncodeAll(payload, dst)
	default:
		return dst, c, fmt.Errorf("%w: compression %d", ErrFlags, c)
	}
	if c == None || len(dst)-body >= len(payload) {
		c = None
		dst = append(dst[:body], payload...)
	}
	return dst, c, nil
}

// AppendBatchHeaderFor appends the header of a batch frame whose payload, as
// sent, is payload: rawLen bytes compressed with c (from AppendPayload). The
// payload itself is not appended, so that header and payload can leave in
// one vectored write.
func AppendBatchHeaderFor(dst []byte, b Batch, c Compression, rawLen int, payload []byte) ([]byte, error) {
	if err := checkBatch(b, max(len(payload), rawLen)); err != nil {
		return dst, err
	}
	if c > Zstd {
		return dst, fmt.Errorf("%w: compression %d", ErrFlags, c)
	}
	if c == None && rawLen != len(payload) {
		return dst, fmt.Errorf("%w: uncompressed payload of %d bytes announces %d", ErrCorrupt, len(payload), rawLen)
	}
	start := len(dst)
	dst = slices.Grow(dst, HeaderSize)[:start+HeaderSize]
	h := dst[start:]
	putHeader(h, KindBatch, uint16(c), b.Stream, b.Seq, uint64(b.Entries)|uint64(rawLen)<<32, uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[36:], crcOf(h, payload))
	return dst, nil
}

// AppendAck appends an ack frame for batches first to last (inclusive) of
// stream with the given status and optional reason text (at most
// MaxAckReason bytes; longer text is cut).
func AppendAck(dst []byte, stream, first, last uint64, status Status, reason string) []byte {
	if len(reason) > MaxAckReason {
		reason = reason[:MaxAckReason]
	}
	start := len(dst)
	dst = slices.Grow(dst, HeaderSize+len(reason))[:start+HeaderSize]
	dst = append(dst, reason...)
	h := dst[start : start+HeaderSize]
	putHeader(h, KindAck, uint16(status), stream, first, last, uint32(len(reason)))
	binary.LittleEndian.PutUint32(h[36:], crcOf(h, dst[start+HeaderSize:]))
	return dst
}

// AppendControl appends a frame of a control kind (3 to 15, defined by
// netlog) with the given flags, header words and payload.
func AppendControl(dst []byte, kind Kind, flags uint16, stream, seq, aux uint64, payload []byte) ([]byte, error) {
	if kind <= KindAck || kind > MaxKind {
		return dst, fmt.Errorf("%w: %d is not a control kind", ErrKind, kind)
	}
	if int64(len(payload)) > MaxPayload {
		return dst, fmt.Errorf("%w: payload of %d bytes", ErrFrameTooLarge, len(payload))
	}
	start := len(dst)
	dst = slices.Grow(dst, HeaderSize+len(payload))[:start+HeaderSize]
	dst = append(dst, payload...)
	h := dst[start : start+HeaderSize]
	putHeader(h, kind, flags, stream, seq, aux, uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[36:], crcOf(h, dst[start+HeaderSize:]))
	return dst, nil
}
