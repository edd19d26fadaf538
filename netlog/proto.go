package netlog

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/snail-log/snail/encoder"
)

// The log protocol. Every message is a frame of the encoder's format.
//
//	client                                   collector
//	Hello (stream id, name, token)   ---->
//	                                 <----   Welcome (status, highest seq written)
//	Batch seq 1, 2, 3 ...            ---->
//	Ping (when idle)                 ---->
//	                                 <----   Ack (first..last, status)
//	                                 <----   Goodbye (status, reason), then close
//
// The client numbers batches 1, 2, 3... within its stream id and sends them
// in order; after a reconnect it sends every unacked batch again, in order.
// The collector writes a batch only if its sequence number is above the
// highest it has written for that stream id, and acks it either way, so a
// batch sent twice is written once.
const (
	// KindHello opens a connection. Header: stream id. Payload: protocol
	// version (uint16), stream name (uint16 length + bytes), token (uint16
	// length + bytes).
	KindHello encoder.Kind = 3
	// KindWelcome answers Hello. Header: flags = status, stream id, seq =
	// the highest sequence number written for the stream id (0 if none),
	// last seq = the frame limits. Payload: the reason when the status is
	// not ok; when it is ok, the idle timeout in milliseconds (uint32),
	// or nothing.
	KindWelcome encoder.Kind = 4
	// KindPing keeps an idle connection open. No payload, no answer.
	KindPing encoder.Kind = 5
	// KindGoodbye tells why the collector closes the connection. Header:
	// flags = status. Payload: the reason.
	KindGoodbye encoder.Kind = 6
)

// ProtocolVersion is the log protocol's version, sent in Hello.
const ProtocolVersion = 1

// Limits of the handshake.
const (
	MaxStreamName = 128
	MaxTokenLen   = 1024
	maxHello      = 2 + 2 + MaxStreamName + 2 + MaxTokenLen
)

// Hello is the first message of a connection.
type Hello struct {
	Version  uint16
	StreamID uint64 // chosen by the client, stable for its life; never 0
	Name     string // output stream name
	Token    string // shared secret, may be empty
}

// AppendHello appends h as a Hello frame.
func AppendHello(dst []byte, h Hello) ([]byte, error) {
	if err := CheckStreamName(h.Name); err != nil {
		return dst, err
	}
	if len(h.Token) > MaxTokenLen {
		return dst, fmt.Errorf("%w: token of %d bytes, at most %d", ErrInvalidOption, len(h.Token), MaxTokenLen)
	}
	p := make([]byte, 0, 6+len(h.Name)+len(h.Token))
	p = binary.LittleEndian.AppendUint16(p, h.Version)
	p = binary.LittleEndian.AppendUint16(p, uint16(len(h.Name)))
	p = append(p, h.Name...)
	p = binary.LittleEndian.AppendUint16(p, uint16(len(h.Token)))
	p = append(p, h.Token...)
	return encoder.AppendControl(dst, KindHello, 0, h.StreamID, 0, 0, p)
}

// ParseHello decodes a Hello frame. It checks the layout, not the values:
// the version, name and token are the server's to judge.
func ParseHello(f encoder.Frame) (Hello, error) {
	if f.Kind != KindHello {
		return Hello{}, fmt.Errorf("%w: expected hello, got %v", ErrProtocol, f.Kind)
	}
	p := f.Payload
	if len(p) > maxHello {
		return Hello{}, fmt.Errorf("%w: hello of %d bytes, at most %d", ErrProtocol, len(p), maxHello)
	}
	h := Hello{StreamID: f.Stream}
	if h.StreamID == 0 {
		// Clients never choose it; a collector keeps 0 for its own
		// records of a file.
		return h, fmt.Errorf("%w: hello: stream id 0", ErrProtocol)
	}
	if len(p) < 2 {
		return h, fmt.Errorf("%w: hello too short", ErrProtocol)
	}
	h.Version = binary.LittleEndian.Uint16(p)
	p = p[2:]
	name, p, ok := cut16(p)
	if !ok || len(name) > MaxStreamName {
		return h, fmt.Errorf("%w: hello: bad stream name field", ErrProtocol)
	}
	token, p, ok := cut16(p)
	if !ok || len(token) > MaxTokenLen {
		return h, fmt.Errorf("%w: hello: bad token field", ErrProtocol)
	}
	if len(p) != 0 {
		return h, fmt.Errorf("%w: hello: %d trailing bytes", ErrProtocol, len(p))
	}
	h.Name, h.Token = string(name), string(token)
	return h, nil
}

func cut16(p []byte) (field, rest []byte, ok bool) {
	if len(p) < 2 {
		return nil, p, false
	}
	n := int(binary.LittleEndian.Uint16(p))
	if len(p) < 2+n {
		return nil, p, false
	}
	return p[2 : 2+n], p[2+n:], true
}

