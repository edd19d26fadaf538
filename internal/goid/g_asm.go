//go:build amd64 || arm64

package goid

// Supported reports whether G works on this architecture.
const Supported = true

// G returns the address of the calling goroutine's descriptor: an
// identity, stable for the life of the goroutine.
func G() uintptr
