package batcher_test

import (
	"bytes"
	"fmt"
	"os"
	"sync"

	"github.com/snail-log/snail/batcher"
)

// Many goroutines add; one output function gets the batches, in order.
func ExampleNew() {
	total := 0
	b, err := batcher.New(func(batch []int) error {
		total += len(batch) // one call per batch; batch is reused after return
		return nil
	}, batcher.WithBatchSize(1000),
		// Batches leave when full, or at Close; with a window
		// (WithWindow(5*time.Millisecond)) also that long after their
		// first item, which makes their count here depend on timing.
		batcher.WithWindow(0))
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := range 2500 {
		b.Add(i)
	}
	b.Close() // delivers the rest, stops the output goroutine
	fmt.Println(total, b.Stats().Batches)
	// Output: 2500 3
}

// Byte entries leave as one contiguous buffer: one write per batch.
func ExampleNewBytes() {
	lines, err := batcher.NewBytes(func(batch []byte, entries int) error {
		_, err := os.Stdout.Write(batch)
		return err
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Fprintf(lines, "first line\n")
	fmt.Fprintf(lines, "second line\n")
	lines.Close()
	// Output:
	// first line
	// second line
}

// With lanes, goroutines on different cores fill chunks of their own: the
// way to batch entries from goroutines that do other work between writes,
// such as loggers. Each goroutine's entries keep their order.
func ExampleWithLanes() {
	var mu sync.Mutex
	lines := 0
	b, err := batcher.NewBytes(func(batch []byte, entries int) error {
		mu.Lock()
		lines += bytes.Count(batch, []byte("\n")) // whole entries, back to back
		mu.Unlock()
		return nil
	}, batcher.WithLanes(true), batcher.WithCohort(false))
	if err != nil {
		fmt.Println(err)
		return
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				fmt.Fprintf(b, "goroutine %d entry %d\n", g, i)
			}
		})
	}
	wg.Wait()
	b.Close()
	fmt.Println(lines, b.Stats().Delivered)
	// Output: 8000 8000
}

// A destination that must hold batches until a peer acknowledges them keeps
// the batcher's buffers instead of copying them, and hands back buffers it
// is done with.
func ExampleWithKeep() {
	var inFlight [][]byte // batches sent and not yet acknowledged
	var free [][]byte     // acknowledged: reusable
	sent, allocated := 0, 0
	send := func(batch []byte, entries int) (spare []byte, err error) {
		inFlight = append(inFlight, batch) // sent as is, kept for a resend
		sent += entries
		if len(inFlight) > 2 { // the oldest is acknowledged
			free = append(free, inFlight[0][:0])
			inFlight = inFlight[1:]
		}
		if n := len(free); n > 0 {
			spare, free = free[n-1], free[:n-1]
			return spare, nil
		}
		allocated++
		return make([]byte, 0, cap(batch)), nil
	}
	b, err := batcher.NewBytes(func([]byte, int) error { return nil }, // entries larger than a buffer
		batcher.WithBatchBytes(4096), batcher.WithKeep(send),
		batcher.WithWindow(0)) // batches leave when full, and at Close
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := range 1000 {
		fmt.Fprintf(b, "entry %d\n", i)
	}
	b.Close()
	fmt.Println(b.Stats().Batches, "batches,", sent, "entries sent,", allocated, "buffers allocated")
	// Output: 8 batches, 1000 entries sent, 2 buffers allocated
}

// With WithMaxBuffers the batcher makes buffers while the output is busy,
// up to a bound, instead of making producers wait; past the bound the
// overflow policy applies.
func ExampleWithMaxBuffers() {
	release := make(chan struct{})
	delivered := 0
	b, err := batcher.New(func(batch []int) error {
		<-release // a slow output: busy with the first batch
		delivered += len(batch)
		return nil
	}, batcher.WithBatchSize(100), batcher.WithBuffers(2), batcher.WithMaxBuffers(8),
		batcher.WithOverflow(batcher.DropNewest), batcher.WithWindow(0))
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := range 1000 {
		b.Add(i) // never waits: a new buffer, or ErrDropped past 8
	}
	st := b.Stats()
	fmt.Println("buffers:", st.Buffers, "dropped:", st.Dropped)
	close(release)
	b.Close()
	fmt.Println("delivered:", delivered)
	// Output:
	// buffers: 8 dropped: 200
	// delivered: 800
}

// A server that answers requests as it reads them: replies gather in the
// batcher while more requests are buffered, and leave together, written by
// the reading goroutine itself, when it has nothing more to read.
func ExampleBatcher_ShipHere() {
	var out bytes.Buffer
	replies, err := batcher.New(func(batch []string) error {
		fmt.Fprintf(&out, "one write: %v\n", batch) // e.g. conn.Write
		return nil
	}, batcher.WithWindow(0)) // no timer: the reader decides when replies leave
	if err != nil {
		fmt.Println(err)
		return
	}
	buffered := []string{"a", "b", "c"} // requests already read off the socket
	for i, req := range buffered {
		replies.Add("ok " + req)
		if i == len(buffered)-1 { // nothing more to read: answer now
			replies.ShipHere()
		}
	}
	fmt.Print(out.String()) // written before ShipHere returned
	replies.Close()
	// Output: one write: [ok a ok b ok c]
}
