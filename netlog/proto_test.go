package netlog

import (
	"testing"
	"time"

	"github.com/snail-log/snail/encoder"
)

func TestWelcomeRoundTrip(t *testing.T) {
	d, err := encoder.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		in, want Welcome
	}{
		{"ok", Welcome{Status: encoder.StatusOK, Stream: 7, Written: 42, MaxFrame: 16 << 20, MaxRaw: 64 << 20, Idle: 2 * time.Minute},
			Welcome{Status: encoder.StatusOK, Stream: 7, Written: 42, MaxFrame: 16 << 20, MaxRaw: 64 << 20, Idle: 2 * time.Minute}},
		{"no idle said", Welcome{Status: encoder.StatusOK, Stream: 7}, Welcome{Status: encoder.StatusOK, Stream: 7}},
		{"under a millisecond", Welcome{Status: encoder.StatusOK, Idle: time.Microsecond}, Welcome{Status: encoder.StatusOK, Idle: time.Millisecond}},
		{"past uint32 ms", Welcome{Status: encoder.StatusOK, Idle: 100 * 24 * time.Hour}, Welcome{Status: encoder.StatusOK, Idle: (1<<32 - 1) * time.Millisecond}},
		{"refused", Welcome{Status: encoder.StatusUnauthorized, Reason: "wrong token", Idle: time.Minute},
			Welcome{Status: encoder.StatusUnauthorized, Reason: "wrong token"}},
	} {
		f, _, err := d.Decode(AppendWelcome(nil, tc.in), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := ParseWelcome(f)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	// A later version's longer payload: the first 4 bytes are the idle
	// timeout; the rest is not read.
	f, _, _ := d.Decode(AppendWelcome(nil, Welcome{Status: encoder.StatusOK, Idle: time.Second}), nil)
	f.Payload = append(f.Payload, 1, 2, 3)
	if got, err := ParseWelcome(f); err != nil || got.Idle != time.Second {
		t.Errorf("longer payload: %+v, %v", got, err)
	}
	if _, err := ParseWelcome(encoder.Frame{Header: encoder.Header{Kind: KindPing}}); err == nil {
		t.Error("a ping parsed as a welcome")
	}
}
