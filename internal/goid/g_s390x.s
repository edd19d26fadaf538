#include "textflag.h"

// func G() uintptr
TEXT ·G(SB), NOSPLIT, $0-8
	MOVD g, R1
	MOVD R1, ret+0(FP)
	RET
