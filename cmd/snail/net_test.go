//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/snail-log/snail"
	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/internal/testnet"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
)

// daemon is `snail collector` running as a real child process.
type daemon struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
}

// syncBuffer is a bytes.Buffer that a child's output can fill while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr returns a loopback address that refuses connections until a
// daemon of the test serves it (startDaemon), for a collector that is
// down when its clients start, or that restarts.
func freeAddr(t *testing.T) string {
	t.Helper()
	return testnet.Reserve(t)
}

// held maps the addresses of freeAddr that a daemon served to their
// listeners, which the test keeps for the daemons that follow.
var held sync.Map // string -> *net.TCPListener

// startDaemon runs the test binary as `snail collector --dir DIR extra...`
// and waits until it serves. With addr "", the daemon listens on
// 127.0.0.1:0 and says where in its log. Otherwise addr is freeAddr's, and
// the daemon is handed its socket as systemd's socket activation does
// (--listen systemd), so that no other process can take the port before
// it serves, and a restarted daemon finds the connections made while it
// was down waiting (the test keeps the socket).
func startDaemon(t *testing.T, addr, dir string, extra ...string) *daemon {
	t.Helper()
	args := []string{"collector", "--dir", dir}
	var cmd *exec.Cmd
	if addr == "" {
		args = append(append(args, "--listen", "127.0.0.1:0"), extra...)
		cmd = exec.Command(os.Args[0], args...)
	} else {
		l, ok := held.Load(addr)
		if !ok {
			l = testnet.Listen(t, addr)
			held.Store(addr, l)
			t.Cleanup(func() {
				held.Delete(addr)
				l.(net.Listener).Close()
			})
		}
		args = append(append(args, "--listen", "systemd"), extra...)
		cmd = activatedCmd(t, []net.Listener{l.(net.Listener)}, args...)
	}
	cmd.Env = append(os.Environ(), "SNAIL_TEST_MAIN=1")
	d := &daemon{cmd: cmd, addr: addr, stderr: new(syncBuffer)}
	cmd.Stderr = d.stderr
	startChild(t, cmd)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if served := d.logged("collector serving", "addr"); served != "" {
			d.addr = served
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector not serving after 20 s:\n%s", d.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startChild starts cmd, and kills it when the test ends if it still runs.
func startChild(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
}

// activatedCmd is the command that runs the test binary with args, handed
// the listeners as systemd's socket activation hands its sockets over:
// from descriptor 3, with LISTEN_FDS their count and LISTEN_PID the pid of
// the process (the shell's, which exec keeps).
func activatedCmd(t *testing.T, ls []net.Listener, args ...string) *exec.Cmd {
	t.Helper()
	var files []*os.File
	for _, l := range ls {
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() }) // the child has its own once started
		files = append(files, f)
	}
	script := fmt.Sprintf(`LISTEN_PID=$$ LISTEN_FDS=%d exec "$0" "$@"`, len(ls))
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, os.Args[0]}, args...)...)
	cmd.ExtraFiles = files
	return cmd
}

// logged returns field key of the first line of the daemon's JSON log
// whose message is msg, or "".
func (d *daemon) logged(msg, key string) string {
	for _, line := range strings.Split(d.stderr.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			v, _ := rec[key].(string)
			return v
		}
	}
	return ""
}

func (d *daemon) signal(t *testing.T, sig os.Signal) {
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func (d *daemon) wait(t *testing.T) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("collector exited with %v\n%s", err, d.stderr)
		}
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		t.Fatalf("collector did not stop\n%s", d.stderr)
	}
}

// checkLines fails unless path holds "id=K ..." for K in 0..n-1, each once.
func checkLines(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := make([]bool, n)
	got := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		k, err := strconv.Atoi(strings.TrimPrefix(strings.Fields(l)[0], "id="))
		if err != nil || k < 0 || k >= n || !strings.HasSuffix(l, "end") {
			t.Fatalf("bad line %q", l)
		}
		if seen[k] {
			t.Fatalf("id %d twice", k)
		}
		seen[k] = true
		got++
	}
	if got != n {
		t.Fatalf("%d lines, want %d", got, n)
	}
}

