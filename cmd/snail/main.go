// Command snail is snail's binary: the collector daemon (snail collector),
// a line shipper for shell pipelines (snail send), and a benchmark of
// snail's batching on this machine (snail bench).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/snail-log/snail/batcher"
	"github.com/snail-log/snail/collector"
	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
)

const usage = `snail: high-throughput structured logging

Usage:
  snail collector [flags]      run the collector daemon: accept snail clients on
                               --listen (127.0.0.1:7777), write each stream under
                               --dir (./logs), ack every batch
  snail send [flags] [FILE...] ship lines from files or stdin to a collector
                               (--to ADDR) or batched into a file (--file PATH)
  snail bench [flags]          log through zap -> snail -> a collector in this
                               process, and into a file, against the logger's
                               usual file writer (embedded defaults)
  snail version                which snail this is: version, commit, Go,
                               protocol
  snail help                   this text

Run "snail COMMAND -h" for the flags of a command.
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
		return exit("bench", bench(args[1:], stdout, stderr), stderr)
	case "collector":
		ctx, stop, hup := signals()
		defer stop()
		return exit("collector", collectorCmd(ctx, args[1:], hup, stdout, stderr), stderr)
	case "send":
		ctx, stop := interrupts()
		defer stop()
		return exit("send", sendCmd(ctx, args[1:], os.Stdin, stdout, stderr), stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, version())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "snail: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// interrupts returns a context that ends at the first SIGINT or SIGTERM;
// the second ends the process at once, with the status a shell gives a
// death by that signal (128 + its number). It is handled here, not left to
// the default action once the first has come: a process started with
// SIGINT ignored (in the background of a script) takes the first through
// signal.Notify, and would ignore the second. stop lets the signals be.
func interrupts() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		cancel()
		select {
		case s := <-sigs:
			n, _ := s.(syscall.Signal)
			os.Exit(128 + int(n))
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

// usageError is an error of the command line itself (a flag the command
// does not have, a flag without its value or with one it cannot take,
// arguments it does not take): exit status 2, as the flag package gives
// its own.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// flagError is a usageError of a flag's value.
func flagError(format string, a ...any) error {
	return usageError{fmt.Errorf(format, a...)}
}

// invalidConfig are the errors of the packages' options and configs: from
// them, of a value the command line gave (the commands build their options
// from flags only).
var invalidConfig = []error{collector.ErrInvalidConfig, netlog.ErrInvalidOption, sink.ErrInvalidOption,
	encoder.ErrInvalidOption, filelog.ErrInvalidOption, batcher.ErrInvalidOption}

func isUsage(err error) bool {
	if _, ok := errors.AsType[usageError](err); ok {
		return true
	}
	for _, e := range invalidConfig {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// parseFlags parses args into fs, its errors usage errors (the flag
// package has printed them, with the usage, already).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}

// exit turns a command's error into an exit status: 0 for none or -h, 2 for
// a usage error, 1 otherwise. The error is printed last, below the usage a
// flag error printed.
func exit(cmd string, err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errReported):
		return 1
	}
	newReporter(stderr, "snail "+cmd+": ").report(err)
	if isUsage(err) {
		return 2
	}
	return 1
}
