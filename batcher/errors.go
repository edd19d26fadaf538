package batcher

import "errors"

// Errors returned by batchers. Test for them with errors.Is.
var (
	// ErrClosed is returned by Add, Write and Flush once Close has been called.
	ErrClosed = errors.New("batcher: closed")
	// ErrDropped is returned when the DropNewest policy (or TryAdd/TryWrite)
	// dropped an item because every buffer was full. The item is counted in
	// Stats.Dropped.
	ErrDropped = errors.New("batcher: dropped, all buffers full")
	// ErrReentry is returned by Add, Write and Flush when they are called
	// from the output function (or from a function it calls, such as an
	// error handler that logs) and would have to wait for the output to
	// finish: for a free buffer, for an entry too big for one, or for a
	// Flush. Only that goroutine could end the wait, so it would wait
	// forever. It needs getg (amd64, arm64); elsewhere such a call hangs.
	ErrReentry = errors.New("batcher: called from the output function, and would wait for it")
	// errOutputPanicked is reported by Flush and Close for a batch whose
	// output function panicked in a goroutine that recovered.
	errOutputPanicked = errors.New("batcher: the output function panicked")
	// ErrInvalidOption wraps every configuration error returned by New and
	// NewBytes.
	ErrInvalidOption = errors.New("batcher: invalid option")
)
