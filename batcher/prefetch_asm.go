//go:build amd64 || arm64

package batcher

// prefetchWrite asks the core to fetch, for writing, the 256 bytes from
// addr: the space its lane's next entry will most likely be copied into.
// A hint only: it never faults and reads nothing through addr. Call it
// only if havePrefetch.
func prefetchWrite(addr uintptr)
