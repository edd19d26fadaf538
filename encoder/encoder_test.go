package encoder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

func newCodec(t testing.TB, dopts ...DecoderOption) (*Encoder, *Decoder) {
	t.Helper()
	e, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDecoder(dopts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(); d.Close() })
	return e, d
}

func TestRoundTrip(t *testing.T) {
	e, d := newCodec(t)
	logs, n := logBatch(256<<10, 1)
	for _, payload := range [][]byte{nil, []byte("a\n"), []byte("x"), logs[:1000], logs, bytes.Repeat([]byte{0}, 100000)} {
		for _, c := range []Compression{None, S2, Zstd} {
			t.Run(fmt.Sprintf("%s/%d", c, len(payload)), func(t *testing.T) {
				b := Batch{Stream: 0xfeedface01, Seq: 77, Entries: n}
				frame, err := e.AppendBatch([]byte("prefix"), b, payload, c)
				if err != nil {
					t.Fatal(err)
				}
				if string(frame[:6]) != "prefix" {
					t.Fatal("AppendBatch overwrote the prefix")
				}
				f, used, err := d.Decode(frame[6:], nil)
				if err != nil {
					t.Fatal(err)
				}
				if used != len(frame)-6 {
					t.Fatalf("Decode used %d of %d bytes", used, len(frame)-6)
				}
				if f.Kind != KindBatch || f.Stream != b.Stream || f.Seq != b.Seq || int(f.Entries) != b.Entries ||
					int(f.RawLen) != len(payload) || !bytes.Equal(f.Payload, payload) {
					t.Fatalf("decoded %+v (payload %d bytes), want %+v (%d bytes)", f.Header, len(f.Payload), b, len(payload))
				}
				if c != None && len(payload) > 1000 && f.Compression != c {
					t.Fatalf("compressible payload sent as %s, want %s", f.Compression, c)
				}
				if len(payload) < 2 && f.Compression != None {
					t.Fatalf("a %d-byte payload was sent compressed", len(payload))
				}
			})
		}
	}
}

func TestAppendBatchHeaderMatchesAppendBatch(t *testing.T) {
	e, _ := newCodec(t)
	logs, n := logBatch(10000, 2)
	b := Batch{Stream: 1, Seq: 2, Entries: n}
	whole, err := e.AppendBatch(nil, b, logs, None)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := AppendBatchHeader(nil, b, logs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(hdr, logs...), whole) {
		t.Fatal("header + payload differs from AppendBatch(None)")
	}
}

