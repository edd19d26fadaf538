package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOneToken(t *testing.T) {
	for _, tc := range []struct {
		args             []string
		token, file      string
		wantTok, wantFil string
		err              bool
	}{
		{nil, "a", "", "a", "", false},
		{nil, "", "f", "", "f", false},
		{[]string{"--token", "a"}, "a", "f", "a", "", false},  // the file came from the environment
		{[]string{"-token-file=f"}, "a", "f", "", "f", false}, // the token came from the environment
		{[]string{"--token=a", "--token-file", "f"}, "a", "f", "", "", true},
		{nil, "a", "f", "", "", true},                       // both from the environment
		{[]string{"--", "--token"}, "a", "f", "", "", true}, // after --: a file name
	} {
		tok, fil := tc.token, tc.file
		err := oneToken(tc.args, &tok, &fil)
		if (err != nil) != tc.err || (err == nil && (tok != tc.wantTok || fil != tc.wantFil)) {
			t.Errorf("%q token %q file %q: got %q %q %v", tc.args, tc.token, tc.file, tok, fil, err)
		}
	}
}

// Bad token flags fail at start, naming the problem.
func TestTokenFlagErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	two := filepath.Join(t.TempDir(), "two")
	os.WriteFile(empty, nil, 0o600)
	os.WriteFile(two, []byte("a\nb\n"), 0o600)
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"collector", "--listen", "127.0.0.1:0", "--dir", t.TempDir(), "--token-file", empty}, "holds no token"},
		{[]string{"collector", "--listen", "127.0.0.1:0", "--dir", t.TempDir(), "--token", "a", "--token-file", two}, "one of --token and --token-file"},
		{[]string{"send", "--to", "127.0.0.1:1", "--token-file", two}, "holds 2 tokens"},
		{[]string{"send", "--to", "127.0.0.1:1", "--token-file", empty}, "holds no token"},
		{[]string{"send", "--file", empty, "--token-file", two}, "goes with --to"},
	} {
		var out, errb bytes.Buffer
		var err error
		if tc.args[0] == "collector" {
			err = collectorCmd(ctx, tc.args[1:], nil, &out, &errb)
		} else {
			err = sendCmd(ctx, tc.args[1:], strings.NewReader(""), &out, &errb)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}
