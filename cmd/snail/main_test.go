package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/snail-log/snail/filelog"
	"github.com/snail-log/snail/netlog"
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
	for _, tc := range []struct {
		args []string
		rows []string
	}{
		{nil, []string{"zap -> snail -> collector (none)", "zap -> snail -> file", "zap BufferedWriteSyncer -> file"}},
		{[]string{"-front", "zerolog", "-compress", "s2"}, []string{"zerolog -> snail -> collector (s2)", "zerolog -> snail -> file", "zerolog -> file"}},
		{[]string{"-front", "slog", "-compress", "zstd"}, []string{"slog -> snail -> collector (zstd)", "slog -> snail -> file", "slog.JSONHandler -> file"}},
		{[]string{"-front", "raw"}, []string{"raw -> snail -> collector (none)", "raw -> snail -> file", "mutex, write() per entry"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"bench", "-entries", "20000", "-goroutines", "8", "-dir", t.TempDir()}, tc.args...)
			if code := run(args, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			// Every row finds every line in its file, none lost; the
			// collector row has them all acked.
			for k, row := range tc.rows {
				var line string
				for _, l := range strings.Split(out.String(), "\n") {
					if strings.HasPrefix(strings.TrimSpace(l), row) {
						line = l
					}
				}
				f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), row))
				if len(f) < 8 || f[3] != "0" {
					t.Fatalf("row %q: %q\n%s", row, line, out.String())
				}
				if acked := f[2]; (k == 0) != (acked == "20000") || k > 0 && acked != "-" {
					t.Errorf("row %q: acked %q", row, acked)
				}
			}
		})
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
	// A command line the command cannot take exits 2, as the flag
	// package's own errors do, with the error last (below the usage):
	// also a value the flag takes but the command does not.
	for _, bad := range [][]string{{"send", "--bogus"}, {"send", "--window"}, {"send", "--to", "a:1", "--file", "b"},
		{"bench", "extra"}, {"bench", "-entries", "many"}, {"collector", "--bogus"}, {"bench", "-entries", "0"},
		{"bench", "-front", "log4j"}, {"bench", "-compress", "lz4"}, {"bench", "-goroutines", "100000000"},
		{"bench", "-goroutines", "20", "-entries", "10"}} {
		errb.Reset()
		code := run(bad, &out, &errb)
		lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
		if code != 2 || !strings.HasPrefix(lines[len(lines)-1], "snail "+bad[0]+": ") {
			t.Errorf("%q: exit %d, stderr ending %q; want 2 and the error", bad, code, lines[len(lines)-1])
		}
	}
	t.Setenv("SNAIL_BENCH_ENTRIES", "many")
	if code := run([]string{"bench"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "SNAIL_BENCH_ENTRIES") {
		t.Fatalf("bad env: exit %d, %q", code, errb.String())
	}
	// An environment variable's bad value says what was expected, which
	// flag's own "parse error" does not.
	for _, env := range []struct{ key, val, want string }{
		{"SNAIL_WINDOW", "abc", `SNAIL_WINDOW="abc": not a valid duration for --window`},
		{"SNAIL_TLS", "maybe", `SNAIL_TLS="maybe": not a valid boolean`},
	} {
		t.Setenv(env.key, env.val)
		errb.Reset()
		if code := run([]string{"send"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), env.want) {
			t.Errorf("%s=%s: exit %d, %q, want %q", env.key, env.val, code, errb.String(), env.want)
		}
		os.Unsetenv(env.key)
	}
}

// TestVersion: `snail version` and `--version` name the build, the Go
// release and the protocol, which an operator needs to tell which
// clients a collector can serve.
func TestVersion(t *testing.T) {
	want := fmt.Sprintf("(%s %s/%s, protocol %d)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, netlog.ProtocolVersion)
	for _, arg := range []string{"version", "--version", "-version"} {
		var out, errb bytes.Buffer
		if code := run([]string{arg}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "snail ") || !strings.HasSuffix(out.String(), want) {
			t.Errorf("%s: exit %d, %q, want snail ... %q", arg, code, out.String(), want)
		}
	}
}

// TestBackupsFlag: --max-backups takes a count or "unlimited", as the
// snail URL's maxbackups does, and -1 for it.
func TestBackupsFlag(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		str  string
	}{{"10", 10, "10"}, {"unlimited", filelog.Unlimited, "unlimited"}, {"-1", filelog.Unlimited, "unlimited"}, {"1", 1, "1"}} {
		var n int
		f := backupsFlag{&n}
		if err := f.Set(c.in); err != nil || n != c.want || f.String() != c.str {
			t.Errorf("Set(%q): %d, %v, String %q; want %d, %q", c.in, n, err, f.String(), c.want, c.str)
		}
	}
	var n int
	for _, bad := range []string{"-2", "all", "", "1.5"} {
		if err := (backupsFlag{&n}).Set(bad); err == nil {
			t.Errorf("Set(%q) succeeded", bad)
		}
	}
}