func TestFormatExample(t *testing.T) {
	// The example of FORMAT.md, byte by byte.
	hdr, err := AppendBatchHeader(nil, Batch{Stream: 7, Seq: 1, Entries: 2}, []byte("a\nb\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x53, 0x4e, 0x4c, 0x46, 1, 1, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0}
	if !bytes.Equal(hdr[:36], want) {
		t.Fatalf("header\n% x\nwant\n% x", hdr[:36], want)
	}
}

func TestAcksAndControl(t *testing.T) {
	_, d := newCodec(t)
	buf := AppendAck(nil, 9, 3, 17, StatusOK, "")
	buf = AppendAck(buf, 9, 18, 18, StatusBadStream, "stream name ../x escapes the output directory")
	buf, err := AppendControl(buf, 3, 0x1, 42, 1, 99, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AppendControl(nil, KindBatch, 0, 0, 0, 0, nil); !errors.Is(err, ErrKind) {
		t.Fatalf("AppendControl(batch) = %v, want ErrKind", err)
	}
	r := NewReader(bytes.NewReader(buf), d)
	f, err := r.Next()
	if err != nil || f.Kind != KindAck || f.Status != StatusOK || f.Seq != 3 || f.LastSeq != 17 || f.Stream != 9 {
		t.Fatalf("ack 1: %+v, %v", f.Header, err)
	}
	f, err = r.Next()
	if err != nil || f.Status != StatusBadStream || !bytes.Contains(f.Payload, []byte("escapes")) {
		t.Fatalf("ack 2: %+v %q, %v", f.Header, f.Payload, err)
	}
	f, err = r.Next()
	if err != nil || f.Kind != 3 || f.Flags != 1 || f.Stream != 42 || f.Seq != 1 || f.LastSeq != 99 || string(f.Payload) != "hello" {
		t.Fatalf("control: %+v %q, %v", f.Header, f.Payload, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("end: %v, want io.EOF", err)
	}
	long := AppendAck(nil, 1, 1, 1, StatusUnavailable, string(bytes.Repeat([]byte("x"), 10000)))
	if f, _, err := d.Decode(long, nil); err != nil || len(f.Payload) != MaxAckReason {
		t.Fatalf("long reason: %d bytes, %v", len(f.Payload), err)
	}
}

// reCRC recomputes the checksum of a frame after a test edited it, so that
// the check under test is reached.
func reCRC(f []byte) []byte {
	n := binary.LittleEndian.Uint32(f[32:])
	binary.LittleEndian.PutUint32(f[36:], crcOf(f[:HeaderSize], f[HeaderSize:HeaderSize+int(n)]))
	return f
}

func TestDecodeRejects(t *testing.T) {
	e, d := newCodec(t, WithMaxFrameSize(1<<20), WithMaxDecompressedSize(2<<20))
	logs, n := logBatch(64<<10, 3)
	good := func(c Compression) []byte {
		f, err := e.AppendBatch(nil, Batch{Stream: 1, Seq: 1, Entries: n}, logs, c)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	bomb := func() []byte {
		// 100 MB of zeros compress to a few KB: the header says 1000 bytes.
		z, _ := zstd.NewWriter(nil)
		defer z.Close()
		comp := z.EncodeAll(make([]byte, 100<<20), nil)
		f, _ := AppendControl(nil, 3, 0, 0, 0, 0, comp)
		f[5] = byte(KindBatch)
		binary.LittleEndian.PutUint16(f[6:], uint16(Zstd))
		binary.LittleEndian.PutUint32(f[24:], 1)
		binary.LittleEndian.PutUint32(f[28:], 1000)
		return reCRC(f)
	}
	for _, tc := range []struct {
		name  string
		frame func() []byte
		want  error
	}{
		{"empty", func() []byte { return nil }, ErrTruncated},
		{"short header", func() []byte { return good(None)[:39] }, ErrTruncated},
		{"short payload", func() []byte { f := good(None); return f[:len(f)-1] }, ErrTruncated},
		{"bad magic", func() []byte { f := good(None); f[0] = 'X'; return f }, ErrBadMagic},
		{"http", func() []byte { return []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxx") }, ErrBadMagic},
		{"version 2", func() []byte { f := good(None); f[4] = 2; return f }, ErrVersion},
		{"kind 0", func() []byte { f := good(None); f[5] = 0; return f }, ErrKind},
		{"kind 16", func() []byte { f := good(None); f[5] = 16; return f }, ErrKind},
		{"unknown flag bit", func() []byte { f := good(None); f[6] |= 0x10; return f }, ErrFlags},
		{"compression 3", func() []byte { f := good(None); f[6] |= 3; return f }, ErrFlags},
		{"payload over limit", func() []byte { f := good(None); binary.LittleEndian.PutUint32(f[32:], 1<<20+1); return f }, ErrFrameTooLarge},
		{"payload length 4 GiB", func() []byte { f := good(None); binary.LittleEndian.PutUint32(f[32:], 1<<32-1); return f }, ErrFrameTooLarge},
		{"raw over limit", func() []byte { f := good(S2); binary.LittleEndian.PutUint32(f[28:], 2<<20+1); return f }, ErrDecompressedTooLarge},
		{"raw differs, uncompressed", func() []byte { f := good(None); binary.LittleEndian.PutUint32(f[28:], 5); return f }, ErrCorrupt},
		{"payload bit flip", func() []byte { f := good(None); f[100] ^= 1; return f }, ErrChecksum},
		{"header bit flip", func() []byte { f := good(None); f[17] ^= 0x80; return f }, ErrChecksum},
		{"crc bit flip", func() []byte { f := good(Zstd); f[37] ^= 1; return f }, ErrChecksum},
		{"s2 garbage", func() []byte { f := good(S2); copy(f[HeaderSize+3:], "garbage!"); return reCRC(f) }, ErrCorrupt},
		{"s2 wrong raw length", func() []byte {
			f := good(S2)
			binary.LittleEndian.PutUint32(f[28:], uint32(len(logs)-1))
			return reCRC(f)
		}, ErrCorrupt},
		{"zstd garbage", func() []byte { f := good(Zstd); copy(f[HeaderSize+10:], "garbage!garbage!"); return reCRC(f) }, ErrCorrupt},
		{"zstd short raw length", func() []byte {
			f := good(Zstd)
			binary.LittleEndian.PutUint32(f[28:], uint32(len(logs)-1))
			return reCRC(f)
		}, ErrCorrupt},
		{"zstd long raw length", func() []byte {
			f := good(Zstd)
			binary.LittleEndian.PutUint32(f[28:], uint32(len(logs)+1))
			return reCRC(f)
		}, ErrCorrupt},
		{"zstd raw length 0", func() []byte {
			f := good(Zstd)
			binary.LittleEndian.PutUint32(f[28:], 0)
			return reCRC(f)
		}, ErrCorrupt},
		{"zstd bomb", bomb, ErrCorrupt},
		{"zstd payload cut short", func() []byte { return cutPayload(good(Zstd), 5) }, ErrCorrupt},
		{"s2 payload cut short", func() []byte { return cutPayload(good(S2), 5) }, ErrCorrupt},
		{"ack of one batch", func() []byte { return AppendAck(nil, 1, 10, 10, 0, "") }, nil},
		{"ack range backwards", func() []byte {
			f := AppendAck(nil, 1, 10, 10, 0, "")
			binary.LittleEndian.PutUint64(f[24:], 9)
			return reCRC(f)
		}, ErrCorrupt},
		{"ack reason too long", func() []byte {
			f := AppendAck(nil, 1, 1, 1, 1, string(make([]byte, MaxAckReason)))
			f = append(f, 'x')
			binary.LittleEndian.PutUint32(f[32:], MaxAckReason+1)
			return reCRC(f)
		}, ErrFrameTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := tc.frame()
			_, _, err := d.Decode(frame, nil)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Decode = %v, want %v", err, tc.want)
			}
			if tc.want != ErrTruncated && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) {
				// A whole frame is never an end of input, which readers
				// take for a connection that ended mid-frame.
				t.Fatalf("Decode = %v: matches an end of input", err)
			}
			// The streaming reader agrees, and its error is final.
			r := NewReader(bytes.NewReader(frame), d)
			_, err = r.Next()
			if tc.want == ErrTruncated && len(frame) == 0 {
				tc.want = io.EOF
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Reader.Next = %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Reader.Next = %v, want %v", err, tc.want)
			}
			if _, err2 := r.Next(); err2 != err {
				t.Fatalf("second Next = %v, want the same error", err2)
			}
		})
	}
}

// cutPayload drops the last n bytes of frame f's payload, whole frame
// still: its payload length and CRC say the shorter payload.
func cutPayload(f []byte, n int) []byte {
	f = f[:len(f)-n]
	binary.LittleEndian.PutUint32(f[32:], binary.LittleEndian.Uint32(f[32:])-uint32(n))
	return reCRC(f)
}

func TestOptions(t *testing.T) {
	bad := []DecoderOption{WithMaxFrameSize(-1), WithMaxDecompressedSize(-1)}
	if over := int64(MaxPayload) + 1; over <= math.MaxInt { // not on 32-bit platforms
		bad = append(bad, WithMaxFrameSize(int(over)), WithMaxDecompressedSize(int(over)))
	}
	for _, o := range bad {
		if _, err := NewDecoder(o); !errors.Is(err, ErrInvalidOption) {
			t.Fatalf("NewDecoder = %v, want ErrInvalidOption", err)
		}
	}
	for _, l := range []int{0, 5} {
		if _, err := NewEncoder(WithZstdLevel(l)); !errors.Is(err, ErrInvalidOption) {
			t.Fatalf("NewEncoder(level %d) = %v, want ErrInvalidOption", l, err)
		}
	}
	if _, err := ParseCompression("lz4"); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("ParseCompression(lz4) = %v", err)
	}
	for _, s := range []string{"none", "s2", "zstd"} {
		if c, err := ParseCompression(s); err != nil || c.String() != s {
			t.Fatalf("ParseCompression(%s) = %v, %v", s, c, err)
		}
	}
	e, _ := newCodec(t)
	if _, err := e.AppendBatch(nil, Batch{}, nil, Compression(3)); !errors.Is(err, ErrFlags) {
		t.Fatalf("AppendBatch(compression 3) = %v, want ErrFlags", err)
	}
	if _, err := e.AppendBatch(nil, Batch{Entries: -1}, nil, None); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("AppendBatch(-1 entries) = %v", err)
	}
}

// stream returns several frames of every kind back to back.
func stream(t testing.TB, e *Encoder) ([]byte, []Frame) {
	var buf []byte
	var want []Frame
	logs, n := logBatch(3000, 4)
	for i, c := range []Compression{None, S2, Zstd, None} {
		b := Batch{Stream: 5, Seq: uint64(i + 1), Entries: n}
		var err error
		buf, err = e.AppendBatch(buf, b, logs[:1000*i+100], c)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, Frame{Header: Header{Kind: KindBatch, Stream: 5, Seq: b.Seq}, Payload: logs[:1000*i+100]})
	}
	buf = AppendAck(buf, 5, 1, 4, StatusOK, "")
	want = append(want, Frame{Header: Header{Kind: KindAck, Stream: 5, Seq: 1, LastSeq: 4}})
	return buf, want
}

func checkFrames(t *testing.T, got, want []Frame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Kind != w.Kind || g.Stream != w.Stream || g.Seq != w.Seq || g.LastSeq != w.LastSeq || !bytes.Equal(g.Payload, w.Payload) {
			t.Fatalf("frame %d: %+v (%d bytes), want %+v (%d bytes)", i, g.Header, len(g.Payload), w.Header, len(w.Payload))
		}
	}
}

