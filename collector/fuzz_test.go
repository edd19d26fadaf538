package collector

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
	"time"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/netlog"
)

// fakeConn is a net.Conn whose writes are discarded: the fuzz targets drive
// the codec without sockets.
type fakeConn struct{ net.Conn }

func (fakeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (fakeConn) SetDeadline(time.Time) error      { return nil }
func (fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (fakeConn) Close() error                     { return nil }
func fuzzCollector(f *testing.F, dir string) *Collector {
	c, err := New(Config{Dir: dir, Tokens: []string{"tok"}, Logger: quiet(), MaxFrameSize: 64 << 10,
		MaxDecompressedSize: 256 << 10})
	if err != nil {
		f.Fatal(err)
	}
	return c
}

// FuzzHandshake feeds arbitrary bytes to the collector as the start of a
// connection: it never panics or hangs, accepts only a well-formed Hello
// with the right token and a valid name, and creates no file otherwise.
func FuzzHandshake(f *testing.F) {
	dir := f.TempDir()
	c := fuzzCollector(f, dir)
	f.Cleanup(func() { c.Close() })
	good, _ := netlog.AppendHello(nil, netlog.Hello{Version: 1, StreamID: 3, Name: "ok", Token: "tok"})
	f.Add(good)
	f.Add(good[:20])
	f.Add(rawHello(3, "../x", "tok"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		sc, err := (&codec{c: c}).Accept(fakeConn{}, br)
		// The same bytes one at a time (the hello's first bytes are
		// checked as they arrive) come to the same end.
		sc1, err1 := (&codec{c: c}).Accept(fakeConn{}, bufio.NewReader(iotest.OneByteReader(bytes.NewReader(data))))
		if sc1 != nil {
			sc1.Close(nil)
		}
		if (err == nil) != (err1 == nil) || reasonOf(err) != reasonOf(err1) {
			t.Fatalf("whole: %v; a byte at a time: %v", err, err1)
		}
		if err != nil {
			return
		}
		sc.Close(nil)
		h, _ := c.dec.ParseHeader(data)
		f2, _, err := c.dec.Decode(data, nil)
		if err != nil {
			t.Fatalf("accepted a handshake that does not decode: %v", err)
		}
		hello, err := netlog.ParseHello(f2)
		if err != nil || hello.Token != "tok" || netlog.CheckStreamName(hello.Name) != nil || h.Kind != netlog.KindHello {
			t.Fatalf("accepted %+v (%v)", hello, err)
		}
		if _, err := os.Stat(filepath.Join(dir, hello.Name+".log")); err != nil {
			t.Fatalf("accepted stream has no file: %v", err)
		}
	})
}

// FuzzFrameReader feeds arbitrary bytes to a connection after its
// handshake: the reader never panics, returns exactly the batches an
// independent decode finds (CRC and limits checked), in order, and holds no
// memory once they are released.
func FuzzFrameReader(f *testing.F) {
	f.Fuzz(frameReaderTarget(f, false))
}

// FuzzFrameReaderSealed is FuzzFrameReader with every frame's CRC made
// right first: random bytes almost never carry the right CRC, so without
// this the fuzzer rarely gets a hostile frame past the check.
func FuzzFrameReaderSealed(f *testing.F) {
	f.Fuzz(frameReaderTarget(f, true))
}

// seal makes the CRC of each frame in data right, frame after frame, as
// far as the payload lengths in the headers lead.
func seal(data []byte) {
	table := crc32.MakeTable(crc32.Castagnoli)
	for o := 0; len(data)-o >= encoder.HeaderSize; {
		h := data[o:]
		n := min(int(binary.LittleEndian.Uint32(h[32:36])), len(h)-encoder.HeaderSize)
		crc := crc32.Update(crc32.Update(0, table, h[:36]), table, h[encoder.HeaderSize:encoder.HeaderSize+n])
		binary.LittleEndian.PutUint32(h[36:40], crc)
		o += encoder.HeaderSize + n
	}
}

// frameReaderTarget adds the seeds and returns the fuzz function of
// FuzzFrameReader, which seals the input first if sealed.
func frameReaderTarget(f *testing.F, sealed bool) func(*testing.T, []byte) {
	dir := f.TempDir()
	c := fuzzCollector(f, dir)
	f.Cleanup(func() { c.Close() })
	enc, _ := encoder.NewEncoder()
	var seed []byte
	for seq := uint64(1); seq <= 3; seq++ {
		seed, _ = enc.AppendBatch(seed, encoder.Batch{Stream: 3, Seq: seq, Entries: 1}, []byte("entry\n"), encoder.Compression(seq-1))
	}
	f.Add(seed)
	f.Add(netlog.AppendPing(nil))
	f.Add(seed[:50])
	bad := bytes.Clone(seed)
	bad[45] ^= 1
	f.Add(bad)
	hello, _ := netlog.AppendHello(nil, netlog.Hello{Version: 1, StreamID: 3, Name: "fuzz", Token: "tok"})
	return func(t *testing.T, data []byte) {
		if sealed {
			seal(data)
		}
		// With an odd length, half the frame memory is held meanwhile:
		// frames take theirs as their bytes arrive, not whole.
		var held int64
		if len(data)%2 == 1 {
			held = c.cfg.MaxMemory / 2
			c.mem.acquireWithin(held, 0)
		}
		br := bufio.NewReader(io.MultiReader(bytes.NewReader(hello), bytes.NewReader(data)))
		sc, err := (&codec{c: c}).Accept(fakeConn{}, br)
		if err != nil {
			t.Fatal(err)
		}
		// What an independent decode of the stream says the batches are.
		var want [][]byte
		rest := data
		for {
			fr, n, err := c.dec.Decode(rest, nil)
			if err != nil || !(fr.Kind == encoder.KindBatch && fr.Stream == 3 && fr.Seq != 0 || fr.Kind == netlog.KindPing && fr.PayloadLen == 0) {
				break
			}
			if fr.Kind == encoder.KindBatch {
				want = append(want, bytes.Clone(fr.Payload))
			}
			rest = rest[n:]
		}
		got := 0
		for range 1000 {
			r, err := sc.ReadRequest()
			if err != nil || r.goodbye != nil {
				break
			}
			if got >= len(want) || !bytes.Equal(r.payload, want[got]) {
				t.Fatalf("batch %d read as %q, independent decode gives %d batches", got, r.payload, len(want))
			}
			got++
			sc.(*sconn).release(r)
		}
		if got != len(want) {
			t.Fatalf("read %d batches, the stream holds %d", got, len(want))
		}
		sc.Close(nil)
		c.mem.release(held)
		if c.mem.available() != c.cfg.MaxMemory {
			t.Fatalf("memory budget leaked: %d of %d free", c.mem.available(), c.cfg.MaxMemory)
		}
	}
}

// FuzzJournal opens a state journal made of arbitrary bytes: openJournal
// never fails on its content or panics, keeps every valid record, skipping
// the damaged ones among them (cutting what follows the last off the file), takes each
// stream's latest record, and appends after them; recoverLive never cuts a
// live file to more than it holds. With sealed, every whole record gets its
// magic and CRC first, so that most records are valid and the fuzzer
// explores their values rather than the CRC check.
func FuzzJournal(f *testing.F) {
	var seed []byte
	for i := uint64(1); i <= 3; i++ {
		seed = record{stream: i % 2, seq: i, ino: 7, size: int64(10 * i)}.append(seed)
	}
	f.Add(seed, false)
	f.Add(seed[:recordSize+7], false)
	f.Add(bytes.Repeat([]byte{0xff}, 2*recordSize), true)
	f.Add([]byte{}, false)
	dir := f.TempDir() // one for every input: a directory each costs more than the test
	path := journalPath(dir, "f")
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, sealed bool) {
		data = bytes.Clone(data)
		if sealed {
			for o := 0; len(data)-o >= recordSize; o += recordSize {
				copy(data[o:], stateMagic[:])
				binary.LittleEndian.PutUint32(data[o+36:], crc32.Checksum(data[o:o+36], castagnoli))
			}
		}
		if err := os.WriteFile(path, data, 0o640); err != nil {
			t.Fatal(err)
		}
		// What an independent reading says the journal holds: every
		// valid record, the invalid ones among them skipped, and the
		// slots up to the last valid one kept in the file.
		var want []record
		slots := 0
		for o := 0; len(data)-o >= recordSize; o += recordSize {
			b := data[o : o+recordSize]
			if [4]byte(b[:4]) != stateMagic || crc32.Checksum(b[:36], castagnoli) != binary.LittleEndian.Uint32(b[36:]) ||
				int64(binary.LittleEndian.Uint64(b[28:])) < 0 {
				continue
			}
			want = append(want, record{stream: binary.LittleEndian.Uint64(b[4:]), seq: binary.LittleEndian.Uint64(b[12:]),
				ino: binary.LittleEndian.Uint64(b[20:]), size: int64(binary.LittleEndian.Uint64(b[28:]))})
			slots = o/recordSize + 1
		}
		wantSeen := map[uint64]uint64{}
		for _, r := range want {
			if r.stream != 0 { // baselines and clean closes
				wantSeen[r.stream] = r.seq
			}
		}

		seen := map[uint64]uint64{}
		j, found, err := openJournal(dir, "f", seen, nil)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if found != (len(want) > 0) || j.records != slots || j.damaged != slots-len(want) || (found && j.last != want[len(want)-1]) {
			t.Fatalf("found %v, %d records (%d damaged), last %+v; want %d slots ending %v", found, j.records, j.damaged, j.last, slots, want)
		}
		if !maps.Equal(seen, wantSeen) {
			t.Fatalf("seen %v, want %v", seen, wantSeen)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() != int64(slots*recordSize) {
			t.Fatalf("journal left at %v bytes (%v), want %d", fi.Size(), err, slots*recordSize)
		}
		next := record{stream: 99, seq: 5, ino: 1, size: 2}
		if err := j.add(next, func() []idMark { return marksOf(seen) }); err != nil {
			t.Fatal(err)
		}
		j.close()
		again := map[uint64]uint64{}
		j2, found, err := openJournal(dir, "f", again, nil)
		if err != nil || !found || j2.last != next || again[99] != 5 || j2.records != slots+1 {
			t.Fatalf("after an append: %v, found %v, last %+v, seen %v", err, found, j2.last, again)
		}
		j2.close()

		// The live file is cut to what the last record says, never grown.
		live := filepath.Join(dir, "f.log")
		if err := os.WriteFile(live, data, 0o640); err != nil {
			t.Fatal(err)
		}
		last := record{}
		if found := len(want) > 0; found {
			last = want[len(want)-1]
		}
		cut, err := recoverLive(live, last, math.MaxInt64)
		if err != nil {
			t.Fatalf("recoverLive: %v", err)
		}
		fi, _ := os.Stat(live)
		if cut < 0 || fi.Size()+cut != int64(len(data)) || fi.Size() > max(last.size, 0) {
			t.Fatalf("live file of %d bytes cut by %d to %d (last record %+v)", len(data), cut, fi.Size(), last)
		}
	})
}
