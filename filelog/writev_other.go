//go:build !linux

package filelog

import "os"

// writev writes pieces to f in order, joined into one write(): off Linux,
// this package does not use writev. scratch is unused.
func writev(f *os.File, pieces [][]byte, _ *[][]byte) (n, calls int, err error) {
	var b []byte
	for _, p := range pieces {
		b = append(b, p...)
	}
	n, err = f.Write(b)
	return n, 1, err
}