func writeLines(t *testing.T, path string, from, n int) {
	t.Helper()
	var b bytes.Buffer
	for k := from; k < from+n; k++ {
		fmt.Fprintf(&b, "id=%d {\"level\":\"info\",\"msg\":\"shipped by snail send\",\"path\":\"/api/v1/users\"} end\n", k)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The end-to-end path through the binary: `snail collector` as a process,
// `snail send` shipping a file of 3.2M lines (64 x 50k, as many as the
// library test), every line once in the output; then SIGHUP reopens the
// output after it was moved, and SIGTERM stops the daemon cleanly.
func TestSendToCollectorProcess(t *testing.T) {
	n := 64 * 50_000
	if testing.Short() {
		n = 64 * 2_000
	}
	dir, in := t.TempDir(), filepath.Join(t.TempDir(), "lines.txt")
	writeLines(t, in, 0, n)
	d := startDaemon(t, "", dir, "--metrics", "127.0.0.1:0", "--file-mode", "0600")
	var out, errb bytes.Buffer
	if err := sendCmd(context.Background(), []string{"--to", d.addr, "--stream", "app", "--compress", "s2", in}, nil, &out, &errb); err != nil {
		t.Fatalf("send: %v\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), fmt.Sprintf("%d lines", n)) || !strings.Contains(errb.String(), "; 0 not delivered") {
		t.Fatalf("summary: %q", errb.String())
	}
	checkLines(t, filepath.Join(dir, "app.log"), n)
	checkMode(t, filepath.Join(dir, "app.log"), 0o600)

	// logrotate: move the file away, SIGHUP, and the next lines go to a new
	// file at the old path.
	if err := os.Rename(filepath.Join(dir, "app.log"), filepath.Join(dir, "app.log.1")); err != nil {
		t.Fatal(err)
	}
	d.signal(t, syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.stderr.String(), "reopened output files") {
		if time.Now().After(deadline) {
			t.Fatalf("no reopen logged:\n%s", d.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	writeLines(t, in, 0, 100)
	if err := sendCmd(context.Background(), []string{"--to", d.addr, "--stream", "app", "-q", in}, nil, &out, &errb); err != nil {
		t.Fatal(err)
	}
	checkLines(t, filepath.Join(dir, "app.log"), 100)

	d.signal(t, syscall.SIGTERM)
	d.wait(t)
	if !strings.Contains(d.stderr.String(), "collector stopped") {
		t.Fatalf("no clean stop logged:\n%s", d.stderr)
	}
	if !strings.Contains(d.stderr.String(), `"version":"snail `) {
		t.Fatalf("no version logged at start:\n%s", d.stderr)
	}
}

func TestSendToFileAndStdin(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.log")
	var stdin bytes.Buffer
	for k := range 1000 {
		fmt.Fprintf(&stdin, "id=%d end\n", k)
	}
	stdin.WriteString("id=1000 end") // no final newline
	var o, e bytes.Buffer
	if err := sendCmd(context.Background(), []string{"--file", out, "--file-mode", "600"}, &stdin, &o, &e); err != nil {
		t.Fatal(err)
	}
	checkLines(t, out, 1001)
	checkMode(t, out, 0o600)
}

// checkMode checks the permissions of the file at path.
func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %04o, want %04o", path, got, want)
	}
}

// An input that cannot be opened is reported and skipped, as cat does:
// the inputs after it are still sent, and the exit status is 1.
func TestSendSkipsAMissingInput(t *testing.T) {
	dir := t.TempDir()
	a, b, out := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "out.log")
	writeLines(t, a, 0, 10)
	writeLines(t, b, 10, 10)
	var e bytes.Buffer
	err := sendCmd(context.Background(), []string{"--file", out, a, filepath.Join(dir, "missing"), b}, nil, io.Discard, &e)
	if err == nil || !strings.Contains(e.String(), "missing: no such file") {
		t.Fatalf("send: %v\n%s", err, e.String())
	}
	checkLines(t, out, 20)
}

// The output file among the inputs (or as stdin, or through a link) is
// refused and skipped, as cat refuses it: read while it is written, it
// grew without end (4.7 GB in 10 s) until the disk was full.
func TestSendRefusesItsOutputAsInput(t *testing.T) {
	dir := t.TempDir()
	a, b, out, link := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "out.log"), filepath.Join(dir, "link")
	writeLines(t, a, 0, 10)
	writeLines(t, b, 10, 10)
	if err := os.Symlink(out, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		stdin bool // out.log as stdin
	}{
		{"an argument", []string{"--file", out, a, out, b}, false},
		{"through a link", []string{"--file", out, a, link, b}, false},
		{"stdin", []string{"--file", out, a, "-", b}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(out)
			writeLines(t, out, 20, 1000)
			var stdin io.Reader
			if tc.stdin {
				f, err := os.Open(out)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				stdin = f
			}
			// Should it loop again, a signal stops it past 1 MiB.
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer cancel()
				for {
					select {
					case <-done:
						return
					case <-time.After(10 * time.Millisecond):
						if fi, err := os.Stat(out); err == nil && fi.Size() > 1<<20 {
							return
						}
					}
				}
			}()
			var e bytes.Buffer
			err := sendCmd(ctx, tc.args, stdin, io.Discard, &e)
			close(done)
			if err == nil || !strings.Contains(e.String(), ": input file is output file") {
				t.Fatalf("send: %v\n%s", err, e.String())
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			want := 1000 + 20 // its own lines, then a's and b's
			if got := strings.Count(string(data), "\n"); got != want {
				t.Fatalf("%d lines in the output, want %d", got, want)
			}
		})
	}
	// A device is not a file that grows: /dev/null in and out is fine.
	if err := sendCmd(context.Background(), []string{"--file", os.DevNull, os.DevNull}, nil, io.Discard, io.Discard); err != nil {
		t.Fatalf("send --file /dev/null /dev/null: %v", err)
	}
}

// A line over --max-line is read through and dropped, not held in memory
// whole: the lines around it arrive, the drop is reported and counted, and
// the exit status is 1.
func TestSendDropsALineTooLong(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out.log")
	var b bytes.Buffer
	b.WriteString("id=0 end\n")
	b.Write(bytes.Repeat([]byte("x"), 1<<20)) // over the limit, across many reads
	b.WriteString("\nid=1 end\n")
	b.Write(bytes.Repeat([]byte("y"), 100)) // over the limit within one read, last, without a newline
	if err := os.WriteFile(in, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var e bytes.Buffer
	err := sendCmd(context.Background(), []string{"--file", out, "--max-line", "64", in}, nil, io.Discard, &e)
	if !errors.Is(err, errReported) || !strings.Contains(e.String(), "4 lines") || !strings.Contains(e.String(), "2 not delivered") ||
		strings.Count(e.String(), "longer than --max-line") != 1 {
		t.Fatalf("send: %v\n%s", err, e.String())
	}
	checkLines(t, out, 2)
}

// A line that a datagram socket refuses (longer than it takes, EMSGSIZE)
// is reported and counted as not delivered; the lines around it go, once.
func TestSendCountsALineADeviceRefuses(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "snd") // short: sun_path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "dg.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in := "id=0\n" + strings.Repeat("x", 1<<20) + "\nid=1\n"
	var e bytes.Buffer
	err = sendCmd(context.Background(), []string{"--file", sock}, strings.NewReader(in), io.Discard, &e)
	if !errors.Is(err, errReported) || !strings.Contains(e.String(), "3 lines") || !strings.Contains(e.String(), "1 not delivered") ||
		!strings.Contains(e.String(), "record refused") {
		t.Fatalf("send: %v\n%s", err, e.String())
	}
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, want := range []string{"id=0\n", "id=1\n"} {
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("datagram %q, %v; want %q", buf[:n], err, want)
		}
	}
}

