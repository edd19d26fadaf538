package sink

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// discard is a Destination that drops batches: snail's own cost.
type discard struct{}

func (discard) WriteBatch([]byte, int) error { return nil }
func (discard) Sync() error                  { return nil }
func (discard) Close() error                 { return nil }

// BenchmarkSlogHandler compares the handlers alone, on the same prebuilt
// record, from parallel goroutines: snail's handler through a Writer into a
// discarding destination, and slog.JSONHandler into io.Discard. (Through
// slog.Logger both also pay the logger's own per-record work: the caller's
// PC, time.Now, building the record.)
func BenchmarkSlogHandler(b *testing.B) {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "request completed", 0)
	r.AddAttrs(slog.String("method", "GET"), slog.String("path", "/api/v1/users/12345/orders"), slog.Int("status", 200),
		slog.Float64("latency_ms", 12.5), slog.String("request_id", "4f3c2a1b-9d8e-4c7b-a6f5-0e1d2c3b4a59"),
		slog.Int("user_id", 42))
	w, err := New(discard{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	for _, tc := range []struct {
		name string
		h    slog.Handler
	}{
		{"impl=snail", NewSlogHandler(w, nil)},
		{"impl=slog.JSONHandler", slog.NewJSONHandler(io.Discard, nil)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := tc.h.Handle(ctx, r); err != nil {
						panic(errors.Join(err))
					}
				}
			})
		})
	}
}