func readAll(r *Reader) ([]Frame, error) {
	var fs []Frame
	for {
		f, err := r.Next()
		if err != nil {
			return fs, err
		}
		f.Payload = bytes.Clone(f.Payload)
		fs = append(fs, f)
	}
}

// TestReaderEverySplit feeds a stream of frames split in two at every byte
// position, and one byte at a time.
func TestReaderEverySplit(t *testing.T) {
	e, d := newCodec(t)
	buf, want := stream(t, e)
	for k := 0; k <= len(buf); k++ {
		r := NewReader(io.MultiReader(bytes.NewReader(buf[:k]), bytes.NewReader(buf[k:])), d)
		got, err := readAll(r)
		if err != io.EOF {
			t.Fatalf("split at %d: %v", k, err)
		}
		checkFrames(t, got, want)
	}
	got, err := readAll(NewReader(iotest.OneByteReader(bytes.NewReader(buf)), d))
	if err != io.EOF {
		t.Fatal(err)
	}
	checkFrames(t, got, want)
}

// TestReaderEveryTruncation cuts the stream at every byte: the frames before
// the cut are read, then io.EOF at a frame boundary or ErrTruncated inside.
func TestReaderEveryTruncation(t *testing.T) {
	e, d := newCodec(t)
	buf, want := stream(t, e)
	var bounds []int
	for off := 0; off < len(buf); {
		bounds = append(bounds, off)
		off += HeaderSize + int(binary.LittleEndian.Uint32(buf[off+32:]))
	}
	for k := 0; k < len(buf); k++ {
		got, err := readAll(NewReader(bytes.NewReader(buf[:k]), d))
		if slices.Contains(bounds, k) {
			if err != io.EOF {
				t.Fatalf("cut at frame boundary %d: %v, want io.EOF", k, err)
			}
		} else if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v, want ErrTruncated", k, err)
		}
		whole := 0 // frames that end at or before the cut
		for i := range bounds {
			end := len(buf)
			if i+1 < len(bounds) {
				end = bounds[i+1]
			}
			if end <= k {
				whole++
			}
		}
		if len(got) != whole {
			t.Fatalf("cut at %d: read %d frames, want the %d before the cut", k, len(got), whole)
		}
		checkFrames(t, got, want[:len(got)])
	}
}

