package collector

import (
	"testing"

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
