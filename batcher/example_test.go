package batcher_test

import (
	"fmt"
	"os"
	"time"

	"github.com/snail-log/snail/batcher"
)

// Many goroutines add; one output function gets the batches, in order.
func ExampleNew() {
	total := 0
	b, err := batcher.New(func(batch []int) error {
		total += len(batch) // one call per batch; batch is reused after return
		return nil
	}, batcher.WithBatchSize(1000), batcher.WithWindow(5*time.Millisecond))
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
