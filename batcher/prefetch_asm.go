//go:build amd64 || arm64

package batcher

// prefetchWrite asks the core to fetch, for writing, the 512 bytes from
// addr: the space its lane's next entries will most likely be copied into.
// Half as far ahead left the copy waiting on those lines when the output
// had just read the buffer on the other core (a file write): addLane took
// 13.7% of the CPU of zerolog + snail into a file, against 5.5%.
// A hint only: it never faults and reads nothing through addr. Call it
// only if havePrefetch.
func prefetchWrite(addr uintptr)
