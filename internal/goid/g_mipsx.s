//go:build mips || mipsle

#include "textflag.h"

// func G() uintptr
TEXT ·G(SB), NOSPLIT, $0-4
	MOVW g, R1
	MOVW R1, ret+0(FP)
	RET
