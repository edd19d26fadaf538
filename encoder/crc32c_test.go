package encoder

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// TestCRC32C checks crc32c against the standard library for lengths and
// alignments around every boundary of the folded path, with random
// registers.
func TestCRC32C(t *testing.T) {
	if !haveFold {
		t.Log("no AVX-512 carry-less multiply on this CPU: crc32c is the standard library's")
	}
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20+600)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	lengths := []int{0, 1, 255, 256, 1023, foldMin - 1, foldMin, foldMin + 1, foldMin + 255, foldMin + 256, 4096 + 17, 65536, 1 << 20, 1<<20 + 300}
	for range 200 {
		lengths = append(lengths, foldMin+r.IntN(20000))
	}
	for _, n := range lengths {
		for _, off := range []int{0, 1, 7, 63, 64 + 5} {
			crc := r.Uint32()
			p := buf[off : off+n]
			if got, want := crc32c(crc, p), crc32.Update(crc, castagnoli, p); got != want {
				t.Fatalf("len %d offset %d crc %08x: got %08x, want %08x", n, off, crc, got, want)
			}
		}
	}
	// Runs of one byte value, zeros and ones, catch a constant that is
	// wrong only in some bits.
	for _, v := range []byte{0, 0xFF, 0x80, 0x01} {
		p := make([]byte, 8192)
		for i := range p {
			p[i] = v
		}
		if got, want := crc32c(0, p), crc32.Update(0, castagnoli, p); got != want {
			t.Fatalf("8192 bytes of %#x: got %08x, want %08x", v, got, want)
		}
	}
}

func FuzzCRC32C(f *testing.F) {
	f.Add(uint32(0), make([]byte, foldMin))
	f.Add(uint32(0xdeadbeef), make([]byte, 3*foldMin+77))
	f.Fuzz(func(t *testing.T, crc uint32, p []byte) {
		if len(p) < foldMin { // reach the folded path with short inputs too
			p = append(p, make([]byte, foldMin)...)
		}
		if got, want := crc32c(crc, p), crc32.Update(crc, castagnoli, p); got != want {
			t.Fatalf("len %d crc %08x: got %08x, want %08x", len(p), crc, got, want)
		}
	})
}

func BenchmarkCRC32C(b *testing.B) {
	for _, tc := range []struct {
		name string
		f    func(uint32, []byte) uint32
	}{
		{"snail", crc32c},
		{"stdlib", func(c uint32, p []byte) uint32 { return crc32.Update(c, castagnoli, p) }},
	} {
		for _, set := range []struct {
			name string
			bufs int
		}{{"hot", 1}, {"cold", 48}} { // 48 MiB: more than the caches
			b.Run(tc.name+"/"+set.name, func(b *testing.B) {
				bufs := make([][]byte, set.bufs)
				for i := range bufs {
					bufs[i] = make([]byte, 1<<20)
				}
				b.SetBytes(1 << 20)
				var s uint32
				for i := 0; b.Loop(); i++ {
					s += tc.f(0, bufs[i%len(bufs)])
				}
				_ = s
			})
		}
	}
}
