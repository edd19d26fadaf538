// Package sink puts snail under the loggers Go programs already use: a
// zapcore.Core, a zerolog.LevelWriter and a slog.Handler, all feeding one
// Writer that batches entries from every goroutine and hands whole batches
// to a Destination (a file from filelog, a collector connection from
// netlog).
//
// Write never does I/O: it copies the entry into the current batch and
// returns. Batches leave when full or after a short window, as one write.
// Sync returns once the destination has everything written before it;
// Close drains everything and stops every goroutine.
//
// When writers outpace the destination, the Writer first takes more batch
// buffers, up to WithMaxBuffers (16 MiB by default; those not needed for a
// minute are given back); once all are full the
// overflow policy decides per level: by default every level blocks;
// WithDropBelow(WarnLevel) drops Debug and Info entries while the buffers
// are full but still blocks for Warn and above. Dropped entries are counted
// per level and announced in the stream itself by a "snail dropped entries"
// record once space returns, or at the next Sync or Close.
//
// When the destination fails (a full disk, a collector away past its report
// delay), the Writer retries the batch with backoff until it succeeds.
// Meanwhile the error is sticky, as bufio's: Write refuses entries with it
// and Sync returns it at once, but no batch is given up; only Close gives
// up what it cannot deliver, counted in Stats().Lost.
package sink
