package batcher

import "github.com/snail-log/snail/internal/goid"

// haveGetg reports whether getg works on this architecture: lanes and
// ErrReentry need it.
const haveGetg = goid.Supported

// getg returns the calling goroutine's identity (goid.G): stable for the
// life of the goroutine (the runtime may reuse it for a later goroutine,
// which lanes tolerate).
func getg() uintptr { return goid.G() }
