//go:build amd64 || arm64

package batcher

// haveGetg reports whether getg works on this architecture; lanes need it.
const haveGetg = true

// getg returns the address of the calling goroutine's descriptor: a cheap
// identity, stable for the life of the goroutine (the runtime may reuse it
// for a later goroutine, which lanes tolerate). It is an identity only;
// nothing is read through it.
func getg() uintptr
