package netlog

import (
	"bytes"
	"testing"

	"github.com/snail-log/snail/encoder"
)

// FuzzParseHello feeds arbitrary payloads to the handshake parser: it never
// panics, and what it accepts with a valid name encodes back to the same
// Hello.
func FuzzParseHello(f *testing.F) {
	good, _ := AppendHello(nil, Hello{Version: 1, StreamID: 9, Name: "app", Token: "t0k"})
	f.Add(good[encoder.HeaderSize:])
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0xff, 0xff})
	f.Add([]byte{1, 0, 3, 0, 'a', 'b', 'c', 0, 0, 'x'})
	f.Fuzz(func(t *testing.T, payload []byte) {
		h, err := ParseHello(encoder.Frame{Header: encoder.Header{Kind: KindHello, Stream: 9}, Payload: payload})
		if err != nil {
			return
		}
		if CheckStreamName(h.Name) != nil {
			return // layout ok, name refused later by the collector
		}
		b, err := AppendHello(nil, h)
		if err != nil {
			t.Fatalf("accepted %+v but cannot encode it: %v", h, err)
		}
		if !bytes.Equal(b[encoder.HeaderSize:], payload) {
			t.Fatalf("re-encoded %x, parsed from %x", b[encoder.HeaderSize:], payload)
		}
	})
}
