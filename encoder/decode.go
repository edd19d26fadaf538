package encoder

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Frame is a decoded frame: its header and its payload, decompressed.
type Frame struct {
	Header
	// Payload is the batch's entries (batch frames), the reason text (acks)
	// or the control payload. It aliases the decoder's input or buffers:
	// see Decode and Reader.Next for how long it stays valid.
	Payload []byte
}

// Decoder validates and decodes frames against configured limits. It is safe
// for concurrent use. Close releases its zstd decompressor.
type Decoder struct {
	lim   limits
	zonce sync.Once
	zstd  *zstd.Decoder
	zerr  error
}

// DecoderOption configures a Decoder.
type DecoderOption func(*limits) error

// WithMaxFrameSize sets the largest payload, as sent, that the decoder
// accepts (ErrFrameTooLarge beyond). Defaults to 16 MiB; at most 4 GiB-1.
func WithMaxFrameSize(n int) DecoderOption {
	return func(l *limits) error {
		if n < 0 || int64(n) > MaxPayload {
			return fmt.Errorf("max frame size %d out of range [0, %d]", n, int64(MaxPayload))
		}
		l.maxFrame = n
		return nil
	}
}

// WithMaxDecompressedSize sets the largest payload after decompression that
// the decoder accepts (ErrDecompressedTooLarge beyond): the most memory one
// frame can make it use. Defaults to 64 MiB; at most 4 GiB-1.
func WithMaxDecompressedSize(n int) DecoderOption {
	return func(l *limits) error {
		if n < 0 || int64(n) > MaxPayload {
			return fmt.Errorf("max decompressed size %d out of range [0, %d]", n, int64(MaxPayload))
		}
		l.maxRaw = n
		return nil
	}
}

// NewDecoder returns a Decoder.
func NewDecoder(opts ...DecoderOption) (*Decoder, error) {
	l := limits{maxFrame: DefaultMaxFrameSize, maxRaw: DefaultMaxDecompressedSize}
	for _, o := range opts {
		if err := o(&l); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
	}
	return &Decoder{lim: l}, nil
}

// Close releases the decoder's resources. It must not be used afterwards.
func (d *Decoder) Close() error {
	d.zonce.Do(func() {}) // no zstd decompressor from now on
	if d.zstd != nil {
		d.zstd.Close()
	}
	return nil
}

// ParseHeader validates the header at the start of b (magic, version,
// kind, flags, lengths against the limits) without looking at the payload.
// The CRC is checked by Decode and Reader.Next, which see the payload.
func (d *Decoder) ParseHeader(b []byte) (Header, error) { return parseHeader(b, d.lim) }

// Decode decodes the frame at the start of src and returns it with the
// number of bytes it took. An uncompressed payload aliases src; a
// compressed one is decompressed into buf, grown if its capacity is short,
// so that a caller that passes the same buf each time stops allocating. If
// src holds less than a whole frame, the error is ErrTruncated.
func (d *Decoder) Decode(src, buf []byte) (Frame, int, error) {
	h, err := parseHeader(src, d.lim)
	if err != nil {
		return Frame{Header: h}, 0, err
	}
	n := HeaderSize + int(h.PayloadLen)
	if len(src) < n {
		return Frame{Header: h}, 0, fmt.Errorf("%w: %d of %d bytes", ErrTruncated, len(src), n)
	}
	f, err := d.finish(h, src[:HeaderSize], src[HeaderSize:n], buf)
	if err != nil {
		return f, 0, err
	}
	return f, n, nil
}

// finish checks the CRC and decompresses the payload into buf.
func (d *Decoder) finish(h Header, hdr, payload, buf []byte) (Frame, error) {
	f := Frame{Header: h}
	if got := crcOf(hdr, payload); got != h.CRC {
		return f, fmt.Errorf("%w: computed %08x, frame says %08x", ErrChecksum, got, h.CRC)
	}
	if h.Kind != KindBatch || h.Compression == None {
		f.Payload = payload
		return f, nil
	}
	raw := int(h.RawLen)
	if cap(buf) < raw {
		buf = make([]byte, 0, raw)
	}
	switch h.Compression {
	case S2:
		n, err := s2.DecodedLen(payload)
		if err != nil {
			return f, fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
		if n != raw {
			return f, fmt.Errorf("%w: s2 payload decodes to %d bytes, frame says %d", ErrCorrupt, n, raw)
		}
		out, err := s2.Decode(buf[:raw], payload)
		if err != nil {
			return f, fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
		f.Payload = out
	case Zstd:
		z, err := d.zstdDecoder()
		if err != nil {
			return f, err
		}
		if raw == 0 {
			return f, fmt.Errorf("%w: zstd payload announces 0 bytes", ErrCorrupt)
		}
		out, err := z.DecodeAll(payload, buf[:0:raw])
		if err != nil {
			return f, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		if len(out) != raw {
			return f, fmt.Errorf("%w: zstd payload decodes to %d bytes, frame says %d", ErrCorrupt, len(out), raw)
		}
		f.Payload = out
	}
	return f, nil
}

func (d *Decoder) zstdDecoder() (*zstd.Decoder, error) {
	d.zonce.Do(func() {
		d.zstd, d.zerr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderMaxMemory(uint64(max(d.lim.maxRaw, 1))), zstd.WithDecoderLowmem(true))
	})
	if d.zstd == nil {
		if d.zerr == nil {
			return nil, errors.New("encoder: decoder closed")
		}
		return nil, fmt.Errorf("encoder: zstd: %w", d.zerr)
	}
	return d.zstd, nil
}

// Reader reads frames one after another from a stream, such as a TCP
// connection, however the stream splits them. It is not safe for concurrent
// use.
type Reader struct {
	br      *bufio.Reader
	d       *Decoder
	hdr     [HeaderSize]byte
	payload []byte
	raw     []byte
	err     error
}

// NewReader returns a Reader of the frames in r, checked by d.
func NewReader(r io.Reader, d *Decoder) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10), d: d}
}

// Next reads and decodes the next frame. Its payload is valid until the next
// call. At the end of the stream between two frames it returns io.EOF; an
// end inside a frame is ErrTruncated. Any error is final: the Reader returns
// it from then on, since the stream has lost its framing.
func (r *Reader) Next() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	f, err := r.next()
	if err != nil {
		r.err = err
	}
	return f, err
}

func (r *Reader) next() (Frame, error) {
	if n, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		if err == io.EOF {
			return Frame{}, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, fmt.Errorf("%w: %d of %d header bytes", ErrTruncated, n, HeaderSize)
		}
		return Frame{}, err
	}
	h, err := parseHeader(r.hdr[:], r.d.lim)
	if err != nil {
		return Frame{Header: h}, err
	}
	n := int(h.PayloadLen)
	if cap(r.payload) < n {
		r.payload = make([]byte, n)
	}
	p := r.payload[:n]
	if got, err := io.ReadFull(r.br, p); err != nil {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{Header: h}, fmt.Errorf("%w: %d of %d payload bytes", ErrTruncated, got, n)
		}
		return Frame{Header: h}, err
	}
	f, err := r.d.finish(h, r.hdr[:], p, r.raw)
	if err == nil && h.Kind == KindBatch && h.Compression != None {
		r.raw = f.Payload[:0]
	}
	return f, err
}
