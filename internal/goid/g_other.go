//go:build !(amd64 || arm64 || 386 || arm || ppc64 || ppc64le || riscv64 || s390x || loong64 || mips || mipsle || mips64 || mips64le)

package goid

import (
	"runtime"
	"strconv"
	"strings"
)

// Fast reports whether G is a read of a register: here it is not. The
// stack trace costs microseconds (the same code measured 2-4 µs a call on
// amd64, 16-20 µs on js/wasm under node), once per batch and per wait.
const Fast = false

// G returns the calling goroutine's id, read from the header of its stack
// trace ("goroutine 42 [running]:"): slow, for the rare waits that need it,
// on architectures without a g register the package reads.
func G() uintptr {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	if i := strings.IndexByte(s, ' '); i > 0 {
		s = s[:i]
	}
	id, _ := strconv.ParseUint(s, 10, 64)
	return uintptr(id)
}