// CheckStreamName reports whether name may name a stream: 1 to 128 bytes of
// letters, digits, '.', '_' and '-', starting with a letter or a digit (as
// Docker's container names). The collector writes a stream to a file of
// that name, so the rule keeps out path separators, "..", hidden files,
// control characters, and names an operator's shell would take for options
// ("-f.log").
func CheckStreamName(name string) error {
	if name == "" || len(name) > MaxStreamName {
		return fmt.Errorf("%w: stream name of %d bytes, want 1 to %d", ErrInvalidOption, len(name), MaxStreamName)
	}
	for i, r := range name {
		switch {
		case 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9':
		case i == 0:
			return fmt.Errorf("%w: stream name %q starts with %q (want a letter or a digit)", ErrInvalidOption, name, r)
		case r != '.' && r != '_' && r != '-':
			return fmt.Errorf("%w: stream name %q: %q not allowed (letters, digits, '.', '_', '-')", ErrInvalidOption, name, r)
		}
	}
	return nil
}

// Welcome is the collector's answer to a Hello.
type Welcome struct {
	Status  encoder.Status
	Reason  string // why, when Status is not ok
	Stream  uint64 // the client's stream id
	Written uint64 // the highest sequence number written for Stream (0: none)
	// MaxFrame and MaxRaw are the collector's frame limits (payload as
	// sent, and decompressed), so that the client cuts its batches to
	// fit; 0 says nothing of them.
	MaxFrame, MaxRaw uint32
	// Idle is the collector's idle timeout, so that the client pings
	// well within it (a collector run with one below the client's
	// keep-alive would close every quiet connection); 0 says nothing.
	Idle time.Duration
}

// AppendWelcome appends w as a Welcome frame.
func AppendWelcome(dst []byte, w Welcome) []byte {
	var payload []byte
	if w.Status != encoder.StatusOK {
		payload = []byte(w.Reason[:min(len(w.Reason), encoder.MaxAckReason)])
	} else if w.Idle > 0 {
		ms := min(max(w.Idle.Milliseconds(), 1), math.MaxUint32)
		payload = binary.LittleEndian.AppendUint32(nil, uint32(ms))
	}
	out, _ := encoder.AppendControl(dst, KindWelcome, uint16(w.Status), w.Stream, w.Written, uint64(w.MaxFrame)<<32|uint64(w.MaxRaw), payload)
	return out
}

// ParseWelcome reads a Welcome from its frame. An ok Welcome's payload
// shorter than 4 bytes says nothing of the idle timeout (the collectors
// before 2026-11-27 sent none); bytes past the first 4 are left for later
// versions.
func ParseWelcome(f encoder.Frame) (Welcome, error) {
	if f.Kind != KindWelcome {
		return Welcome{}, fmt.Errorf("%w: expected welcome, got %v", ErrProtocol, f.Kind)
	}
	w := Welcome{Status: encoder.Status(f.Flags), Stream: f.Stream, Written: f.Seq,
		MaxFrame: uint32(f.LastSeq >> 32), MaxRaw: uint32(f.LastSeq)}
	if w.Status != encoder.StatusOK {
		w.Reason = string(f.Payload)
	} else if len(f.Payload) >= 4 {
		w.Idle = time.Duration(binary.LittleEndian.Uint32(f.Payload)) * time.Millisecond
	}
	return w, nil
}

// AppendGoodbye appends the message a collector sends before it closes a
// connection for a reason.
func AppendGoodbye(dst []byte, status encoder.Status, reason string) []byte {
	return AppendRefusal(dst, 0, 0, 0, 0, status, reason)
}

// AppendRefusal appends a goodbye that names the batch (stream, seq) it is
// for, one the collector can never take: sent again it would fail the same
// way, so its client gives it up instead of sending it again on every
// connection. With maxFrame and maxRaw 0 the collector checked the frame
// whole (its CRC held) and it cannot be decoded. Otherwise the frame was
// over those limits (payload as sent, and decompressed) by its header
// alone, which nothing checked yet: the client gives the batch up only if
// its own copy is over them too, and otherwise takes the goodbye for a
// header damaged on the way.
func AppendRefusal(dst []byte, stream, seq uint64, maxFrame, maxRaw uint32, status encoder.Status, reason string) []byte {
	if len(reason) > encoder.MaxAckReason {
		reason = reason[:encoder.MaxAckReason]
	}
	out, _ := encoder.AppendControl(dst, KindGoodbye, uint16(status), stream, seq, uint64(maxFrame)<<32|uint64(maxRaw), []byte(reason))
	return out
}

// AppendPing appends a keep-alive frame.
func AppendPing(dst []byte) []byte {
	out, _ := encoder.AppendControl(dst, KindPing, 0, 0, 0, 0, nil)
	return out
}

// StatusError is the error of a request or handshake the collector
// refused: its status code and reason. It wraps ErrRejected.
type StatusError struct {
	Status encoder.Status
	Reason string
}

func (e *StatusError) Error() string {
	what := "netlog: rejected: " + e.Status.String()
	if e.Status == encoder.StatusShuttingDown {
		what = "netlog: the collector is shutting down" // not a refusal of anything
	}
	if e.Reason == "" {
		return what
	}
	return what + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrRejected) true.
func (e *StatusError) Unwrap() error { return ErrRejected }

// Retryable reports whether the refusal is temporary (the collector could
// not write, or is stopping): the batch is sent again on a new connection.
func (e *StatusError) Retryable() bool {
	switch e.Status {
	case encoder.StatusBadFrame, encoder.StatusTooLarge, encoder.StatusUnauthorized, encoder.StatusBadStream:
		return false
	}
	return true // unavailable, shutting down, and codes this version does not know
}
