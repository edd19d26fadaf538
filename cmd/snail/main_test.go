package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Re-executed as the snail binary by the process tests.
	if os.Getenv("SNAIL_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

func TestBenchSmall(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"bench", "-entries", "20000", "-goroutines", "8", "-dir", t.TempDir()}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	// Both rows report every line found in the file, none lost.
	for _, row := range []string{"snail sink -> filelog", "snail sink -> netlog -> collector", "mutex, write per entry"} {
		var line string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, row) {
				line = l
			}
		}
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), row))
		if len(f) < 5 || f[2] != "20000" || f[3] != "0" {
			t.Fatalf("row %q: %q\n%s", row, line, out.String())
		}
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "snail bench") {
		t.Fatalf("no args: exit %d, %q", code, errb.String())
	}
	if code := run([]string{"nope"}, &out, &errb); code != 2 {
		t.Fatalf("unknown command: exit %d", code)
	}
	if code := run([]string{"bench", "-entries", "0"}, &out, &errb); code != 1 {
		t.Fatalf("bad flag value: exit %d", code)
	}
	t.Setenv("SNAIL_BENCH_ENTRIES", "many")
	if code := run([]string{"bench"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "SNAIL_BENCH_ENTRIES") {
		t.Fatalf("bad env: exit %d, %q", code, errb.String())
	}
}
