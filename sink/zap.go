package sink

import (
	"go.uber.org/zap/zapcore"
)

// NewZapCore returns a zapcore.Core that encodes entries with enc and writes
// them to w, for the levels enab enables: zapcore.NewCore with snail
// underneath. The bytes written are the same as zapcore.NewCore's. Entries
// above Error (DPanic, Panic, Fatal) are synced before Write returns, so
// they are on disk before zap panics or exits.
func NewZapCore(enc zapcore.Encoder, w *Writer, enab zapcore.LevelEnabler) zapcore.Core {
	return &zapCore{LevelEnabler: enab, enc: enc, w: w}
}

type zapCore struct {
	zapcore.LevelEnabler
	enc zapcore.Encoder
	w   *Writer
}

var _ zapcore.Core = (*zapCore)(nil)

// Level reports the minimum enabled level, for zap's level introspection.
func (c *zapCore) Level() zapcore.Level { return zapcore.LevelOf(c.LevelEnabler) }

func (c *zapCore) With(fields []zapcore.Field) zapcore.Core {
	clone := &zapCore{LevelEnabler: c.LevelEnabler, enc: c.enc.Clone(), w: c.w}
	for i := range fields {
		fields[i].AddTo(clone.enc)
	}
	return clone
}

func (c *zapCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *zapCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	buf, err := c.enc.EncodeEntry(ent, fields)
	if err != nil {
		return err
	}
	// Above Error, the level is FatalLevel, which WriteEntry syncs.
	_, err = c.w.WriteEntry(FromZap(ent.Level), buf.Bytes())
	buf.Free()
	return err
}

func (c *zapCore) Sync() error { return c.w.Sync() }
