//go:build !race

#include "textflag.h"

// func storeOrdered(addr *uint32, v uint32)
TEXT ·storeOrdered(SB), NOSPLIT, $0-12
	MOVQ addr+0(FP), AX
	MOVL v+8(FP), BX
	MOVL BX, (AX)
	RET
