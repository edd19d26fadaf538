package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
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
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("snail send: %v\n%s", err, errb.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("snail send did not stop\n%s", errb.String())
	}
	if !strings.Contains(errb.String(), "stopped by a signal") || !strings.Contains(errb.String(), "1000 lines") {
		t.Fatalf("stderr: %s", errb.String())
	}
	checkLines(t, filepath.Join(dir, "sig.log"), 1000)
	d.signal(t, syscall.SIGTERM)
	d.wait(t)
}
