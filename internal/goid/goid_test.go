package goid

import (
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestG checks the identity: the same for the life of a goroutine (also
// after its stack moved), different between goroutines alive at the same
// time.
func TestG(t *testing.T) {
	const n = 32
	ids := make([]uintptr, n)
	var ready, hold sync.WaitGroup
	ready.Add(n)
	hold.Add(1)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := G()
			growStack(64) // copies the stack elsewhere
			if G() != id {
				t.Errorf("goroutine %d: identity changed when its stack moved", i)
			}
			ids[i] = id
			ready.Done()
			hold.Wait() // stay alive until every identity is taken
		})
	}
	ready.Wait()
	hold.Done()
	wg.Wait()
	seen := map[uintptr]bool{G(): true}
	for i, id := range ids {
		if id == 0 || seen[id] {
			t.Fatalf("goroutine %d: identity %#x is zero or shared", i, id)
		}
		seen[id] = true
	}
}

//go:noinline
func growStack(depth int) byte {
	var pad [1024]byte
	pad[depth%len(pad)] = byte(depth)
	if depth == 0 {
		return pad[0]
	}
	return growStack(depth-1) + pad[depth%len(pad)]
}
