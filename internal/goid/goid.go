// Package goid gives the calling goroutine an identity: the address of its
// runtime descriptor, read from the g register (a few instructions of
// assembly on amd64, arm64, 386, arm, ppc64, riscv64, s390x, loong64 and
// mips), or elsewhere its id, read from its stack trace (slowly). snail
// uses it where a goroutine must know it is the one a wait depends on: the
// batcher's output goroutine writing into its own batcher, a netlog
// response callback sending with the window full; and, where it is Fast,
// to give each goroutine its lane. Nothing is read through the address,
// and the runtime may reuse it for a later goroutine.
package goid
