// Package batcher gathers items from many goroutines into large batches and
// hands each batch, in order, to a single output function.
//
// A batch leaves when it is full, when its time window (measured from its
// first item) has passed, or on an explicit Flush. Batches are built in a
// small ring of preallocated buffers (three by default: triple buffering), so
// producers keep filling the next buffer while the output function is busy
// with the previous one.
//
// # How producers claim space
//
// The hot path takes no lock. A producer claims a slot (or a byte range) in
// the current buffer with one atomic add on the buffer's tail, copies its item
// in, and publishes it with one atomic add on a commit counter that shares
// the tail's cache line, in the manner of Aeron's log buffers. The producer
// whose claim fills the buffer (or crosses its end) seals it and installs
// the next free buffer; the output goroutine waits until the commit counter
// matches the claims before it reads a batch. A mutex is taken only once per
// batch, never per item.
//
// On a machine with few cores, the tail's cache line moving between cores
// costs more than the claim itself. When producers collide, a read-mostly
// hint (the cohort, see WithCohort) makes those on the other core yield a
// few times before they claim, so that claims come from one core in runs.
//
// Producers that do other work between claims (loggers encoding entries)
// do better with lanes (see WithLanes, Bytes only): each P fills chunks of
// the buffer of its own, so producers on different cores never share a
// cache line, and each goroutine stays in one lane for a whole batch so
// that its order holds when the scheduler moves it between cores. There an
// entry is counted as copied with an ordered store rather than a locked
// add, as Aeron publishes an entry's length.
//
// # Back-pressure and memory
//
// Memory is bounded by the number of buffers times the batch size. The
// buffers are made by New; with [WithMaxBuffers] the batcher makes more, up
// to that count, when a batch is full and none is free, rather than make
// producers wait, and gives back those a whole period of [WithShrinkAfter]
// (a minute) did not need. When every buffer is full and the output
// is slow, the overflow policy decides: [Block] (the default) makes
// producers wait; [DropNewest] makes them return [ErrDropped] at once and
// counts the item as dropped.
//
// Two batchers share the same machinery: [Batcher] for values of any type, and
// [Bytes], which copies byte entries (log lines) into contiguous buffers so
// that a batch leaves as one []byte, ready for one write() or one frame.
package batcher
