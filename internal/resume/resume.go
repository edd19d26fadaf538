// Package resume remembers how far a batch that failed part way got, so
// that the same batch, tried again, goes on from there instead of writing
// its first part twice: for destinations that write a batch in pieces
// (filelog's record devices, netlog's batches cut to a collector's frame
// limit) behind a writer that retries a failed batch whole.
package resume

import "hash/maphash"

// A Point is how far one batch got: its length, the bytes of it written,
// and their hash. The zero Point remembers nothing.
type Point struct {
	n, done int
	sum     uint64
}

var seed = maphash.MakeSeed()

// From returns where batch goes on from: the bytes written before it
// failed, if it is the batch p remembers (same length, same bytes written),
// else 0. p forgets it either way.
func (p *Point) From(batch []byte) int {
	done := 0
	if p.done > 0 && p.n == len(batch) && p.done < len(batch) && maphash.Bytes(seed, batch[:p.done]) == p.sum {
		done = p.done
	}
	*p = Point{}
	return done
}

// Save remembers that the first done bytes of batch were written before
// it failed; with done 0 it remembers nothing.
func (p *Point) Save(batch []byte, done int) {
	if done <= 0 {
		*p = Point{}
		return
	}
	*p = Point{n: len(batch), done: done, sum: maphash.Bytes(seed, batch[:done])}
}
