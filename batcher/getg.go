package batcher

import (
	"runtime"

	"github.com/snail-log/snail/internal/goid"
)

// fastGetg reports whether the batcher takes lanes here: getg must be
// cheap enough for every entry (a register read), and lanes were measured
// with their prefetch on amd64 and arm64 only; elsewhere the shared tail
// serves. ErrReentry works on every architecture.
const fastGetg = goid.Fast && (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64")

// getg returns the calling goroutine's identity (goid.G): stable for the
// life of the goroutine (the runtime may reuse it for a later goroutine,
// which lanes tolerate).
func getg() uintptr { return goid.G() }
