// Package netlog carries snail's batches over TCP.
//
// It has two layers. The core is a generic request-response client and
// server (Client and Server) over typed requests and responses and
// pluggable codecs:
//
//   - On the client, any number of goroutines Send requests; a batcher
//     gathers them so that many leave in one vectored write (fan-in). Each
//     request gets an id as it leaves; responses name the ids they answer
//     (one response may answer a range) and may come back in any order
//     (fan-out). Requests stay pending until answered, inside a window
//     bounded in count and bytes, and are sent again, in order, on the next
//     connection when one breaks. Reconnection uses exponential backoff with
//     jitter and cycles through a list of addresses (failover). With a codec
//     that can parse responses out of bytes (ResponseParser), a sender can
//     take the responses that have arrived itself (Poll) instead of waiting
//     for the reader goroutine to be scheduled. A response's callback runs
//     on the goroutine that read it and may send a follow-up request: it
//     uses the room of the request it answers rather than waiting for room
//     only its own goroutine could free. The error handler runs on a
//     goroutine of its own, so it may block (log through a sink.Writer
//     over this very client) without stopping the client. A codec whose
//     peer closes a connection on purpose after an answer that says why (a
//     refusal) marks that answer final (Finisher), and the close is not
//     reported as a lost connection.
//   - On the server, each connection is read by one goroutine that passes
//     requests to the codec's handler; replies go through a batcher per
//     connection and leave together, as soon as the connection has nothing
//     more to read, or after a short window. The reader writes them itself
//     when the batcher's output goroutine is idle, which saves waking a
//     thread per group of replies. While a codec reads a large request's
//     body, the reader asks the kernel (on Linux) not to wake it before
//     the bytes it waits for are in, up to 512 KiB (SO_RCVLOWAT), so that
//     a 1 MiB frame takes a few reads rather than one per segment.
//
// Every read and write has a deadline: a peer that stops reading or sends a
// frame byte by byte becomes an error, not a hang. A peer that answers a
// request the client has not sent yet breaks the connection with
// ErrProtocol, instead of having the client drop a request nobody received.
//
// The log layer is the client half of snail's log protocol on top of the
// core: Dial returns a Stream, a destination for sink.New that sends each
// batch as one frame (encoder's format) and keeps it until the collector
// acks it. Without compression a Stream sends the sink's batch buffer
// itself, with no copy (sink.Keeper), and gives the sink back a buffer of
// an acked batch in exchange. It sends each frame at once, without a
// window timer, then polls for acks. At the sink's Close it waits for a
// collector that is down, up to its drain timeout, instead of failing fast
// (sink.Drainer); a collector that refuses the client for good (a wrong
// token, TLS on one side only: Permanent) is not waited for. The handshake
// (Hello, Welcome) and control frames are defined in proto.go; the
// collector package implements the server half.
//
// With WithSpool a Stream spills batches to disk when its window is full,
// and keeps its identity (stream id, sequence numbers, what was acked) on
// disk, so that a client restarted after a crash delivers what it spooled
// exactly once.
package netlog
