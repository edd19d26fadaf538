//go:build !race

package batcher

// storeOrdered stores v at addr, after every store that comes before it in
// program order: a release store. On amd64 a plain store is one (the
// processor keeps stores in order), where sync/atomic's Store is an XCHG,
// a locked instruction. It is in assembly so that the compiler does not
// move it, nor treat it as the data race it would be in Go. Loads of addr
// use sync/atomic.
//
//go:noescape
func storeOrdered(addr *uint32, v uint32)
