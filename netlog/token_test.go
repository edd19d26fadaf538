package netlog

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadTokens(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, text string
		want       []string
		err        string
	}{
		{"one", "s3cret\n", []string{"s3cret"}, ""},
		{"no newline", "s3cret", []string{"s3cret"}, ""},
		{"spaces and CRLF", "  a  \r\n\tb\r\n", []string{"a", "b"}, ""},
		{"comments and blanks", "# old one, until Friday\nold\n\n# new\nnew\n", []string{"old", "new"}, ""},
		{"empty", "", nil, "holds no token"},
		{"only comments", "# none yet\n\n", nil, "holds no token"},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadTokens(path)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s: %q, %v; want an error naming the file, %q", tc.name, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := ReadTokens(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	one, two := filepath.Join(dir, "one"), filepath.Join(dir, "comments and blanks")
	if tok, err := ReadToken(one); err != nil || tok != "s3cret" {
		t.Errorf("ReadToken(one) = %q, %v", tok, err)
	}
	if _, err := ReadToken(two); err == nil || !strings.Contains(err.Error(), "holds 2 tokens") {
		t.Errorf("ReadToken of two tokens: %v", err)
	}
}
