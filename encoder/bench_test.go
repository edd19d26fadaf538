package encoder

import (
	"fmt"
	"testing"
)

var benchSizes = []int{64 << 10, 1 << 20, 4 << 20}

// BenchmarkEncode measures frame encoding of realistic JSON log batches.
// MB/s counts uncompressed batch bytes; ratio is uncompressed/sent.
// "header" is AppendBatchHeader: the CRC-only path used with writev.
func BenchmarkEncode(b *testing.B) {
	e, err := NewEncoder()
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for _, size := range benchSizes {
		logs, n := logBatch(size, 9)
		batch := Batch{Stream: 1, Seq: 1, Entries: n}
		b.Run(fmt.Sprintf("size=%dKiB/codec=header", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(logs)))
			b.ReportAllocs()
			dst := make([]byte, 0, HeaderSize)
			for b.Loop() {
				dst, _ = AppendBatchHeader(dst[:0], batch, logs)
			}
			b.ReportMetric(1, "ratio")
		})
		for _, c := range []Compression{None, S2, Zstd} {
			b.Run(fmt.Sprintf("size=%dKiB/codec=%s", size>>10, c), func(b *testing.B) {
				b.SetBytes(int64(len(logs)))
				b.ReportAllocs()
				dst, err := e.AppendBatch(nil, batch, logs, c) // warm up: buffers and compressor
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					dst, err = e.AppendBatch(dst[:0], batch, logs, c)
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(logs))/float64(len(dst)-HeaderSize), "ratio")
			})
		}
	}
}

// BenchmarkDecode measures validation (CRC) and decompression; MB/s counts
// uncompressed batch bytes.
func BenchmarkDecode(b *testing.B) {
	e, _ := NewEncoder()
	defer e.Close()
	d, _ := NewDecoder()
	defer d.Close()
	for _, size := range benchSizes {
		logs, n := logBatch(size, 10)
		for _, c := range []Compression{None, S2, Zstd} {
			frame, err := e.AppendBatch(nil, Batch{Entries: n}, logs, c)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("size=%dKiB/codec=%s", size>>10, c), func(b *testing.B) {
				b.SetBytes(int64(len(logs)))
				b.ReportAllocs()
				buf := make([]byte, 0, len(logs))
				for b.Loop() {
					f, _, err := d.Decode(frame, buf)
					if err != nil || len(f.Payload) != len(logs) {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
