package netlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/snail-log/snail/encoder"
)

// FuzzParseHello feeds arbitrary payloads to the handshake parser: it never
// panics, and what it accepts with a valid name encodes back to the same
// Hello.
func FuzzParseHello(f *testing.F) {
	good, _ := AppendHello(nil, Hello{Version: 1, StreamID: 9, Name: "app", Token: "t0k"})
	// Stream id 0 is the collector's own: refused, however good the rest.
	if _, err := ParseHello(encoder.Frame{Header: encoder.Header{Kind: KindHello}, Payload: good[encoder.HeaderSize:]}); !errors.Is(err, ErrProtocol) {
		f.Fatalf("hello of stream id 0: %v", err)
	}
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

// FuzzSpool opens a spool whose state file and two segments are arbitrary
// bytes: openSpool never fails on their content or panics; it queues
// exactly the records an independent reading finds valid, in order and
// above the acked mark, cuts each segment after its last valid record (or
// removes it when nothing in it is left to send), and gives out sequence
// numbers above every record it recovered. With sealed, the state and
// every record along each segment get their magic and CRC first, so that
// the fuzzer explores their values rather than the CRC checks.
func FuzzSpool(f *testing.F) {
	var seg []byte
	for seq := uint64(1); seq <= 3; seq++ {
		seg = appendSpoolRec(seg, seq, []byte("entry\n"))
	}
	var state [spoolStateSize]byte
	binary.LittleEndian.PutUint64(state[4:], 42)
	binary.LittleEndian.PutUint64(state[12:], 4)
	binary.LittleEndian.PutUint64(state[20:], 1)
	f.Add(state[:], seg, seg[:50], true)
	f.Add(state[:], seg[:40], appendSpoolRec(nil, 2, nil), true)
	f.Add([]byte{}, []byte{}, []byte{}, false)
	f.Add(state[:], seg, seg, false)
	dir := f.TempDir() // one for every input: a directory each costs more than the test
	f.Fuzz(func(t *testing.T, state, seg1, seg2 []byte, sealed bool) {
		state, seg1, seg2 = bytes.Clone(state), bytes.Clone(seg1), bytes.Clone(seg2)
		if sealed {
			if len(state) >= spoolStateSize {
				copy(state, stateMagic[:])
				binary.LittleEndian.PutUint32(state[28:], crc32.Checksum(state[:28], crcTable))
			}
			sealSpool(seg1)
			sealSpool(seg2)
		}
		names := []string{filepath.Join(dir, "seg-00000000000000000001.spool"), filepath.Join(dir, "seg-00000000000000000002.spool")}
		for i, b := range [][]byte{state, seg1, seg2} {
			name := filepath.Join(dir, "state")
			if i > 0 {
				name = names[i-1]
			}
			if err := os.WriteFile(name, b, 0o640); err != nil {
				t.Fatal(err)
			}
		}

		// What an independent reading says the spool holds.
		var acked uint64
		if len(state) >= spoolStateSize && [4]byte(state[:4]) == stateMagic &&
			crc32.Checksum(state[:28], crcTable) == binary.LittleEndian.Uint32(state[28:]) {
			acked = binary.LittleEndian.Uint64(state[20:])
		}
		var want []uint64
		var keep [2]int // bytes of each segment kept
		last := uint64(0)
		for i, data := range [][]byte{seg1, seg2} {
			off, pending := 0, 0
			// whole: the record at off has its magic and its payload of
			// n bytes (else n is -1), and good when its CRC holds too.
			whole := func(off int) (n int, good bool) {
				h := data[off:]
				if len(h) < spoolRecHeader || [4]byte(h[:4]) != spoolMagic {
					return -1, false
				}
				n = int(binary.LittleEndian.Uint32(h[24:]))
				if len(h)-spoolRecHeader < n {
					return -1, false
				}
				return n, crc32.Update(crc32.Checksum(h[:28], crcTable), crcTable, h[spoolRecHeader:spoolRecHeader+n]) == binary.LittleEndian.Uint32(h[28:])
			}
			inOrder := func(off int) bool {
				seq := binary.LittleEndian.Uint64(data[off+4:])
				return seq > last && seq != math.MaxUint64
			}
			for len(data)-off >= spoolRecHeader {
				n, good := whole(off)
				if !good && n >= 0 {
					// A damaged record is skipped when a good one in
					// order follows it.
					if _, ok := whole(off + spoolRecHeader + n); ok && inOrder(off+spoolRecHeader+n) {
						off += spoolRecHeader + n
						continue
					}
				}
				if !good || !inOrder(off) {
					break
				}
				seq := binary.LittleEndian.Uint64(data[off+4:])
				last = seq
				off += spoolRecHeader + n
				if seq > acked {
					want = append(want, seq)
					pending++
				}
			}
			if pending > 0 {
				keep[i] = off
			} else {
				keep[i] = -1 // removed
			}
		}

		sp, err := openSpool(dir, 1<<30, SpoolBlock, DefaultStreamName)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer sp.closeFiles()
		var got []uint64
		for _, r := range sp.queue {
			got = append(got, r.seq)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("queued %v, want %v", got, want)
		}
		for i, name := range names {
			fi, err := os.Stat(name)
			switch {
			case keep[i] < 0 && err == nil:
				t.Fatalf("segment %d kept (%d bytes) with nothing to send", i, fi.Size())
			case keep[i] >= 0 && (err != nil || fi.Size() != int64(keep[i])):
				t.Fatalf("segment %d: %v, want %d bytes", i, err, keep[i])
			}
		}
		if last > 0 && sp.nextSeq <= last || sp.nextSeq == 0 {
			t.Fatalf("next sequence number %d, after records up to %d", sp.nextSeq, last)
		}
		// The payloads it would send are the ones in the files.
		for _, r := range sp.queue {
			b := make([]byte, r.n)
			if _, err := r.seg.f.ReadAt(b, r.off); err != nil {
				t.Fatalf("record %d: %v", r.seq, err)
			}
		}
		sp.closeFiles()
		for _, name := range names {
			os.Remove(name)
		}
	})
}

// appendSpoolRec appends a spool record of seq with payload, sealed.
func appendSpoolRec(b []byte, seq uint64, payload []byte) []byte {
	var h [spoolRecHeader]byte
	copy(h[:], spoolMagic[:])
	binary.LittleEndian.PutUint64(h[4:], seq)
	binary.LittleEndian.PutUint32(h[12:], 1)
	binary.LittleEndian.PutUint32(h[16:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[24:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[28:], crc32.Update(crc32.Checksum(h[:28], crcTable), crcTable, payload))
	return append(append(b, h[:]...), payload...)
}

// sealSpool gives each record along data, as far as the lengths in the
// headers lead, its magic and CRC.
func sealSpool(data []byte) {
	for off := 0; len(data)-off >= spoolRecHeader; {
		h := data[off:]
		n := min(int(binary.LittleEndian.Uint32(h[24:])), len(h)-spoolRecHeader)
		binary.LittleEndian.PutUint32(h[24:], uint32(n))
		copy(h, spoolMagic[:])
		binary.LittleEndian.PutUint32(h[28:], crc32.Update(crc32.Checksum(h[:28], crcTable), crcTable, h[spoolRecHeader:spoolRecHeader+n]))
		off += spoolRecHeader + n
	}
}

// replayConn is a connection whose peer's bytes are fixed: reads come from
// r, writes go nowhere.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c replayConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c replayConn) Write(p []byte) (int, error) { return len(p), nil }

// sealFrames makes the CRC of each frame in data right, frame after frame,
// as far as the payload lengths in the headers lead.
func sealFrames(data []byte) {
	for o := 0; len(data)-o >= encoder.HeaderSize; {
		h := data[o:]
		n := min(int(binary.LittleEndian.Uint32(h[32:36])), len(h)-encoder.HeaderSize)
		binary.LittleEndian.PutUint32(h[36:40], crc32.Update(crc32.Checksum(h[:36], crcTable), crcTable, h[encoder.HeaderSize:encoder.HeaderSize+n]))
		o += encoder.HeaderSize + n
	}
}

// FuzzReplies gives a Stream arbitrary bytes as the collector's answers (a
// collector with a bug, a forger on a link without TLS, another server):
// the handshake takes them as the answer to its hello, and the two readers
// of acks (the one on the connection, and ParseResponse, the poll after
// each write) read them frame by frame. Nothing panics; the handshake
// succeeds only on a welcome with status ok for the client's own stream;
// the two readers agree on every answer and on where the bytes stop
// making sense. With sealed, every frame's CRC is made right first, so
// that the fuzzer explores the fields rather than the CRC check.
func FuzzReplies(f *testing.F) {
	const id = 9
	welcome := AppendWelcome(nil, Welcome{Status: encoder.StatusOK, Stream: id, Written: 3, MaxFrame: 1 << 20, MaxRaw: 4 << 20, Idle: time.Minute})
	acks := encoder.AppendAck(nil, id, 1, 3, encoder.StatusOK, "")
	acks = encoder.AppendAck(acks, id, 4, 4, encoder.StatusBadFrame, "no")
	acks = encoder.AppendAck(acks, id+1, 5, 5, encoder.StatusOK, "")
	f.Add(welcome, false)
	f.Add(append(bytes.Clone(welcome), acks...), false)
	f.Add(append(acks, AppendPing(nil)...), false)
	f.Add(AppendRefusal(nil, id, 7, 1<<10, 1<<12, encoder.StatusTooLarge, "too large"), false)
	f.Add(AppendGoodbye(nil, encoder.StatusUnavailable, "shutting down"), false)
	f.Add(AppendWelcome(nil, Welcome{Status: encoder.StatusUnauthorized, Stream: id, Reason: "token"}), false)
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"), false)
	f.Add(acks[:50], true)
	dec, err := encoder.NewDecoder(encoder.WithMaxFrameSize(encoder.MaxAckReason))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, sealed bool) {
		if sealed {
			data = bytes.Clone(data)
			sealFrames(data)
		}
		s := &Stream{id: id, dec: dec}
		s.cfg.stream = "app"
		codec := &streamCodec{s: s}

		if err := codec.Handshake(replayConn{r: bytes.NewReader(data)}); err == nil {
			fr, _, derr := dec.Decode(data, nil)
			w, werr := ParseWelcome(fr)
			if derr != nil || werr != nil || w.Status != encoder.StatusOK || w.Stream != id {
				t.Fatalf("handshake took %+v (%v, %v)", w, derr, werr)
			}
		}

		type answer struct {
			first, last uint64
			a           ack
		}
		var polled, read []answer
		var pollErr, readErr error
		for b := data; ; {
			n, first, last, a, err := codec.ParseResponse(b)
			if err != nil {
				pollErr = err
				break
			}
			if n == 0 {
				break // wants more bytes
			}
			polled = append(polled, answer{first, last, a})
			b = b[n:]
		}
		rr := codec.NewResponseReader(bytes.NewReader(data))
		for range len(data)/encoder.HeaderSize + 1 {
			first, last, a, err := rr.ReadResponse()
			if err != nil {
				readErr = err
				break
			}
			read = append(read, answer{first, last, a})
		}
		if readErr == nil {
			t.Fatalf("read %d answers from %d bytes", len(read), len(data))
		}
		if !slices.Equal(polled, read) {
			t.Fatalf("polled %+v, read %+v", polled, read)
		}
		// Where the poll wants more bytes the reader meets their end, and
		// where the poll finds an error so does the reader.
		ended := errors.Is(readErr, io.EOF) || errors.Is(readErr, io.ErrUnexpectedEOF) || errors.Is(readErr, encoder.ErrTruncated)
		if (pollErr == nil) != ended {
			t.Fatalf("poll ended with %v, the reader with %v", pollErr, readErr)
		}
		for _, a := range polled {
			if a.first > a.last && a.a.status == encoder.StatusOK {
				t.Fatalf("answer %d..%d taken", a.first, a.last)
			}
		}
	})
}
