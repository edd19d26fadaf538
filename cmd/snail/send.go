package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/snail-log/snail"
	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
)

const sendHelp = `Usage: snail send [flags] [FILE...]

Reads lines from the FILEs (or stdin, also as "-") and ships them, batched,
to a collector (--to) or into a file or device (--file). Each line is one
entry; a missing final newline is added. It exits once every line is acked
by the collector (or written to the file), with status 1 if any was not
(2 for a flag or a value it cannot take).
While the collector is unreachable or the file cannot be written (a full
disk), reading waits and lines back up in the input, with the error
reported once; it resumes when they can be delivered again
(--give-up-after bounds that wait, and the wait for the last acks too).
A collector that refuses this client
(a wrong token, TLS on one side only, a certificate that does not verify)
is not waited for, at the end either.
SIGINT or SIGTERM stops the reading: every whole line read before it is
still delivered (waiting up to --drain-timeout for the acks); a second
signal ends it at once (exit status 128 + the signal's number).

  tail -F app.log | snail send --to collector:7777 --stream app
  snail send --file /var/log/app.log < lines.txt

Every flag can also be set with the environment variable in brackets.

Flags:
`

// sendCmd runs snail send. When ctx ends (SIGINT, SIGTERM), it stops reading
// at the next read, delivers every whole line read before, and returns.
func sendCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("snail send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var to, file, stream, token, tokenFile, compress, tlsCA, tlsCert, tlsKey, tlsName, spool string
	var spoolSize int64
	var maxLine int64
	var window, drain, giveUp time.Duration
	var quiet, useTLS bool
	fileMode := filelog.DefaultMode
	fs.StringVar(&to, "to", "", "collector address host:port; a comma-separated list fails over [SNAIL_TO]")
	fs.StringVar(&file, "file", "", "write to this file or device instead of a collector [SNAIL_FILE]")
	fs.Var(modeFlag{&fileMode}, "file-mode", "permissions of the --file it creates, an octal `mode` [SNAIL_FILE_MODE]")
	fs.StringVar(&stream, "stream", netlog.DefaultStreamName, "stream name: the collector writes it to DIR/NAME.log [SNAIL_STREAM]")
	fs.StringVar(&token, "token", "", "shared token the collector expects (ps shows it to every user: prefer --token-file) [SNAIL_TOKEN]")
	fs.StringVar(&tokenFile, "token-file", "", "file holding the token, on a line of its own (# comments) [SNAIL_TOKEN_FILE]")
	fs.StringVar(&compress, "compress", "none", "compression on the wire: none, s2 or zstd [SNAIL_COMPRESS]")
	fs.BoolVar(&useTLS, "tls", false, "speak TLS, verifying the collector against the system's roots (or --tls-ca); any --tls-* flag implies it [SNAIL_TLS]")
	fs.StringVar(&tlsCA, "tls-ca", "", "PEM CA file: speak TLS and verify the collector against it [SNAIL_TLS_CA]")
	fs.StringVar(&tlsName, "tls-server-name", "", "name to verify the collector's certificate against; default: the host of --to [SNAIL_TLS_SERVER_NAME]")
	fs.StringVar(&tlsCert, "tls-cert", "", "PEM client certificate file, for a collector that requires one [SNAIL_TLS_CERT]")
	fs.StringVar(&tlsKey, "tls-key", "", "PEM key file of --tls-cert [SNAIL_TLS_KEY]")
	fs.DurationVar(&window, "window", 100*time.Millisecond, "longest a line waits for others before its batch leaves [SNAIL_WINDOW]")
	fs.DurationVar(&giveUp, "give-up-after", 0, "while the collector is unreachable (or the file cannot be written), reading waits and the line is offered again; after failing this long, stop reading and exit 1 (and end the wait for the acks at the end once the collector has been unreachable this long); 0: wait until stopped [SNAIL_GIVE_UP_AFTER]")
	fs.DurationVar(&drain, "drain-timeout", netlog.DefaultDrainTimeout, "at the end, how long to wait for the collector's acks [SNAIL_DRAIN_TIMEOUT]")
	fs.StringVar(&spool, "spool", "", "disk spool directory: every batch is written there before it is sent, and what the collector has not acked when snail send ends (or is killed) is sent first by the next snail send with the same spool (and --stream: a spool holding another stream's lines is refused) [SNAIL_SPOOL]")
	fs.Var(sizeFlag{&spoolSize}, "spool-size", "most bytes the spool holds (a `size`); when full, reading waits (default 1GiB) [SNAIL_SPOOL_SIZE]")
	fs.Var(sizeFlag{&maxLine}, "max-line", "longest line taken (a `size`); a longer one is dropped, reported and counted as not delivered, so that a line without an end does not take all memory; 0: the collector's default frame limit (default 16MiB) [SNAIL_MAX_LINE]")
	fs.BoolVar(&quiet, "q", false, "do not print the summary line")
	fs.Usage = func() {
		fmt.Fprint(stderr, sendHelp)
		fs.PrintDefaults()
	}
	if err := envFlags(fs, map[string]string{
		"to": "SNAIL_TO", "file": "SNAIL_FILE", "file-mode": "SNAIL_FILE_MODE", "stream": "SNAIL_STREAM", "token": "SNAIL_TOKEN", "token-file": "SNAIL_TOKEN_FILE", "compress": "SNAIL_COMPRESS",
		"tls": "SNAIL_TLS", "tls-ca": "SNAIL_TLS_CA", "tls-server-name": "SNAIL_TLS_SERVER_NAME", "tls-cert": "SNAIL_TLS_CERT", "tls-key": "SNAIL_TLS_KEY", "window": "SNAIL_WINDOW",
		"drain-timeout": "SNAIL_DRAIN_TIMEOUT", "spool": "SNAIL_SPOOL", "spool-size": "SNAIL_SPOOL_SIZE",
		"give-up-after": "SNAIL_GIVE_UP_AFTER", "max-line": "SNAIL_MAX_LINE",
	}); err != nil {
		return err
	}
	fromEnv := setFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (to == "") == (file == "") {
		return usageError{errors.New("give exactly one of --to ADDR and --file PATH")}
	}
	if file != "" {
		// Flags of the way to a collector mean nothing with --file: say
		// so rather than ignore them (environment variables may be set
		// for other runs, and are let be).
		set := setFlags(fs)
		for _, name := range []string{"spool", "spool-size", "token", "token-file", "compress", "tls", "tls-ca", "tls-server-name", "tls-cert", "tls-key", "stream", "drain-timeout"} {
			if set[name] && !fromEnv[name] {
				return flagError("--%s goes with --to, not --file", name)
			}
		}
	} else if set := setFlags(fs); set["file-mode"] && !fromEnv["file-mode"] {
		return flagError("--file-mode goes with --file, not --to")
	}
	if maxLine == 0 {
		maxLine = defaultMaxLine
	}
	if giveUp < 0 {
		return flagError("--give-up-after %v: must not be negative", giveUp)
	}
	rep := newReporter(stderr, "snail send: ")
	sopts := []sink.Option{sink.WithWindow(window), sink.WithErrorHandler(rep.report)}
	var w *sink.Writer
	var ns *netlog.Stream
	var err error
	var refused atomic.Uint64 // lines a device refused
	dest := file
	if to != "" {
		comp, err := encoder.ParseCompression(compress)
		if err != nil {
			return usageError{fmt.Errorf("--compress: %w", err)}
		}
		if err := oneToken(args, &token, &tokenFile); err != nil {
			return usageError{err}
		}
		if tokenFile != "" {
			if token, err = netlog.ReadToken(tokenFile); err != nil {
				return fmt.Errorf("--token-file: %w", err)
			}
		}
		// At the end, Close waits up to --drain-timeout for the acks, for
		// a collector that is down too. Unavailability is reported after
		// half of it (at most netlog's default report delay).
		if drain <= 0 {
			return flagError("--drain-timeout %v: must be positive", drain)
		}
		report := max(min(drain/2, netlog.DefaultReportAfter), time.Nanosecond)
		nopts := []netlog.ClientOption{netlog.WithStreamName(stream), netlog.WithToken(token), netlog.WithCompression(comp),
			netlog.WithDrainTimeout(drain), netlog.WithReportAfter(report),
			netlog.WithGiveUpAfter(giveUp), netlog.WithErrorHandler(rep.report)}
		if spool != "" {
			if spoolSize == 0 {
				spoolSize = netlog.DefaultSpoolBytes
			}
			nopts = append(nopts, netlog.WithSpool(spool, spoolSize, netlog.SpoolBlock), netlog.WithSpoolAll())
		}
		if (tlsCert == "") != (tlsKey == "") {
			return flagError("--tls-cert and --tls-key go together")
		}
		if useTLS || tlsCA != "" || tlsName != "" || tlsCert != "" || tlsKey != "" {
			tc, err := snail.ClientTLS(tlsCA, tlsCert, tlsKey, tlsName)
			if err != nil {
				return fmt.Errorf("--tls-*: %w", err)
			}
			nopts = append(nopts, netlog.WithTLS(tc))
		}
		if ns, err = netlog.Dial(to, nopts...); err != nil {
			return err
		}
		if w, err = sink.New(ns, sopts...); err != nil {
			ns.Close()
			return err
		}
		dest = to + " stream " + stream
	} else {
		// A file deleted or moved while snail send writes it is
		// followed: the next lines go to a new file at the path. A line
		// a device refuses (/dev/kmsg's limit) is reported and counted.
		w, err = snail.OpenFile(file, []filelog.Option{filelog.WithMode(fileMode), filelog.WithFollowPath(time.Second), filelog.WithErrorHandler(func(err error) {
			if errors.Is(err, filelog.ErrRecordRefused) {
				refused.Add(1)
			}
			rep.report(err)
		})}, sopts...)
		if err != nil {
			return err
		}
	}

	inputs := fs.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}
	in := &input{stopped: make(chan struct{}), giveUp: giveUp, maxLine: int(min(maxLine, math.MaxInt32)), resumed: func(waited time.Duration) {
		rep.note(fmt.Sprintf("delivering again after waiting %v", waited.Round(time.Millisecond)))
	}, report: rep.report, outPath: file}
	var lines, bytes atomic.Int64
	readDone := make(chan error, 1)
	in.busy.Lock() // held by the reader except while it waits in a read
	go func() {
		defer in.busy.Unlock()
		readDone <- readInputs(in, inputs, stdin, w, &lines, &bytes)
	}()
	var readErr error
	interrupted := false
	select {
	case readErr = <-readDone:
	case <-ctx.Done():
		interrupted = true
		close(in.stopped)
		in.busy.Lock() // the reader waits in a read: every whole line before is written
		rep.note("stopped by a signal; delivering the lines read so far")
	}
	closeErr := w.Close()
	if interrupted {
		in.busy.Unlock() // let a reader blocked in a read return and end
	}
	st := w.Stats()
	lost, kept := st.Lost+st.Dropped+in.untaken+refused.Load(), uint64(0)
	if ns != nil {
		nst := ns.Stats()
		lost += nst.Lost
		kept = nst.Spooled
	}
	endErr := errors.Join(readErr, closeErr)
	if endErr != nil {
		rep.report(endErr) // before the summary, which ends the output; what the handlers printed already is not repeated
	}
	if !quiet {
		var left string
		if spool != "" { // counts the lines an earlier run left in it too
			left = fmt.Sprintf(", %d acked", ns.Stats().Entries)
		}
		if kept > 0 {
			left += fmt.Sprintf(", %d kept in the spool %s for the next run", kept, spool)
		}
		rep.note(fmt.Sprintf("%d lines, %d bytes to %s; %d not delivered%s", lines.Load(), bytes.Load(), dest, lost, left))
	}
	if endErr != nil {
		return errReported
	}
	if lost > 0 { // lines dropped for their length: reported as they went
		return errReported
	}
	return nil
}

