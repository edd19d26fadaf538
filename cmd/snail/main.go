// Command snail is snail's binary. Today it has one subcommand, bench,
// which measures snail's batching on this machine; the collector daemon and
// the send command come with the network issue.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `snail: high-throughput structured logging

Usage:
  snail bench [flags]    measure snail's batched log writes into a file against
                         a write per entry, on this machine (embedded defaults)
  snail help             this text

Run "snail bench -h" for the flags of bench.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "bench":
		if err := bench(args[1:], stdout, stderr); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintln(stderr, "snail bench:", err)
			return 1
		}
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "snail: unknown command %q\n\n%s", args[0], usage)
	return 2
}
