package batcher

import (
	"runtime"
	"sync"
	"testing"
)

// TestGetg checks the identity lanes bind goroutines by: the same for the
// life of a goroutine (also after its stack moved), different between
// goroutines alive at the same time.
func TestGetg(t *testing.T) {
	if !haveGetg {
		t.Skip("no getg on " + runtime.GOARCH)
	}
	const n = 32
	ids := make([]uintptr, n)
	var ready, hold sync.WaitGroup
	ready.Add(n)
	hold.Add(1)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := getg()
			growStack(64) // copies the stack elsewhere
			if getg() != id {
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
	seen := map[uintptr]bool{getg(): true}
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