// A write error reaches the user once: the sink's error handler prints it
// when the batch fails, and Close's return, the same error, is not printed
// again. Every line of the output names the command.
func TestSendReportsAnErrorOnce(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full:", err)
	}
	var o, e bytes.Buffer
	err := sendCmd(context.Background(), []string{"--file", "/dev/full"}, strings.NewReader("a\nb\nc\n"), &o, &e)
	if !errors.Is(err, errReported) {
		t.Fatalf("send to /dev/full: %v", err)
	}
	if n := strings.Count(e.String(), "no space left on device"); n != 1 {
		t.Errorf("the error printed %d times:\n%s", n, e.String())
	}
	for _, line := range strings.Split(strings.TrimSuffix(e.String(), "\n"), "\n") {
		if !strings.HasPrefix(line, "snail send: ") {
			t.Errorf("line without the command's name: %q", line)
		}
	}
	if !strings.Contains(e.String(), "3 not delivered") {
		t.Errorf("summary: %s", e.String())
	}
}

// TestSendErrors: `snail send` refuses what it cannot do as asked.
func TestSendErrors(t *testing.T) {
	var o, e bytes.Buffer
	for _, tc := range []struct {
		args  []string
		usage bool // exit status 2: a value the command cannot take
	}{
		{[]string{}, true}, // neither --to nor --file
		{[]string{"--to", "x:1", "--file", "y"}, true}, // both
		{[]string{"--to", "127.0.0.1:1", "--compress", "lz4"}, true},
		{[]string{"--to", "127.0.0.1:1", "--stream", "../etc"}, true},
		{[]string{"--to", "127.0.0.1:1", "--stream", strings.Repeat("a", 300)}, true},
		{[]string{"--to", "nohost"}, true},
		{[]string{"--to", "127.0.0.1:1", "--window", "-1s"}, true},
		{[]string{"--to", "127.0.0.1:1", "--spool", t.TempDir(), "--spool-size", "1KiB"}, true},
		{[]string{"--file", "/nonexistent-dir/x.log"}, false},
		{[]string{"--to", "127.0.0.1:1", "--file-mode", "644"}, true}, // a file's, not a collector's
		{[]string{"--file", "y", "--file-mode", "999"}, true},
		{[]string{"--file", "y", "--file-mode", "444"}, true},               // not writable by snail itself
		{[]string{"--to", "127.0.0.1:1", "--tls-cert", "cert.pem"}, true},   // without its key
		{[]string{"--to", "127.0.0.1:1", "--tls-ca", "missing.pem"}, false}, // a file the machine does not have
		{[]string{"--to", "127.0.0.1:1", "--give-up-after", "-1s"}, true},
		{[]string{"--to", "127.0.0.1:1", "--drain-timeout", "0s"}, true},
		{[]string{"--file", "y", "--max-line", "-1"}, true},
	} {
		err := sendCmd(context.Background(), tc.args, strings.NewReader(""), &o, &e)
		if err == nil || isUsage(err) != tc.usage {
			t.Errorf("send %q: %v; want an error, usage %v", tc.args, err, tc.usage)
		}
	}
	// The way to a collector has no meaning with --file: said, not
	// ignored; unless it comes from the environment, set for other runs.
	out := filepath.Join(t.TempDir(), "out.log")
	for _, flag := range []string{"--token", "--spool", "--compress", "--stream"} {
		err := sendCmd(context.Background(), []string{"--file", out, flag, "x"}, strings.NewReader(""), &o, &e)
		if err == nil || !strings.Contains(err.Error(), flag+" goes with --to") {
			t.Errorf("send --file with %s: %v", flag, err)
		}
	}
	t.Setenv("SNAIL_TOKEN", "for another run")
	if err := sendCmd(context.Background(), []string{"--file", out}, strings.NewReader("a line\n"), &o, &e); err != nil {
		t.Errorf("send --file with SNAIL_TOKEN set: %v", err)
	}
}

