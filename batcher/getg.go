package batcher

import "github.com/snail-log/snail/internal/goid"

// fastGetg reports whether getg is cheap enough for every entry (a
// register read): lanes need it. ErrReentry works on every architecture.
const fastGetg = goid.Fast

// getg returns the calling goroutine's identity (goid.G): stable for the
// life of the goroutine (the runtime may reuse it for a later goroutine,
// which lanes tolerate).
func getg() uintptr { return goid.G() }
