//go:build !amd64 || race

package batcher

import "sync/atomic"

// storeOrdered stores v at addr as a release store: sync/atomic's Store
// (on arm64 STLR, which costs no more). Under the race detector it is the
// synchronisation the detector sees.
func storeOrdered(addr *uint32, v uint32) { atomic.StoreUint32(addr, v) }