// A line larger than the collector takes (here over 1 MiB, so that it
// leaves as a batch of its own, against --max-frame 64KiB) is given up:
// `snail send` reports it and exits 1 at once, and the lines around it
// arrive, instead of the batch going again on every new connection.
func TestSendGivesUpALineTooLarge(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, "", dir, "--max-frame", "64KiB")
	in := "id=0 end\n" + strings.Repeat("x", 3<<19) + "\nid=1 end\n"
	var out, errb bytes.Buffer
	err := sendCmd(context.Background(), []string{"--to", d.addr, "--stream", "big"}, strings.NewReader(in), &out, &errb)
	if err == nil || !strings.Contains(errb.String(), "3 lines") || !strings.Contains(errb.String(), "1 not delivered") ||
		!strings.Contains(errb.String(), "too large") {
		t.Fatalf("send: %v\n%s", err, errb.String())
	}
	checkLines(t, filepath.Join(dir, "big.log"), 2)
	d.signal(t, syscall.SIGTERM)
	d.wait(t)
}

// With the collector gone, `snail send` does not hang: it reports what it
// could not deliver and exits 1 after its drain timeout, the summary last.
func TestSendWithoutCollectorFails(t *testing.T) {
	var o, e bytes.Buffer
	err := sendCmd(context.Background(), []string{"--to", testnet.RefusedAddr(t), "--drain-timeout", "300ms"}, strings.NewReader("id=0 end\n"), &o, &e)
	if err == nil {
		t.Fatalf("send to nobody succeeded: %s", e.String())
	}
	// The errors come first, and the summary ends the output.
	lines := strings.Split(strings.TrimSpace(e.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "1 not delivered") || !strings.Contains(e.String(), "drain timeout (300ms) ended") {
		t.Fatalf("want the drain's end reported, then the summary: %q", e.String())
	}
}

// A collector that is down longer than the report delay, with more lines
// waiting than the window and the sink hold, makes snail send wait, not
// give up: reading stops while the lines cannot be taken, the failure is
// reported once, and when the collector comes up every line arrives once.
func TestSendWaitsForTheCollector(t *testing.T) {
	n := 600_000 // about 48 MB: more than the window (16 MiB) and the sink's buffers (16 MiB)
	addr, dir, in := freeAddr(t), t.TempDir(), filepath.Join(t.TempDir(), "lines.txt")
	writeLines(t, in, 0, n)
	errb := new(syncBuffer)
	done := make(chan error, 1)
	go func() {
		done <- sendCmd(context.Background(), []string{"--to", addr, "--stream", "app", "--drain-timeout", "2s", in}, nil, io.Discard, errb)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(errb.String(), "window full") {
		select {
		case err := <-done:
			t.Fatalf("send ended while the collector was down: %v\n%s", err, errb)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failure reported:\n%s", errb)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d := startDaemon(t, addr, dir)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("send: %v\n%s", err, errb)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("send did not end after the collector came up:\n%s", errb)
	}
	if !strings.Contains(errb.String(), fmt.Sprintf("%d lines", n)) || !strings.Contains(errb.String(), "; 0 not delivered") ||
		strings.Count(errb.String(), "delivering again after waiting") != 1 {
		t.Fatalf("summary: %s", errb)
	}
	checkLines(t, filepath.Join(dir, "app.log"), n)
	d.signal(t, syscall.SIGTERM)
	d.wait(t)
}

// The collector is away when snail send ends its input, long enough to be
// reported unavailable (the report delay), and comes back within the drain
// timeout: every line is acked, so snail send exits 0, though it reported
// the collector unavailable meanwhile (it exited 1).
func TestSendExitsZeroWhenTheDrainDelivers(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	errb := new(syncBuffer)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- sendCmd(context.Background(), []string{"--to", addr, "--stream", "late", "--drain-timeout", "40s"},
			strings.NewReader("one\ntwo\n"), io.Discard, errb)
	}()
	// The report delay is 10s (half the drain timeout, at most 10s); the
	// drain goes on for 30s more, longer than the longest backoff (15s).
	for !strings.Contains(errb.String(), "unavailable") {
		if time.Since(start) > 60*time.Second {
			t.Fatalf("no unavailability reported:\n%s", errb)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d := startDaemon(t, addr, dir)
	select {
	case err := <-done:
		if err != nil || !strings.Contains(errb.String(), "2 lines") || !strings.Contains(errb.String(), "; 0 not delivered") {
			t.Fatalf("send: %v\n%s", err, errb)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("send did not end:\n%s", errb)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "late.log")); string(b) != "one\ntwo\n" {
		t.Fatalf("late.log = %q", b)
	}
	d.signal(t, syscall.SIGTERM)
	d.wait(t)
}

// With --give-up-after, snail send stops waiting for a collector that
// stays down: it exits 1, and every line it read is counted as not
// delivered, the one it was offering included.
func TestSendGivesUpAfter(t *testing.T) {
	in := filepath.Join(t.TempDir(), "lines.txt")
	writeLines(t, in, 0, 600_000)
	var errb bytes.Buffer
	err := sendCmd(context.Background(), []string{"--to", testnet.RefusedAddr(t), "--give-up-after", "300ms", "--drain-timeout", "1s", in}, nil, io.Discard, &errb)
	if err == nil {
		t.Fatalf("send to nobody succeeded:\n%s", errb.String())
	}
	if read, lost := summary(t, errb.String()); read == 0 || read >= 600_000 || lost != read {
		t.Fatalf("read %d lines, %d not delivered; want all read not delivered, and reading stopped:\n%s", read, lost, errb.String())
	}
}

// --give-up-after also ends the wait for the last acks: lines all read
// at once (a short input) are not waited for the whole --drain-timeout when
// the collector has been unreachable for the give-up time.
func TestSendGivesUpAfterInTheDrain(t *testing.T) {
	var errb bytes.Buffer
	done := make(chan error, 1)
	addr := testnet.RefusedAddr(t)
	go func() {
		done <- sendCmd(context.Background(), []string{"--to", addr, "--give-up-after", "300ms", "--drain-timeout", "10m"},
			strings.NewReader("one\ntwo\n"), io.Discard, &errb)
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(errb.String(), "unreachable for the give-up time (300ms)") {
			t.Fatalf("send: %v\n%s", err, errb.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("snail send waited past its give-up time")
	}
	if read, lost := summary(t, errb.String()); read != 2 || lost != 2 {
		t.Fatalf("read %d lines, %d not delivered; want 2 and 2:\n%s", read, lost, errb.String())
	}
}

// summary reads snail send's summary line: lines read, and not delivered.
func summary(t *testing.T, stderr string) (read, lost int) {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, " lines, ") && strings.Contains(line, "not delivered") {
			var bytes int
			if _, err := fmt.Sscanf(line, "snail send: %d lines, %d bytes to", &read, &bytes); err != nil {
				t.Fatalf("summary %q: %v", line, err)
			}
			fmt.Sscanf(line[strings.LastIndex(line, ";")+1:], " %d not delivered", &lost)
			return read, lost
		}
	}
	t.Fatalf("no summary in %q", stderr)
	return 0, 0
}

// A collector that refuses this client (a wrong token, TLS on one side
// only) is not waited for as one that is down: once the window is full,
// snail send stops reading and exits 1, counting every line it read as not
// delivered; with fewer lines than the window holds, it exits as soon as
// the collector refuses, not at the end of the drain timeout.
func TestSendEndsOnARefusal(t *testing.T) {
	many, few := filepath.Join(t.TempDir(), "many.txt"), filepath.Join(t.TempDir(), "few.txt")
	writeLines(t, many, 0, 600_000)
	writeLines(t, few, 0, 3)
	d := startDaemon(t, "", t.TempDir(), "--token", "good")
	for _, tc := range []struct {
		name  string
		args  []string
		input string
		want  string
	}{
		{"wrong token, window full", []string{"--token", "bad"}, many, "wrong or missing token"},
		{"wrong token, a few lines", []string{"--token", "bad"}, few, "wrong or missing token"},
		{"TLS to a collector without", []string{"--token", "good", "--tls"}, few, "does not answer in TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, err := sendEnds(t, append(append([]string{"--to", d.addr, "--drain-timeout", "50s"}, tc.args...), tc.input)...)
			if took := time.Since(start); err == nil || !strings.Contains(out, tc.want) || took > 25*time.Second {
				t.Fatalf("send: %v after %v (drain timeout 50s)\n%s", err, took, out)
			}
			if read, lost := summary(t, out); read == 0 || (tc.input == many && read >= 600_000) || lost != read {
				t.Fatalf("read %d lines, %d not delivered:\n%s", read, lost, out)
			}
		})
	}
	d.signal(t, syscall.SIGTERM)
	d.wait(t)
}

// An error that does not go away by waiting (the reader of a FIFO left)
// ends snail send at once: it does not wait as for a collector.
func TestSendEndsOnABrokenFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("no FIFO:", err)
	}
	in := filepath.Join(t.TempDir(), "lines.txt")
	writeLines(t, in, 0, 600_000)
	// A reader that is there before snail send opens the FIFO (without
	// one, the open fails), reads a little and leaves. Opened without
	// blocking, it reads EOF until a writer comes.
	f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer f.Close()
		got, buf := 0, make([]byte, 100)
		for deadline := time.Now().Add(30 * time.Second); got < len(buf) && time.Now().Before(deadline); {
			n, err := f.Read(buf[got:])
			got += n
			if err != nil {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	if out, err := sendEnds(t, "--file", fifo, in); err == nil || !strings.Contains(out, "broken pipe") {
		t.Fatalf("send: %v\n%s", err, out)
	}
}

// sendEnds runs snail send with args and returns what it printed on
// stderr and its error, failing the test if it has not ended within a minute
// (it would be waiting for a destination that can never take the lines).
func sendEnds(t *testing.T, args ...string) (string, error) {
	t.Helper()
	done := make(chan error, 1)
	var errb bytes.Buffer
	go func() { done <- sendCmd(context.Background(), args, nil, io.Discard, &errb) }()
	select {
	case err := <-done:
		return errb.String(), err
	case <-time.After(60 * time.Second):
		t.Fatalf("snail send %q still waits after a minute", args)
		return "", nil
	}
}

// The collector, run as the binary, is killed with SIGKILL three times
// while 64 goroutines log a few million entries through zerolog to it, and
// restarted each time on the same address and directory: afterwards every
// id is in the output exactly once and no line is torn. Acks come after
// write(), so what was acked is in the page cache, which a killed process
// does not lose; the state journal tells the restarted collector what was
// written, so resent batches are not written twice, and cuts a batch that
// was written in part.
func TestCollectorSurvivesSIGKILL(t *testing.T) {
	goroutines, per := 64, 50_000
	if testing.Short() || raceEnabled {
		per = 15_000 // the race detector slows both processes about tenfold
	}
	dir, addr := t.TempDir(), freeAddr(t)
	d := startDaemon(t, addr, dir)
	w, err := snail.Dial(addr, []netlog.ClientOption{netlog.WithStreamName("kill"),
		netlog.WithBackoff(5*time.Millisecond, 100*time.Millisecond), netlog.WithReportAfter(time.Minute)},
		sink.WithBatchBytes(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(w)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range per {
				log.Info().Int("g", g).Int("i", i).Str("path", "/api/v1/users").Msg("entry")
			}
		})
	}
	kills := 0
	for kills < 3 {
		time.Sleep(300 * time.Millisecond)
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		d.cmd.Wait()
		kills++
		d = startDaemon(t, addr, dir)
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	d.signal(t, syscall.SIGTERM)
	d.wait(t)

	seen := make([][]bool, goroutines)
	for g := range seen {
		seen[g] = make([]bool, per)
	}
	f, err := os.Open(filepath.Join(dir, "kill.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var e struct {
			G, I  int
			Level string
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Level != "info" || e.G >= goroutines || e.I >= per {
			t.Fatalf("torn or bad line %q: %v", sc.Text(), err)
		}
		if seen[e.G][e.I] {
			t.Fatalf("entry %d/%d twice", e.G, e.I)
		}
		seen[e.G][e.I] = true
		n++
	}
	if n != goroutines*per {
		t.Fatalf("%d entries, want %d", n, goroutines*per)
	}
	t.Logf("%d entries exactly once across %d SIGKILLs", n, kills)
}

// With --spool, lines the collector did not ack before snail send gave up
// stay in the spool, and the next snail send on it delivers them first.
func TestSendSpoolKeepsLinesForTheNextRun(t *testing.T) {
	dir, spool, addr := t.TempDir(), t.TempDir(), freeAddr(t)
	var in bytes.Buffer
	for k := range 1000 {
		fmt.Fprintf(&in, "id=%d end\n", k)
	}
	args := []string{"--to", addr, "--stream", "sp", "--spool", spool, "--drain-timeout", "300ms"}
	var o, e bytes.Buffer
	if err := sendCmd(context.Background(), args, &in, &o, &e); err == nil || !strings.Contains(e.String(), "1000 kept in the spool") {
		t.Fatalf("send with the collector down: %v\n%s", err, e.String())
	}
	d := startDaemon(t, addr, dir)
	e.Reset()
	if err := sendCmd(context.Background(), args, strings.NewReader("id=1000 end\n"), &o, &e); err != nil {
		t.Fatalf("send again: %v\n%s", err, e.String())
	}
	if !strings.Contains(e.String(), "1001 acked") {
		t.Fatalf("summary: %s", e.String())
	}
	checkLines(t, filepath.Join(dir, "sp.log"), 1001)
	if err := sendCmd(context.Background(), []string{"--file", filepath.Join(dir, "x"), "--spool", spool}, strings.NewReader(""), &o, &e); err == nil {
		t.Fatal("--spool with --file accepted")
	}
	d.signal(t, syscall.SIGTERM)
	d.wait(t)
}

// TestSocketActivation: `snail collector --listen systemd#1 --metrics
// systemd#2` serves the two sockets systemd's socket activation hands it
// (a .socket unit with two ListenStream=). A client that connected before
// the daemon started, as happens while systemd starts it on the first
// connection or restarts it, is welcomed once it runs.
func TestSocketActivation(t *testing.T) {
	var ls []net.Listener
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ls = append(ls, l)
	}
	dir := t.TempDir()
	in := filepath.Join(t.TempDir(), "lines.txt")
	writeLines(t, in, 0, 1000)
	// A client connected, its hello sent, before the daemon runs: the
	// socket is there and the kernel takes the connection; nobody answers
	// yet.
	early, err := net.Dial("tcp", ls[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	hello, err := netlog.AppendHello(nil, netlog.Hello{Version: netlog.ProtocolVersion, StreamID: 7, Name: "early"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := early.Write(hello); err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	var errb bytes.Buffer
	go func() {
		sent <- sendCmd(context.Background(), []string{"--to", ls[0].Addr().String(), "--stream", "act", "-q", in}, nil, io.Discard, &errb)
	}()
	cmd := activatedCmd(t, ls, "collector", "--dir", dir, "--listen", "systemd#1", "--metrics", "systemd#2")
	cmd.Env = append(os.Environ(), "SNAIL_TEST_MAIN=1")
	d := &daemon{cmd: cmd, stderr: new(syncBuffer)}
	cmd.Stderr = d.stderr
	startChild(t, cmd)
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("send: %v\n%s\ncollector:\n%s", err, errb.String(), d.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("send not done within 30 s\ncollector:\n%s", d.stderr)
	}
	checkLines(t, filepath.Join(dir, "act.log"), 1000)
	dec, err := encoder.NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	early.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := encoder.NewReader(early, dec).Next()
	if err != nil {
		t.Fatalf("the client connected before the daemon: %v", err)
	}
	if w, err := netlog.ParseWelcome(f); err != nil || w.Status != encoder.StatusOK {
		t.Fatalf("the client connected before the daemon got %+v, %v; want a welcome", w, err)
	}
	resp, err := http.Get("http://" + ls[1].Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Fatalf("/healthz on the second socket: %d %q", resp.StatusCode, body)
	}
	if got := d.logged("collector serving", "addr"); got != ls[0].Addr().String() {
		t.Errorf("serving %q, want the first socket's %s", got, ls[0].Addr())
	}
	d.signal(t, syscall.SIGTERM)
	d.wait(t)
}
