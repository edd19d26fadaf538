//go:build !amd64 && !arm64

package batcher

// Without getg there are no lanes: WithLanes is ignored.
const haveGetg = false

func getg() uintptr { return 0 }

const havePrefetch = false

func prefetchWrite(uintptr) {}
