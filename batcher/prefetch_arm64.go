package batcher

// havePrefetch reports whether prefetchWrite may be called: PRFM is part
// of every arm64 core.
const havePrefetch = true
