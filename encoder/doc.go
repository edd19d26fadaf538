// Package encoder implements snail's frame format: the binary envelope in
// which batches of log entries travel to a collector, and acks travel back.
//
// A frame is a 40-byte header (magic, version, kind, flags, stream id,
// sequence number, entry count, lengths, CRC-32C) followed by the payload,
// optionally compressed with S2 or zstd. FORMAT.md in this directory
// describes it byte by byte.
//
// Encoding appends to a caller's buffer and does not allocate in steady
// state: an Encoder keeps its compressors for reuse. For uncompressed
// batches, AppendBatchHeader computes the header alone, so that the header
// and the caller's batch can leave in one vectored write with no copy.
//
// Decoding validates everything it can before it allocates or decompresses:
// lengths against configured limits (a zip bomb gets ErrDecompressedTooLarge),
// then the checksum, then the compressed payload, which must decode to exactly
// its announced size. Every failure is one of the sentinel errors in
// errors.go, wrapped with detail. A Reader decodes a stream of frames that
// arrive split at any byte.
package encoder
