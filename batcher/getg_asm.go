//go:build amd64 || arm64

package batcher

// haveGetg reports whether getg works on this architecture; lanes need it.
const haveGetg = true

// getg returns the address of the calling goroutine's descriptor: a cheap
// identity, stable for the life of the goroutine (the runtime may reuse it
// for a later goroutine, which lanes tolerate). It is an identity only;
// nothing is read through it.
func getg() uintptr

// prefetchWrite asks the core to fetch, for writing, the 256 bytes from
// addr: the space its lane's next entry will most likely be copied into.
// A hint only: it never faults and reads nothing through addr.
func prefetchWrite(addr uintptr)
