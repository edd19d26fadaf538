//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTokenFileRotation: the collector takes its tokens from a file and
// reads it again on SIGHUP, so that a token is replaced without a stop;
// snail send takes its token from a file. A file with no token left in it
// keeps the tokens before (it never turns the check off).
func TestTokenFileRotation(t *testing.T) {
	dir, secrets := t.TempDir(), t.TempDir()
	tokens, oldTok, newTok := filepath.Join(secrets, "tokens"), filepath.Join(secrets, "old"), filepath.Join(secrets, "new")
	write := func(path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(tokens, "# the fleet's token\nold\n")
	write(oldTok, "old\n")
	write(newTok, "new\n")
	d := startDaemon(t, "", dir, "--token-file", tokens)
	in := filepath.Join(t.TempDir(), "lines.txt")
	writeLines(t, in, 0, 100)
	send := func(tokenFile string) error {
		t.Helper()
		var errb bytes.Buffer
		return sendCmd(context.Background(), []string{"--to", d.addr, "--stream", "rot", "--token-file", tokenFile, "--drain-timeout", "1s", "-q", in}, nil, &errb, &errb)
	}
	hup := func(logged string) {
		t.Helper()
		n := strings.Count(d.stderr.String(), logged)
		d.signal(t, syscall.SIGHUP)
		for deadline := time.Now().Add(10 * time.Second); strings.Count(d.stderr.String(), logged) == n; {
			if time.Now().After(deadline) {
				t.Fatalf("%q not logged after SIGHUP:\n%s", logged, d.stderr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, step := range []struct {
		file         string // the collector's tokens, then SIGHUP
		logged       string
		oldOK, newOK bool
	}{
		{"", "", true, false},
		{"old\nnew\n", "reloaded tokens", true, true},
		{"new\n", "reloaded tokens", false, true},
		{"# emptied by mistake\n", "tokens not reloaded", false, true},
	} {
		if step.file != "" {
			write(tokens, step.file)
			hup(step.logged)
		}
		for file, ok := range map[string]bool{oldTok: step.oldOK, newTok: step.newOK} {
			if err := send(file); (err == nil) != ok {
				t.Errorf("tokens %q: send with %s: %v, want accepted %v", step.file, filepath.Base(file), err, ok)
			}
		}
	}
	d.signal(t, syscall.SIGTERM)
	d.wait(t)
}
