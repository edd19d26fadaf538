#include "textflag.h"

// PREFETCHW (AX), which the Go assembler does not name: 0F 0D /1.
#define PREFETCHW_AX BYTE $0x0F; BYTE $0x0D; BYTE $0x08

// func prefetchWrite(addr uintptr)
TEXT ·prefetchWrite(SB), NOSPLIT, $0-8
	MOVQ addr+0(FP), AX
	PREFETCHW_AX
	ADDQ $64, AX
	PREFETCHW_AX
	ADDQ $64, AX
	PREFETCHW_AX
	ADDQ $64, AX
	PREFETCHW_AX
	RET
