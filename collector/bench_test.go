package collector

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/netlog"
)

// BenchmarkCollect sends 1 MiB batches of 200-byte lines from one Stream
// to a collector in the same process: the collector's cost per batch.
func BenchmarkCollect(b *testing.B) {
	dir := b.TempDir()
	_, addr := startB(b, Config{Dir: dir})
	s, err := netlog.Dial(addr, netlog.WithStreamName("bench"))
	if err != nil {
		b.Fatal(err)
	}
	line := []byte(`{"level":"info","ts":1764115200.123456,"msg":"request completed","method":"GET","path":"/api/v1/users/12345/orders","status":200,"latency_ms":12.5,"request_id":"4f3c2a1b-9d8e-4c7b-a6f5-0e1d2c3b4a59"}` + "\n")
	batch := make([]byte, 0, 1<<20)
	n := 0
	for len(batch)+len(line) <= cap(batch) {
		batch = append(batch, line...)
		n++
	}
	b.SetBytes(int64(len(batch)))
	b.ResetTimer()
	for range b.N {
		if err := s.WriteBatch(batch, n); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")

}

// BenchmarkHostileConnection is one hostile client's whole visit, as
// TestHostileClients makes them: connect, pass the handshake with the
// token, send a frame with a bad CRC, and read until the collector closes
// the connection. Client and collector share this process: ns/op and
// allocs/op count both sides.
func BenchmarkHostileConnection(b *testing.B) {
	_, addr := startB(b, Config{Dir: b.TempDir(), Tokens: []string{"t"}})
	hello, _ := netlog.AppendHello(nil, netlog.Hello{Version: netlog.ProtocolVersion, StreamID: 5, Name: "evil", Token: "t"})
	bad, _ := (&encoder.Encoder{}).AppendBatch(nil, encoder.Batch{Stream: 5, Seq: 1, Entries: 1}, []byte("evil\n"), encoder.None)
	bad[len(bad)-2] ^= 0xff
	msg := append(hello, bad...)
	var sink [512]byte
	b.ReportAllocs()
	for b.Loop() {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Write(msg); err != nil {
			b.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, err := conn.Read(sink[:]); err != nil {
				if !errors.Is(err, io.EOF) {
					b.Fatal(err)
				}
				break
			}
		}
		conn.Close()
	}
}
