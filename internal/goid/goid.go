// Package goid gives the calling goroutine a cheap identity: the address of
// its runtime descriptor, read from the g register (amd64, arm64). snail
// uses it where a goroutine must know it is the one a wait depends on: the
// batcher's output goroutine writing into its own batcher, a netlog
// response callback sending with the window full. Nothing is read through
// the address, and the runtime may reuse it for a later goroutine.
package goid
