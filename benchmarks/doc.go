// Package benchmarks contains only benchmarks comparing snail with the ways
// Go programs write logs today: zap unbuffered, zap's BufferedWriteSyncer,
// zap with lumberjack, zerolog to a file and through its diode, and slog's
// JSONHandler; each also into io.Discard as the encoder's ceiling. It is a
// module of its own so that its peers do not become snail's dependencies.
package benchmarks