func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	e, d := newCodec(t)
	logs, n := logBatch(256<<10, 5)
	for _, c := range []Compression{None, S2, Zstd} {
		dst, _ := e.AppendBatch(nil, Batch{Entries: n}, logs, c)
		buf := make([]byte, 0, len(logs))
		if a := testing.AllocsPerRun(20, func() {
			dst, _ = e.AppendBatch(dst[:0], Batch{Entries: n}, logs, c)
		}); a != 0 {
			t.Errorf("AppendBatch(%s): %v allocs", c, a)
		}
		if a := testing.AllocsPerRun(20, func() {
			if _, _, err := d.Decode(dst, buf); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Errorf("Decode(%s): %v allocs", c, a)
		}
	}
	hdr := make([]byte, 0, HeaderSize)
	if a := testing.AllocsPerRun(100, func() { hdr, _ = AppendBatchHeader(hdr[:0], Batch{}, logs) }); a != 0 {
		t.Errorf("AppendBatchHeader: %v allocs", a)
	}
}

// TestS2InteropStandard: an S2 payload is a standard S2 block, readable by
// any S2 decoder.
func TestS2InteropStandard(t *testing.T) {
	e, _ := newCodec(t)
	logs, n := logBatch(20000, 6)
	f, _ := e.AppendBatch(nil, Batch{Entries: n}, logs, S2)
	out, err := s2.Decode(nil, f[HeaderSize:])
	if err != nil || !bytes.Equal(out, logs) {
		t.Fatalf("s2.Decode: %v", err)
	}
}

