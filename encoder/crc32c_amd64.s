#include "textflag.h"

// FOLD moves the four lanes of acc 2048 bits on (Z4 holds the constants)
// and xors in the 64 bytes at off(SI); tmp is scratch.
#define FOLD(acc, tmp, off) \
	VPCLMULQDQ $0x00, Z4, acc, tmp; \
	VPCLMULQDQ $0x11, Z4, acc, acc; \
	VPTERNLOGQ $0x96, off(SI), tmp, acc

// func foldAVX512(r uint32, p []byte, state *[256]byte, k *[2]uint64) uint32
//
// Z0-Z3 hold 256 bytes of state, sixteen 128-bit lanes. Each round moves
// every lane 2048 bits on, by multiplying its two 64-bit halves by the
// constants in Z4, and xors in the next 256 bytes of p. The state is then
// stored and run through the CRC32 instruction (which computes CRC-32C)
// from a zero register.
TEXT ·foldAVX512(SB), NOSPLIT, $0-52
	MOVL r+0(FP), AX
	MOVQ p_base+8(FP), SI
	MOVQ p_len+16(FP), CX
	MOVQ state+32(FP), DI
	MOVQ k+40(FP), DX

	VMOVDQU64 0(SI), Z0
	VMOVDQU64 64(SI), Z1
	VMOVDQU64 128(SI), Z2
	VMOVDQU64 192(SI), Z3
	VMOVD AX, X5 // zeroes the rest of Z5
	VPXORQ Z5, Z0, Z0
	VBROADCASTI32X4 (DX), Z4
	ADDQ $256, SI
	SUBQ $256, CX

loop:
	CMPQ CX, $256
	JB   done
	FOLD(Z0, Z5, 0)
	FOLD(Z1, Z6, 64)
	FOLD(Z2, Z7, 128)
	FOLD(Z3, Z8, 192)
	ADDQ $256, SI
	SUBQ $256, CX
	JMP  loop

done:
	VMOVDQU64 Z0, 0(DI)
	VMOVDQU64 Z1, 64(DI)
	VMOVDQU64 Z2, 128(DI)
	VMOVDQU64 Z3, 192(DI)
	VZEROUPPER

	XORL AX, AX
	MOVQ $32, CX

crc:
	CRC32Q (DI), AX
	ADDQ   $8, DI
	DECQ   CX
	JNZ    crc
	MOVL   AX, ret+48(FP)
	RET
