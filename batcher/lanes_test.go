package batcher

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestProducersSleepWhileBatchRetires holds the engine mutex in the middle
// of retiring a batch, as a descheduled holder would, and checks that the
// producers wait asleep meanwhile instead of spinning on their claims: the
// process must stay nearly idle while the holder is stuck.
func TestProducersSleepWhileBatchRetires(t *testing.T) {
	if !fastGetg {
		t.Skip("no lanes on " + runtime.GOARCH)
	}
	holding, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	testHookRetire = func() {
		once.Do(func() {
			close(holding)
			<-release
		})
	}
	defer func() { testHookRetire = nil }()

	b, err := NewBytes(func([]byte, int) error { return nil },
		WithLanes(true), WithBatchBytes(64<<10), WithWindow(0))
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	entry := make([]byte, 100)
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				if _, err := b.Write(entry); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	<-holding
	const hold = 300 * time.Millisecond
	cpu0, measured := processCPU()
	time.Sleep(hold)
	cpu1, _ := processCPU()
	cpu := cpu1 - cpu0
	stop.Store(true)
	close(release)
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !measured {
		t.Skip("no process CPU time here")
	}
	// Spinning producers keep every core busy: GOMAXPROCS x hold of CPU.
	// Asleep, they use next to none.
	if cpu > hold/3 {
		t.Errorf("producers used %v of CPU in the %v the retiring batch was held; want them asleep", cpu, hold)
	}
	t.Logf("%v of CPU in %v", cpu, hold)
}

// TestChunkCommitCounts commits entries to one chunk from goroutines on
// every P, as fast as they can: those on the lane's own P count without a
// locked instruction, the others with an atomic add, and none may be lost
// or counted twice. With more goroutines than Ps, the scheduler moves them
// from one kind to the other while they run.
func TestChunkCommitCounts(t *testing.T) {
	const goroutines, each = 8, 200_000
	for lane := range min(runtime.GOMAXPROCS(0), 4) {
		var r chunkRec
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range each {
					r.commit(lane)
				}
			})
		}
		wg.Wait()
		if got := r.copied(); got != goroutines*each {
			t.Errorf("lane %d: %d entries counted; want %d", lane, got, goroutines*each)
		}
	}
}
