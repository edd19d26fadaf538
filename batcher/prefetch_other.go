//go:build !amd64 && !arm64

package batcher

const havePrefetch = false

func prefetchWrite(uintptr) {}
