package encoder

import "errors"

// Errors returned by the decoder and the encoder. Each is wrapped with
// detail; test for them with errors.Is.
var (
	// ErrBadMagic: the frame does not start with "SNLF". The stream is not
	// snail frames, or it lost its framing.
	ErrBadMagic = errors.New("encoder: bad magic")
	// ErrVersion: the frame's version is not one this package reads.
	ErrVersion = errors.New("encoder: unsupported version")
	// ErrKind: the frame kind is unknown.
	ErrKind = errors.New("encoder: unknown frame kind")
	// ErrFlags: unknown flag bits, or an invalid compression code.
	ErrFlags = errors.New("encoder: invalid flags")
	// ErrFrameTooLarge: the payload length is over the maximum frame size
	// (or, when encoding, over what a frame can carry).
	ErrFrameTooLarge = errors.New("encoder: frame too large")
	// ErrDecompressedTooLarge: the announced uncompressed length is over the
	// maximum decompressed size.
	ErrDecompressedTooLarge = errors.New("encoder: decompressed size too large")
	// ErrChecksum: the CRC-32C over header and payload does not match.
	ErrChecksum = errors.New("encoder: checksum mismatch")
	// ErrTruncated: the input ended inside a frame.
	ErrTruncated = errors.New("encoder: truncated frame")
	// ErrCorrupt: the header's fields contradict each other, or the payload
	// does not decompress to its announced length. The decompressor's own
	// error is kept as text only: a compressed payload cut short inside a
	// whole frame is corrupt, not an end of input, and must not match
	// io.ErrUnexpectedEOF, which readers take for a connection that ended
	// mid-frame.
	ErrCorrupt = errors.New("encoder: corrupt frame")
	// ErrInvalidOption wraps every configuration error of NewEncoder and
	// NewDecoder.
	ErrInvalidOption = errors.New("encoder: invalid option")
)
