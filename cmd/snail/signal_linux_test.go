package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snail-log/snail/internal/testnet"
	"golang.org/x/sys/unix"
)

// SIGINT stops `snail send` reading a pipe that stays open (tail -F | snail
// send): every whole line read before the signal is delivered, although the
// batch window (an hour) has not passed, the line it was still reading is
// dropped, and it exits 0.
func TestSendStopsOnSignal(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	d := startDaemon(t, addr, dir)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	cmd := exec.Command(os.Args[0], "send", "--to", addr, "--stream", "sig", "--window", "1h")
	cmd.Env = append(os.Environ(), "SNAIL_TEST_MAIN=1")
	cmd.Stdin = pr
	var errb syncBuffer
	cmd.Stderr = &errb
	startChild(t, cmd)
	pr.Close()
	var b bytes.Buffer
	for k := range 1000 {
		fmt.Fprintf(&b, "id=%d end\n", k)
	}
	b.WriteString("id=1000 en") // the signal comes before the rest of this line
	if _, err := pw.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	// Wait until snail send has read everything in the pipe.
	for deadline := time.Now().Add(20 * time.Second); ; {
		n, err := unix.IoctlGetInt(int(pw.Fd()), unix.TIOCINQ)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still unread", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, cmd, 30*time.Second, &errb); err != nil {
		t.Fatalf("snail send: %v\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), "stopped by a signal") || !strings.Contains(errb.String(), "1000 lines") {
		t.Fatalf("stderr: %s", errb.String())
	}
	checkLines(t, filepath.Join(dir, "sig.log"), 1000)
	d.signal(t, syscall.SIGTERM)
	d.wait(t)
}

// A second SIGINT or SIGTERM ends `snail send` at once while the first
// waits for a destination that takes nothing (a FIFO whose reader does not
// read), with the status of a death by that signal; also when it was
// started with SIGINT ignored, as a background job of a script is, where
// the default action the first signal left in place ignored the second.
func TestSecondSignalEndsSend(t *testing.T) {
	in := filepath.Join(t.TempDir(), "lines.txt")
	writeLines(t, in, 0, 100_000) // several MB: more than the FIFO holds
	for _, tc := range []struct {
		name    string
		sig     syscall.Signal
		ignored bool // started with it ignored
	}{
		{"SIGTERM", syscall.SIGTERM, false},
		{"SIGINT", syscall.SIGINT, false},
		{"SIGINT ignored at start", syscall.SIGINT, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			// Held open to read, and never read: snail send's writes
			// block once the pipe is full.
			r, err := os.OpenFile(fifo, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			args := []string{"send", "--file", fifo, in}
			cmd := exec.Command(os.Args[0], args...)
			if tc.ignored {
				// exec keeps an ignored signal ignored.
				cmd = exec.Command("sh", append([]string{"-c", `trap "" INT; exec "$0" "$@"`, os.Args[0]}, args...)...)
			}
			cmd.Env = append(os.Environ(), "SNAIL_TEST_MAIN=1")
			var errb syncBuffer
			cmd.Stderr = &errb
			startChild(t, cmd)
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				n, err := unix.IoctlGetInt(int(r.Fd()), unix.TIOCINQ) // FIONREAD
				if err != nil {
					t.Fatal(err)
				}
				if n >= 64<<10 { // full: snail send waits in its write
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d bytes in the FIFO after 20 s\n%s", n, errb.String())
				}
			}
			// Signals of one kind sent at once are delivered once: send
			// it again until snail send ends, each one after the first
			// the second.
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			deadline := time.After(20 * time.Second)
			for sent := 0; ; sent++ {
				select {
				case err := <-done:
					if sent < 2 {
						t.Fatalf("snail send ended after %d signals: %v, want it to wait for its destination after the first\n%s", sent, err, errb.String())
					}
					ee, ok := err.(*exec.ExitError)
					if !ok || ee.ExitCode() != 128+int(tc.sig) {
						t.Fatalf("snail send: %v, want exit status %d\n%s", err, 128+int(tc.sig), errb.String())
					}
					return
				case <-tick.C:
					if err := cmd.Process.Signal(tc.sig); err != nil {
						t.Fatal(err)
					}
				case <-deadline:
					t.Fatalf("snail send still runs after %d %vs in 20 s\n%s", sent, tc.sig, errb.String())
				}
			}
		})
	}
}

