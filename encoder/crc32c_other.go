//go:build !amd64

package encoder

const haveFold = false

func foldAVX512(uint32, []byte, *[256]byte, *[2]uint64) uint32 { panic("unreachable") }
