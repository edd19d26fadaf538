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
	// ErrInvalidOption wraps every configuration error returned by New and
	// NewBytes.
	ErrInvalidOption = errors.New("batcher: invalid option")
)