// SIGTERM stops `snail send` whose spool is full while the collector is
// down: the batch waiting for room in the spool stops waiting, as one
// waiting for the window does, and the first signal is enough. It used to
// wait for room until the collector came back, deaf to the signal.
func TestSignalStopsSendWithAFullSpool(t *testing.T) {
	in, spool := filepath.Join(t.TempDir(), "lines.txt"), t.TempDir()
	writeLines(t, in, 0, 300_000) // about 10 MB: past the spool, the window and the sink's buffers
	cmd := exec.Command(os.Args[0], "send", "--to", testnet.RefusedAddr(t), "--spool", spool, "--spool-size", "1MiB",
		"--drain-timeout", "2s", in)
	cmd.Env = append(os.Environ(), "SNAIL_TEST_MAIN=1")
	var errb syncBuffer
	cmd.Stderr = &errb
	startChild(t, cmd)
	spooled := func() (n int64) {
		des, _ := os.ReadDir(spool)
		for _, de := range des {
			if fi, err := de.Info(); err == nil && strings.HasSuffix(de.Name(), ".spool") {
				n += fi.Size()
			}
		}
		return n
	}
	for deadline := time.Now().Add(20 * time.Second); spooled() < 900<<10; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes in the spool after 20 s\n%s", spooled(), errb.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := waitExit(t, cmd, 20*time.Second, &errb) // the drain timeout is 2 s
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 || !strings.Contains(errb.String(), "stopped by a signal") ||
		!strings.Contains(errb.String(), "kept in the spool") {
		t.Fatalf("snail send: %v, want exit status 1, the lines in the spool kept\n%s", err, errb.String())
	}
}

// waitExit waits up to d for the started cmd to end and returns its error;
// if it still runs then, the test fails with what it printed.
func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration, errb *syncBuffer) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s still runs after %v\n%s", cmd.Args, d, errb.String())
		return nil
	}
}

// The collector outlives the reader of its log (snail collector 2>&1 |
// logger, the logger restarted): with SIGPIPE not ignored, Go ends a
// process whose write to standard error meets a closed pipe, and the
// collector died at its next log line. Now the line is lost, not the
// daemon: it logs a SIGHUP's reopen into the closed pipe, serves a client,
// and stops on SIGTERM with status 0.
func TestCollectorOutlivesItsLogReader(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "collector", "--dir", dir, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "SNAIL_TEST_MAIN=1")
	pr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	startChild(t, cmd)
	d := &daemon{cmd: cmd, stderr: new(syncBuffer)} // what was read of its log
	var addr string
	buf := make([]byte, 4096)
	for addr == "" {
		n, err := pr.Read(buf)
		d.stderr.Write(buf[:n])
		if err != nil {
			t.Fatalf("collector log ended before it served: %v\n%s", err, d.stderr)
		}
		addr = d.logged("collector serving", "addr")
	}
	pr.Close() // the log's reader goes away
	for range 3 {
		d.signal(t, syscall.SIGHUP) // each logs "reopened output files"
	}
	in := filepath.Join(t.TempDir(), "in")
	writeLines(t, in, 0, 100)
	var errb bytes.Buffer
	if err := sendCmd(t.Context(), []string{"--to", addr, "--stream", "after", "--drain-timeout", "10s", in}, nil, io.Discard, &errb); err != nil {
		t.Fatalf("send after the log's reader left: %v\n%s", err, errb.String())
	}
	checkLines(t, filepath.Join(dir, "after.log"), 100)
	d.signal(t, syscall.SIGTERM)
	d.wait(t) // status 0
}