// TestCollectorFlagErrors: a collector that cannot start as asked says why
// and exits at once, before it serves anything: 2 for a value it cannot
// take, 1 for what the machine refuses.
func TestCollectorFlagErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"--max-backups", "0"}, "--max-backups 0 would delete every rotated file", 2},
		{[]string{"--log-level", "loud"}, "--log-level", 2},
		{[]string{"--tls-client-ca", "ca.pem"}, "--tls-client-ca needs --tls-cert and --tls-key", 2},
		{[]string{"--listen", "127.0.0.1:99999"}, "invalid port", 2},
		{[]string{"--listen", busy.Addr().String()}, "address already in use", 1},
		{[]string{"--metrics", busy.Addr().String()}, "metrics: listen", 1},
		{[]string{"--dir", file}, "not a directory", 1},
		{[]string{"--cpu-profile", filepath.Join(file, "cpu.prof")}, "--cpu-profile", 1},
		{[]string{"--max-frame", "0"}, "--max-frame 0: must be positive", 2},
		{[]string{"--max-frame", "100"}, "MaxFrameSize 100 out of range", 2},
		{[]string{"--rotate-every", "-1h"}, "must not be negative", 2},
		{[]string{"--tls-cert", "missing.pem", "--tls-key", "missing.pem"}, "--tls-cert/--tls-key", 1},
		{[]string{"--tls-cert", "cert.pem"}, "--tls-cert and --tls-key go together", 2},
		{[]string{"--ack", "sometimes"}, `ack level "sometimes"`, 2},
		{[]string{"--compress", "lz4"}, `--compress "lz4"`, 2},
		{[]string{"--file-mode", "999"}, `"999": want permission bits in octal`, 2},
		{[]string{"--file-mode", "rw-r--r--"}, `"rw-r--r--": want permission bits in octal`, 2},
		{[]string{"--file-mode", "1777"}, `"1777": want permission bits in octal`, 2},
		{[]string{"--max-backups", "-2"}, "want a count of files, or unlimited", 2},
		{[]string{"--max-backups", "all"}, "want a count of files, or unlimited", 2},
		{[]string{"--listen", "nope"}, "missing port in address", 2},
		{[]string{"--max-frame", "lots"}, `bad size "lots"`, 2},
		{[]string{"--max-conns", "0"}, "--max-conns 0: must be positive", 2},
		{[]string{"--idle-timeout", "0s"}, "--idle-timeout 0s: must be positive", 2},
		{[]string{"stray"}, `unexpected arguments ["stray"]`, 2},
		{[]string{"--listen", "systemd"}, "--listen systemd: no socket was passed to this process", 1},
		{[]string{"--metrics", "systemd#2"}, "--metrics systemd: no socket was passed to this process", 1},
		{[]string{"--listen", "systemd#0"}, `--listen "systemd#0": want systemd or systemd#N`, 2},
		{[]string{"--listen", "systemd", "--metrics", "systemd#1"}, "name the same socket", 2},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append([]string{"collector", "--listen", "127.0.0.1:0", "--dir", t.TempDir()}, tc.args...)
			var out, errb bytes.Buffer
			if code := run(args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errb.String(), tc.code, tc.want)
			}
			if lines := strings.Split(strings.TrimSpace(errb.String()), "\n"); !strings.Contains(lines[len(lines)-1], tc.want) {
				t.Errorf("the error is not the last line: %q", errb.String())
			}
		})
	}
	// Sockets passed, but fewer than named (descriptors are not touched).
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	t.Setenv("LISTEN_FDS", "1")
	var out, errb bytes.Buffer
	if code := run([]string{"collector", "--dir", t.TempDir(), "--listen", "systemd#3"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), `--listen: socket 3 wanted, "1" passed`) {
		t.Errorf("--listen systemd#3 with one socket: exit %d, %q", code, errb.String())
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	errb.Reset()
	t.Setenv("SNAIL_ACK", "never")
	if code := run([]string{"collector", "--listen", "127.0.0.1:0", "--dir", t.TempDir()}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `ack level "never"`) {
		t.Errorf("bad SNAIL_ACK: exit %d, %q", code, errb.String())
	}
}
