package encoder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	e, _ := NewEncoder()
	defer e.Close()
	logs, n := logBatch(2000, 7)
	for _, c := range []Compression{None, S2, Zstd} {
		fr, _ := e.AppendBatch(nil, Batch{Stream: 3, Seq: 9, Entries: n}, logs, c)
		f.Add(fr)
		f.Add(fr[:len(fr)/2])
	}
	f.Add(AppendAck(nil, 1, 2, 3, StatusOK, "fine"))
	ctl, _ := AppendControl(nil, 3, 1, 2, 3, 4, []byte("hello"))
	f.Add(ctl)
	f.Add([]byte("SNLF"))
	f.Add([]byte{})
}

// FuzzDecode feeds arbitrary bytes to Decode and to a Reader. Neither may
// panic, allocate beyond the limits, or disagree with the other; what decodes
// must satisfy the header's own claims.
func FuzzDecode(f *testing.F) {
	fuzzSeeds(f)
	d, err := NewDecoder(WithMaxFrameSize(1<<20), WithMaxDecompressedSize(4<<20))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fromDecode []Frame
		var decodeErr error
		for rest := data; ; {
			fr, n, err := d.Decode(rest, nil)
			if err != nil {
				if len(rest) > 0 {
					decodeErr = err
				}
				break
			}
			if n < HeaderSize || n > len(rest) {
				t.Fatalf("Decode used %d of %d bytes", n, len(rest))
			}
			if fr.Kind == KindBatch && len(fr.Payload) != int(fr.RawLen) {
				t.Fatalf("payload of %d bytes, header says %d", len(fr.Payload), fr.RawLen)
			}
			fr.Payload = bytes.Clone(fr.Payload)
			fromDecode = append(fromDecode, fr)
			rest = rest[n:]
		}
		// The streaming reader reads the same frames and fails the same way.
		r := NewReader(bytes.NewReader(data), d)
		for i := 0; ; i++ {
			fr, err := r.Next()
			if err != nil {
				if decodeErr == nil && err != io.EOF {
					t.Fatalf("Reader: %v after %d frames; Decode read them all", err, i)
				}
				if decodeErr != nil && !errors.Is(err, unwrapSentinel(decodeErr)) {
					t.Fatalf("Reader: %v, Decode: %v", err, decodeErr)
				}
				if i != len(fromDecode) {
					t.Fatalf("Reader read %d frames, Decode %d", i, len(fromDecode))
				}
				break
			}
			if i >= len(fromDecode) || !bytes.Equal(fr.Payload, fromDecode[i].Payload) || fr.Header != fromDecode[i].Header {
				t.Fatalf("frame %d differs between Reader and Decode", i)
			}
		}
	})
}

// sentinels are the errors a decoder may report, wrapped or not.
var sentinels = []error{ErrBadMagic, ErrVersion, ErrKind, ErrFlags, ErrFrameTooLarge,
	ErrDecompressedTooLarge, ErrChecksum, ErrTruncated, ErrCorrupt}

// unwrapSentinel returns the package sentinel err wraps.
func unwrapSentinel(err error) error {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

// FuzzDecodeSealed decodes arbitrary frames whose CRC is made right first.
// Random bytes almost never carry the right CRC, so FuzzDecode rarely gets
// past the check to the decompressors; here hostile compressed payloads
// reach them. Decode must not panic, must report one of the package's
// errors, and what decodes must be exactly as long as the header says.
func FuzzDecodeSealed(f *testing.F) {
	fuzzSeeds(f)
	const maxRaw = 4 << 20
	d, err := NewDecoder(WithMaxFrameSize(1<<20), WithMaxDecompressedSize(maxRaw))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < HeaderSize {
			return
		}
		n := min(int(binary.LittleEndian.Uint32(data[32:36])), len(data)-HeaderSize)
		binary.LittleEndian.PutUint32(data[36:40], crcOf(data[:HeaderSize], data[HeaderSize:HeaderSize+n]))
		fr, used, err := d.Decode(data, nil)
		if err != nil {
			if s := unwrapSentinel(err); !slices.Contains(sentinels, s) {
				t.Fatalf("Decode: %v, none of the package's errors", err)
			}
			if errors.Is(err, ErrChecksum) {
				t.Fatalf("Decode: %v with the CRC made right", err)
			}
			return
		}
		if used != HeaderSize+n {
			t.Fatalf("Decode used %d bytes of a frame of %d", used, HeaderSize+n)
		}
		if fr.Kind == KindBatch && (len(fr.Payload) != int(fr.RawLen) || fr.RawLen > maxRaw) {
			t.Fatalf("payload of %d bytes, header says %d (limit %d)", len(fr.Payload), fr.RawLen, maxRaw)
		}
	})
}

// FuzzRoundTrip encodes arbitrary payloads and headers with every codec and
// checks they decode to what went in.
func FuzzRoundTrip(f *testing.F) {
	logs, _ := logBatch(5000, 8)
	f.Add(logs, uint64(1), uint64(2), uint32(3), uint8(0))
	f.Add(logs[:100], uint64(1<<63), uint64(0), uint32(0), uint8(1))
	f.Add([]byte{}, uint64(0), uint64(0), uint32(0), uint8(2))
	f.Add(bytes.Repeat([]byte("ab"), 3000), uint64(5), uint64(6), uint32(7), uint8(2))
	e, err := NewEncoder()
	if err != nil {
		f.Fatal(err)
	}
	d, err := NewDecoder()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte, stream, seq uint64, entries uint32, comp uint8) {
		c := Compression(comp % 3)
		b := Batch{Stream: stream, Seq: seq, Entries: int(entries)}
		frame, err := e.AppendBatch(nil, b, payload, c)
		if err != nil {
			t.Fatal(err)
		}
		fr, n, err := d.Decode(frame, nil)
		if err != nil {
			t.Fatalf("Decode(%s): %v", c, err)
		}
		if n != len(frame) || fr.Stream != stream || fr.Seq != seq || fr.Entries != entries || !bytes.Equal(fr.Payload, payload) {
			t.Fatalf("round trip (%s) changed the batch", c)
		}
	})
}
