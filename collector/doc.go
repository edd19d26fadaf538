// Package collector is the library behind `snail collector`: a daemon that
// receives batches of log entries from snail clients (netlog.Stream) over
// TCP, writes each batch whole to the file of its stream with filelog, and
// acks it. A batch whose last line lacks its newline gets one, so that
// clients sharing a stream's file never run into each other's lines.
//
// It is the server half of the log protocol (netlog/proto.go) on netlog's
// generic server. Per connection: a handshake (version, stream name, stream
// id, optional token), then batch frames read one after another, each
// checked (CRC, limits) before it is written; acks go back through the
// connection's response batcher, merged into ranges.
//
// Exactly-once into the files, across reconnects and crashes of the
// collector: the collector keeps, per output and client stream id, the
// highest sequence number written, and a frame at or below it is acked
// without being written again. That state is journaled beside the data
// (Dir/.snail/NAME.state, see state.go) after each batch and before its
// ack, so a collector killed with SIGKILL and restarted cuts a batch it had
// written in part (it was not acked) and recognises the batches its clients
// send again. With AckFsync, acks wait for a group commit: one fsync of the
// file and the journal covers every batch written meanwhile, over all
// connections. When that fsync fails, Linux may have dropped the pages it
// could not write and reports it only once, so every batch written since
// the last fsync that succeeded is answered "unavailable" and, when its
// client sends it again, written again rather than taken for a duplicate
// (the journal keeps that too): it is then in the file more than once
// unless the failed fsync lost it, and never acked while it may be lost.
//
// An output file is open while a connection uses its stream; the last
// connection to end closes it. The output directory belongs to one
// collector: bytes that anything else appends to a live file are cut the
// next time the collector opens it, as a torn batch would be.
//
// Bounds: frame and decompressed sizes, the bytes of frames held at once
// over all connections, connections, handshake, idle and per-frame timeouts.
// A connection that breaks a rule is closed with a Goodbye that says why, a
// log line and a counter; the others are not affected. A failing disk makes
// the collector retry the write and stop reading that connection, so acks
// wait and memory stays bounded.
package collector
