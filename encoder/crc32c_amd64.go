package encoder

import "golang.org/x/sys/cpu"

// haveFold reports whether foldAVX512 may be called: it folds with AVX-512
// and finishes with SSE 4.2's CRC32 instruction.
var haveFold = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VPCLMULQDQ && cpu.X86.HasSSE42

// foldAVX512 folds p, a multiple of 256 bytes and at least 256, into state:
// 256 bytes congruent to p, with r xored into its first four bytes, modulo
// the CRC-32C polynomial. It returns the CRC register after state, from
// zero: the register after p from r. k is foldConsts.
//
//go:noescape
func foldAVX512(r uint32, p []byte, state *[256]byte, k *[2]uint64) uint32
