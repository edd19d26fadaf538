#include "textflag.h"

// func G() uintptr
TEXT ·G(SB), NOSPLIT, $0-8
	MOV g, A0
	MOV A0, ret+0(FP)
	RET
