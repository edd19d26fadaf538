package encoder

import "hash/crc32"

// castagnoli is the table of the frame checksum, CRC-32C.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// foldMin is the shortest input crc32c folds with vector instructions: below
// it, the setup costs more than the standard library's loop.
const foldMin = 2048

// crc32c updates crc with p as crc32.Update does with the Castagnoli table.
// Where the CPU has AVX-512 carry-less multiplication it folds all but the
// last partial 256 bytes of a long input in 512-bit registers first, 2-3.5x
// as fast as the standard library's SSE 4.2 loop (BenchmarkCRC32C): the
// checksum is on every frame's path twice (the client computes it over the
// whole batch, the collector verifies it).
func crc32c(crc uint32, p []byte) uint32 {
	if !haveFold || len(p) < foldMin {
		return crc32.Update(crc, castagnoli, p)
	}
	n := len(p) &^ 255
	// The state is congruent to p[:n] (with the register folded into its
	// first four bytes) modulo the CRC polynomial, at the same distance
	// from the end: the CRC of state, from a zero register, is that of
	// p[:n]. It stays in the assembly: handed to hash/crc32, it would
	// escape to the heap.
	var state [256]byte
	reg := foldAVX512(^crc, p[:n], &state, &foldConsts)
	return crc32.Update(^reg, castagnoli, p[n:])
}

// foldConsts hold, for each 128-bit lane, the multipliers that move its two
// 64-bit halves 2048 bits (256 bytes) further along the message: x^(2048+64)
// for the first half in memory (the higher powers: the CRC is bit-reflected)
// and x^2048 for the second, modulo the CRC-32C polynomial, each divided by
// x^33, which the reflected carry-less product multiplies back in.
var foldConsts = [2]uint64{xPowMod(2048 + 64 - 33), xPowMod(2048 - 33)}

// xPowMod returns x^n modulo the CRC-32C polynomial, bit-reflected as the
// CRC's register holds it (bit 31 is x^0).
func xPowMod(n int) uint64 {
	v := uint32(1 << 31)
	for range n {
		if v&1 != 0 {
			v = v>>1 ^ crc32.Castagnoli
		} else {
			v >>= 1
		}
	}
	return uint64(v)
}