// errReported ends a command with status 1 after its errors were printed.
var errReported = errors.New("errors reported")

// reporter prints errors to w, one line per line of the error, each with a
// prefix, and skips lines it printed lately: the error a batch met reaches
// the error handler first and Close's return again.
type reporter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	seen   map[string]bool // bounded: cleared when full
}

func newReporter(w io.Writer, prefix string) *reporter {
	return &reporter{w: w, prefix: prefix, seen: make(map[string]bool)}
}

// note prints msg, with the prefix.
func (r *reporter) note(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintln(r.w, r.prefix+msg)
}

func (r *reporter) report(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, line := range strings.Split(err.Error(), "\n") {
		if line == "" || r.seen[line] {
			continue
		}
		if len(r.seen) >= 64 {
			clear(r.seen)
		}
		r.seen[line] = true
		fmt.Fprintln(r.w, r.prefix+line)
	}
}

// readInputs copies the lines of each input in turn to w, counting them,
// until the inputs end, the destination fails for good or in is stopped.
// An input that cannot be opened or read is reported and skipped, as cat
// does.
func readInputs(in *input, names []string, stdin io.Reader, w io.Writer, lines, bytes *atomic.Int64) error {
	var errs []error
	for _, name := range names {
		if err := readInput(in, name, stdin, w, lines, bytes); err != nil {
			if errors.Is(err, errStopped) {
				break
			}
			errs = append(errs, err)
			if _, ok := errors.AsType[*deliverError](err); ok {
				break
			}
			if in.report != nil {
				in.report(err) // now, not only at the end: the next input may be a long one
			}
		}
	}
	return errors.Join(errs...)
}

