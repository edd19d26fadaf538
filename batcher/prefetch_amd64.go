package batcher

func cpuPrefetchW() bool

// havePrefetch reports whether prefetchWrite may be called.
var havePrefetch = cpuPrefetchW()