// A payload compressed first and framed later (netlog's order) decodes like
// a frame built in one step.
func TestAppendPayloadThenHeader(t *testing.T) {
	payload := bytes.Repeat([]byte(`{"level":"info","msg":"hello","n":42}`+"\n"), 200)
	e, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, c := range []Compression{None, S2, Zstd} {
		body, used, err := e.AppendPayload(nil, payload, c)
		if err != nil {
			t.Fatal(err)
		}
		if used != c {
			t.Fatalf("%v: used %v", c, used)
		}
		b := Batch{Stream: 9, Seq: 3, Entries: 200}
		hdr, err := AppendBatchHeaderFor(nil, b, used, len(payload), body)
		if err != nil {
			t.Fatal(err)
		}
		f, n, err := d.Decode(append(hdr, body...), nil)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		if n != len(hdr)+len(body) || !bytes.Equal(f.Payload, payload) || f.Seq != 3 || f.Entries != 200 || f.Compression != c {
			t.Fatalf("%v: decoded %+v", c, f.Header)
		}
	}
	if _, err := AppendBatchHeaderFor(nil, Batch{}, None, 5, []byte("abc")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("raw length mismatch: %v", err)
	}
	if _, err := AppendBatchHeaderFor(nil, Batch{}, 3, 3, []byte("abc")); !errors.Is(err, ErrFlags) {
		t.Fatalf("bad codec: %v", err)
	}
}