func readInput(in *input, name string, stdin io.Reader, w io.Writer, lines, bytes *atomic.Int64) error {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	if f, ok := r.(*os.File); ok && in.outPath != "" && sameRegular(f, in.outPath) {
		// Read while it is written, it would never end (cat refuses too).
		return fmt.Errorf("%s: input file is output file", name)
	}
	in.r = r
	if err := copyLines(w, in, lines, bytes); err != nil {
		if errors.Is(err, errStopped) {
			return err
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// sameRegular reports whether f is the regular file at path.
func sameRegular(f *os.File, path string) bool {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	out, err := os.Stat(path)
	return err == nil && os.SameFile(fi, out)
}

// deliverError is an error of the destination, not of an input: it ends
// the reading of every input.
type deliverError struct{ err error }

func (e *deliverError) Error() string { return e.err.Error() }
func (e *deliverError) Unwrap() error { return e.err }

// errStopped ends the input after a signal.
var errStopped = errors.New("input stopped")

// input is the reader of snail send's current input, which a signal can
// stop between reads. The reading goroutine holds busy except while it waits
// for input, so that whoever stops the input and then takes busy knows that
// every whole line read before was handed on (see Read).
type input struct {
	r       io.Reader
	busy    sync.Mutex
	stopped chan struct{}
	giveUp  time.Duration              // how long write offers a line to a failing destination; 0: until stopped
	maxLine int                        // longest line taken, newline included
	untaken uint64                     // lines read and never taken, set before the reader ends
	resumed func(waited time.Duration) // called when lines are taken again after a wait
	report  func(error)                // called with the error of an input that is skipped
	outPath string                     // the --file written, "" for a collector
}

// transient reports whether err may go away by itself: the collector is
// unreachable or cannot write for now, or the disk is full. Others end
// the input at once: a collector that refuses this client (a wrong token,
// TLS on one side only, a certificate that does not verify, a stream name
// it rejects), a pipe whose reader left, a device that refuses.
func transient(err error) bool {
	if netlog.Permanent(err) {
		return false
	}
	return errors.Is(err, netlog.ErrUnavailable) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// defaultMaxLine is snail send's longest line unless told otherwise: the
// collector's default frame limit, past which it refuses the batch anyway.
const defaultMaxLine = 16 << 20

// retryEvery is how often a line is offered again to a failing destination.
const retryEvery = 100 * time.Millisecond

// write hands line to w. While the destination fails for a transient
// reason (the collector is unreachable past the report delay with the
// window full, the disk is full), w refuses entries and retries its
// batch; write offers the line again every retryEvery, so that reading
// waits and the input backs up (in a pipe, its writer blocks) instead of
// the lines being lost. The sink's error handler has reported the failure.
// It gives up after giveUp, or when the input is stopped, counting the
// line as not taken.
func (in *input) write(w io.Writer, line []byte) error {
	var failingSince time.Time
	var timer *time.Timer
	for {
		_, err := w.Write(line)
		if err == nil && !failingSince.IsZero() && in.resumed != nil {
			in.resumed(time.Since(failingSince))
		}
		if err == nil {
			return nil
		}
		if !transient(err) {
			in.untaken++
			return err
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		if in.giveUp > 0 && time.Since(failingSince) >= in.giveUp {
			in.untaken++
			return err
		}
		if timer == nil {
			timer = time.NewTimer(retryEvery)
			defer timer.Stop()
		} else {
			timer.Reset(retryEvery)
		}
		select {
		case <-in.stopped:
			in.untaken++
			return errStopped
		case <-timer.C:
		}
	}
}

// Read reads from the current input. Where it can (a file on unix), it
// waits for input without holding busy and reads holding it: a read that
// follows readiness does not block, and what it returns is handed on even
// if a signal comes meanwhile, since the stopper waits for busy. (Should
// another process take the input between the readiness and the read, as
// two readers of one pipe can, the read blocks and a stop waits for the
// next input.) Elsewhere the read itself may block, so it runs without
// busy, and what it returns after a stop is dropped.
func (in *input) Read(p []byte) (int, error) {
	if in.isStopped() {
		return 0, errStopped
	}
	if f, ok := in.r.(*os.File); ok && canWaitReadable {
		in.busy.Unlock()
		err := waitReadable(f, in.stopped)
		in.busy.Lock()
		if err != nil || in.isStopped() {
			return 0, errStopped
		}
		return f.Read(p)
	}
	in.busy.Unlock()
	n, err := in.r.Read(p)
	in.busy.Lock()
	if in.isStopped() {
		return 0, errStopped
	}
	return n, err
}

func (in *input) isStopped() bool {
	select {
	case <-in.stopped:
		return true
	default:
		return false
	}
}

// copyLines writes each line of r to w as one entry, adding a final newline
// where missing. A line longer than in.maxLine is read through and dropped,
// so that memory stays bounded: reported, and counted as not delivered.
func copyLines(w io.Writer, in *input, lines, n *atomic.Int64) error {
	r := io.Reader(in)
	br := bufio.NewReaderSize(r, 256<<10)
	var long []byte
	skipping := false // in a line over the limit
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !skipping && len(long)+len(line) >= in.maxLine {
				skipping, long = true, nil
			}
			if !skipping {
				long = append(long, line...)
			}
			continue
		}
		if len(long) > 0 {
			line = append(long, line...)
			long = long[:0]
			if cap(long) > 1<<20 {
				long = nil // do not hold a long line's memory for the short ones after it
			}
		}
		switch {
		case errors.Is(err, errStopped): // a line cut by a signal is dropped
		case skipping || len(line) > 0 && entryLen(line) > in.maxLine:
			lines.Add(1)
			in.untaken++
			if in.report != nil {
				in.report(fmt.Errorf("a line longer than --max-line (%d bytes) was dropped", in.maxLine))
			}
		case len(line) > 0:
			if line[len(line)-1] != '\n' {
				line = append(line[:len(line):len(line)], '\n') // a copy: line is the reader's buffer
			}
			lines.Add(1) // read: delivered, or counted as not
			n.Add(int64(len(line)))
			if werr := in.write(w, line); werr != nil {
				if errors.Is(werr, errStopped) {
					return werr
				}
				return &deliverError{werr}
			}
		}
		skipping = false
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// entryLen is the length of line as an entry, with its newline.
func entryLen(line []byte) int {
	if line[len(line)-1] == '\n' {
		return len(line)
	}
	return len(line) + 1
}

// setFlags returns the names of the flags of fs set so far.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}
