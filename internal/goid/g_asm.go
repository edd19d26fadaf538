//go:build amd64 || arm64 || 386 || arm || ppc64 || ppc64le || riscv64 || s390x || loong64 || mips || mipsle || mips64 || mips64le

package goid

// Fast reports whether G is a read of a register: cheap enough for every
// entry (the batcher's lanes).
const Fast = true

// G returns the address of the calling goroutine's descriptor: an
// identity, stable for the life of the goroutine.
func G() uintptr
