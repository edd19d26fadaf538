#include "textflag.h"

// PREFETCHW (AX), which the Go assembler does not name: 0F 0D /1.
#define PREFETCHW_AX BYTE $0x0F; BYTE $0x0D; BYTE $0x08

// func prefetchWrite(addr uintptr): the 8 cache lines from addr.
TEXT ·prefetchWrite(SB), NOSPLIT, $0-8
	MOVQ addr+0(FP), AX
	MOVQ $8, CX
next:
	PREFETCHW_AX
	ADDQ $64, AX
	DECQ CX
	JNZ  next
	RET

// func cpuPrefetchW() bool: CPUID 0x80000001, ECX bit 8 (PRFCHW). CPUs
// without it (Intel before Broadwell) may not take PREFETCHW.
TEXT ·cpuPrefetchW(SB), NOSPLIT, $0-1
	MOVL $0x80000000, AX
	XORL CX, CX
	CPUID
	CMPL AX, $0x80000001
	JB   none
	MOVL $0x80000001, AX
	XORL CX, CX
	CPUID
	SHRL $8, CX
	ANDL $1, CX
	MOVB CX, ret+0(FP)
	RET
none:
	MOVB $0, ret+0(FP)
	RET
