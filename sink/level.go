package sink

import (
	"log/slog"

	"github.com/rs/zerolog"
	"go.uber.org/zap/zapcore"
)

// Level is the severity the overflow policy looks at, common to zap,
// zerolog and slog.
type Level int8

// Levels, lowest first. Each front-end's levels map onto these: zap's
// DPanic, Panic and Fatal, zerolog's Panic and Fatal, and slog levels of 12
// and above are FatalLevel.
const (
	TraceLevel Level = iota - 2
	DebugLevel
	InfoLevel
	WarnLevel
	ErrorLevel
	FatalLevel

	// AllLevels, given to WithDropBelow, drops entries of every level when
	// the buffers are full.
	AllLevels = FatalLevel + 1
)

const numLevels = int(FatalLevel-TraceLevel) + 1

func (l Level) index() int { return int(l - TraceLevel) }

func (l Level) String() string {
	switch l {
	case TraceLevel:
		return "trace"
	case DebugLevel:
		return "debug"
	case InfoLevel:
		return "info"
	case WarnLevel:
		return "warn"
	case ErrorLevel:
		return "error"
	case FatalLevel:
		return "fatal"
	}
	return "all"
}

// FromZap maps a zap level.
func FromZap(l zapcore.Level) Level {
	switch {
	case l < zapcore.DebugLevel:
		return TraceLevel
	case l > zapcore.ErrorLevel:
		return FatalLevel
	}
	return Level(l) // zap's Debug..Error are -1..2, as ours
}

// FromZerolog maps a zerolog level; NoLevel and Disabled count as Info,
// and custom levels below Trace (zerolog takes any int8) as Trace.
func FromZerolog(l zerolog.Level) Level {
	switch l {
	case zerolog.TraceLevel:
		return TraceLevel
	case zerolog.DebugLevel:
		return DebugLevel
	case zerolog.WarnLevel:
		return WarnLevel
	case zerolog.ErrorLevel:
		return ErrorLevel
	case zerolog.FatalLevel, zerolog.PanicLevel:
		return FatalLevel
	}
	if l < zerolog.TraceLevel {
		return TraceLevel
	}
	return InfoLevel
}

// FromSlog maps a slog level: below Debug is Trace, then by the standard
// steps of 4.
func FromSlog(l slog.Level) Level {
	switch {
	case l < slog.LevelDebug:
		return TraceLevel
	case l < slog.LevelInfo:
		return DebugLevel
	case l < slog.LevelWarn:
		return InfoLevel
	case l < slog.LevelError:
		return WarnLevel
	case l < slog.LevelError+4:
		return ErrorLevel
	}
	return FatalLevel
}
