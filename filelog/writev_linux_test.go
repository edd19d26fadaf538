package filelog

import (
	"bytes"
	"testing"
)

func TestAdvance(t *testing.T) {
	for _, tc := range []struct {
		m    int
		want string
	}{
		{0, "ab|cde|f"}, {1, "b|cde|f"}, {2, "cde|f"}, {4, "e|f"}, {5, "f"}, {6, ""},
	} {
		iov := advance([][]byte{[]byte("ab"), []byte("cde"), []byte("f")}, tc.m)
		if got := string(bytes.Join(iov, []byte("|"))); got != tc.want {
			t.Errorf("advance by %d = %q, want %q", tc.m, got, tc.want)
		}
	}
}
