//go:build !amd64 && !arm64

package goid

// Supported reports whether G works on this architecture.
const Supported = false

// G returns 0: no identity here.
func G() uintptr { return 0 }
