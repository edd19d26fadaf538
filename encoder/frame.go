package encoder

import (
	"encoding/binary"
	"fmt"
)

// HeaderSize is the size of every frame header.
const HeaderSize = 40

// Version is the frame format version this package writes and reads.
const Version = 1

// Limits of the format and defaults of the decoder.
const (
	// MaxPayload is the largest payload a frame can carry (its length field
	// is 32 bits).
	MaxPayload = 1<<32 - 1
	// MaxAckReason is the most reason text an ack carries.
	MaxAckReason = 4096
	// DefaultMaxFrameSize is the decoder's default limit on a payload as
	// sent: 16 MiB, four times snail's largest default batch.
	DefaultMaxFrameSize = 16 << 20
	// DefaultMaxDecompressedSize is the decoder's default limit on a
	// payload after decompression: 64 MiB.
	DefaultMaxDecompressedSize = 64 << 20
)

// Magic is the four bytes every frame begins with: a reader that finds
// others at the start of a stream knows at once it is not snail's.
const Magic = "SNLF"

var magic = [4]byte{Magic[0], Magic[1], Magic[2], Magic[3]}

// Kind says what a frame carries.
type Kind uint8

// Frame kinds. Kinds 3 to 15 are reserved for netlog's control frames.
const (
	KindBatch Kind = 1
	KindAck   Kind = 2
	// MaxKind is the highest kind a decoder accepts; kinds above KindAck are
	// passed to the caller undecoded.
	MaxKind Kind = 15
)

func (k Kind) String() string {
	switch k {
	case KindBatch:
		return "batch"
	case KindAck:
		return "ack"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Compression is the codec of a batch payload.
type Compression uint8

// Compression codecs.
const (
	None Compression = 0
	S2   Compression = 1 // S2 block format (github.com/klauspost/compress/s2)
	Zstd Compression = 2 // one zstd frame
)

func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case S2:
		return "s2"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// ParseCompression maps "none", "s2" and "zstd" to their Compression.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "none", "":
		return None, nil
	case "s2":
		return S2, nil
	case "zstd":
		return Zstd, nil
	}
	return 0, fmt.Errorf("%w: unknown compression %q (want none, s2 or zstd)", ErrInvalidOption, s)
}

// Status is an ack's status code.
type Status uint16

// Ack status codes. A client treats an unknown code as StatusUnavailable.
const (
	StatusOK           Status = 0
	StatusBadFrame     Status = 1
	StatusTooLarge     Status = 2
	StatusUnauthorized Status = 3
	StatusBadStream    Status = 4
	StatusUnavailable  Status = 5
	StatusShuttingDown Status = 6
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusBadFrame:
		return "bad frame"
	case StatusTooLarge:
		return "too large"
	case StatusUnauthorized:
		return "unauthorized"
	case StatusBadStream:
		return "bad stream"
	case StatusUnavailable:
		return "unavailable"
	case StatusShuttingDown:
		return "shutting down"
	}
	return fmt.Sprintf("status(%d)", uint16(s))
}

// Header is a decoded frame header. Which fields mean something depends on
// Kind: batches use Compression, Seq, Entries and RawLen; acks use Status,
// Seq (the first sequence acked) and LastSeq; control kinds (3 to 15) use
// Flags, Seq and LastSeq (header bytes 24 to 31) as their definition says.
type Header struct {
	Kind        Kind
	Compression Compression
	Flags       uint16 // raw flags (batch) or status (ack); other kinds
	Status      Status
	Stream      uint64
	Seq         uint64
	LastSeq     uint64
	Entries     uint32
	RawLen      uint32
	PayloadLen  uint32
	CRC         uint32
}

// putHeader writes the fixed fields of a header into b[:HeaderSize],
// without the CRC.
func putHeader(b []byte, kind Kind, flags uint16, stream, seq, word3 uint64, payloadLen uint32) {
	_ = b[HeaderSize-1]
	copy(b[0:4], magic[:])
	b[4] = Version
	b[5] = byte(kind)
	binary.LittleEndian.PutUint16(b[6:], flags)
	binary.LittleEndian.PutUint64(b[8:], stream)
	binary.LittleEndian.PutUint64(b[16:], seq)
	binary.LittleEndian.PutUint64(b[24:], word3)
	binary.LittleEndian.PutUint32(b[32:], payloadLen)
}

// crcOf is the frame checksum: CRC-32C of header bytes 0..35, then payload.
func crcOf(hdr, payload []byte) uint32 {
	return crc32c(crc32c(0, hdr[:36]), payload)
}

// limits are what a decoder accepts.
type limits struct {
	maxFrame int
	maxRaw   int
}

// parseHeader validates the fixed fields of b[:HeaderSize] against the
// format and the limits (steps 2 and 3 of FORMAT.md). The CRC is not checked
// here: it covers the payload too.
func parseHeader(b []byte, l limits) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d of %d header bytes", ErrTruncated, len(b), HeaderSize)
	}
	if [4]byte(b[0:4]) != magic {
		return Header{}, fmt.Errorf("%w: % x", ErrBadMagic, b[0:4])
	}
	if b[4] != Version {
		return Header{}, fmt.Errorf("%w: version %d, want %d", ErrVersion, b[4], Version)
	}
	h := Header{
		Kind:       Kind(b[5]),
		Flags:      binary.LittleEndian.Uint16(b[6:]),
		Stream:     binary.LittleEndian.Uint64(b[8:]),
		Seq:        binary.LittleEndian.Uint64(b[16:]),
		PayloadLen: binary.LittleEndian.Uint32(b[32:]),
		CRC:        binary.LittleEndian.Uint32(b[36:]),
	}
	if h.Kind == 0 || h.Kind > MaxKind {
		return h, fmt.Errorf("%w: %d", ErrKind, b[5])
	}
	if int64(h.PayloadLen) > int64(l.maxFrame) {
		return h, fmt.Errorf("%w: payload of %d bytes, limit %d", ErrFrameTooLarge, h.PayloadLen, l.maxFrame)
	}
	switch h.Kind {
	case KindBatch:
		h.Entries = binary.LittleEndian.Uint32(b[24:])
		h.RawLen = binary.LittleEndian.Uint32(b[28:])
		if h.Flags&^3 != 0 || h.Flags&3 == 3 {
			return h, fmt.Errorf("%w: 0x%04x", ErrFlags, h.Flags)
		}
		h.Compression = Compression(h.Flags & 3)
		if int64(h.RawLen) > int64(l.maxRaw) {
			return h, fmt.Errorf("%w: %d bytes, limit %d", ErrDecompressedTooLarge, h.RawLen, l.maxRaw)
		}
		if h.Compression == None && h.RawLen != h.PayloadLen {
			return h, fmt.Errorf("%w: uncompressed payload of %d bytes announces %d", ErrCorrupt, h.PayloadLen, h.RawLen)
		}
	case KindAck:
		h.Status = Status(h.Flags)
		h.LastSeq = binary.LittleEndian.Uint64(b[24:])
		if h.LastSeq < h.Seq {
			return h, fmt.Errorf("%w: ack range %d..%d", ErrCorrupt, h.Seq, h.LastSeq)
		}
		if h.PayloadLen > MaxAckReason {
			return h, fmt.Errorf("%w: ack reason of %d bytes, limit %d", ErrFrameTooLarge, h.PayloadLen, MaxAckReason)
		}
	default: // control kinds
		h.LastSeq = binary.LittleEndian.Uint64(b[24:])
	}
	return h, nil
}
