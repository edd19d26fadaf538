package collector

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snail-log/snail/netlog"
)

// netnsChild is set in the environment of a test binary that runs one
// test inside a network namespace of its own (inNetns).
const netnsChild = "SNAIL_TEST_NETNS"

// inNetns runs test name again in a child process in a new network
// namespace (unshare --net), where it may drop packets with iptables
// without touching the machine's own firewall, and reports whether the
// caller is that child. Outside it, the caller's test passes, fails or is
// skipped as the child's does. It needs root, unshare, ip and iptables.
func inNetns(t *testing.T, name string) bool {
	t.Helper()
	if os.Getenv(netnsChild) == "1" {
		cmd(t, "ip", "link", "set", "lo", "up")
		return true
	}
	if os.Getuid() != 0 {
		t.Skip("not root: a network namespace and iptables need it")
	}
	for _, tool := range []string{"unshare", "ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian: apt-get install util-linux iproute2 iptables)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	child := exec.CommandContext(ctx, "unshare", "--net", "--", os.Args[0], "-test.run", "^"+name+"$", "-test.v", "-test.count", "1")
	child.Env = append(os.Environ(), netnsChild+"=1")
	out, err := child.CombinedOutput()
	switch {
	case err != nil:
		t.Fatalf("in a network namespace: %v\n%s", err, out)
	case strings.Contains(string(out), "--- SKIP"):
		t.Skipf("skipped in the network namespace:\n%s", out)
	case !strings.Contains(string(out), "--- PASS: "+name):
		t.Fatalf("in a network namespace, %s did not pass:\n%s", name, out)
	}
	t.Logf("in a network namespace:\n%s", out)
	return false
}

// cmd runs a command of the network namespace's setup; the test is skipped
// if it fails (no iptables support in the kernel, say).
func cmd(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Skipf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// TestBlackholedCollector: the collector's host drops every packet of the
// connection (a cable pulled, a frozen VM, a firewall that drops): no
// reset, no refusal, only silence. The client notices it by its ack
// timeout, reports the loss, finds it cannot connect again (its SYNs, or
// the answers to them, are dropped too), and Sync returns ErrUnavailable
// after the report delay while the batches stay queued. Once packets pass
// again it reconnects and every entry is in the file exactly once. When
// only the collector's packets are dropped, the batches reach it and are
// written, and their acks are lost: sent again, they are skipped as
// duplicates.
func TestBlackholedCollector(t *testing.T) {
	if !inNetns(t, "TestBlackholedCollector") {
		return
	}
	for _, tc := range []struct {
		name  string
		drop  []string // iptables match of the packets dropped
		dupes bool
	}{
		{"both ways", []string{"--dport", "--sport"}, false},
		{"the collector's packets", []string{"--sport"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c, addr := start(t, Config{Dir: dir})
			_, port, _ := net.SplitHostPort(addr)
			var rep reports
			s, err := netlog.Dial(addr, netlog.WithStreamName("bh"), netlog.WithAckTimeout(time.Second),
				netlog.WithDialTimeout(300*time.Millisecond), netlog.WithReportAfter(500*time.Millisecond),
				netlog.WithBackoff(20*time.Millisecond, 200*time.Millisecond), netlog.WithErrorHandler(rep.add))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			send(t, s, 0, 1000, 100)
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}

			var rules [][]string
			for _, m := range tc.drop {
				rules = append(rules, []string{"INPUT", "-p", "tcp", m, port, "-j", "DROP"})
			}
			for _, r := range rules {
				cmd(t, "iptables", append([]string{"-A"}, r...)...)
			}
			began := time.Now()
			send(t, s, 1000, 1000, 100) // into the window: the client does not know yet
			err = s.Sync()
			if !errors.Is(err, netlog.ErrUnavailable) {
				t.Fatalf("Sync with packets dropped = %v, want ErrUnavailable", err)
			}
			t.Logf("Sync returned %v after %v", err, time.Since(began).Round(time.Millisecond))
			if !rep.has("lost", "no answer") {
				t.Fatalf("the connection's loss was not reported: %q", rep.list())
			}
			if st := s.Stats(); st.Lost != 0 {
				t.Fatalf("stats %+v: nothing may be given up while the collector is away", st)
			}

			for _, r := range rules {
				cmd(t, "iptables", append([]string{"-D"}, r...)...)
			}
			// Sync returns ErrUnavailable at once until the client is
			// connected again (its next attempt, within the backoff's
			// 200 ms).
			deadline := time.Now().Add(20 * time.Second)
			for err = s.Sync(); err != nil; err = s.Sync() {
				if !errors.Is(err, netlog.ErrUnavailable) || time.Now().After(deadline) {
					t.Fatalf("Sync once packets pass again = %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			checkIDs(t, filepath.Join(dir, "bh.log"), 2000)
			if dupes := c.Stats().Duplicates; (dupes > 0) != tc.dupes {
				t.Fatalf("%d batches skipped as duplicates; want some: %v", dupes, tc.dupes)
			}
		})
	}
}

// TestFailoverPastABlackholedCollector: of two collectors, the first one's
// packets are all dropped from the start (its host is gone, so connecting
// times out instead of being refused); the client gives up on it at its
// dial timeout and delivers everything to the second.
func TestFailoverPastABlackholedCollector(t *testing.T) {
	if !inNetns(t, "TestFailoverPastABlackholedCollector") {
		return
	}
	gone, goneAddr := start(t, Config{Dir: t.TempDir()})
	_, port, _ := net.SplitHostPort(goneAddr)
	cmd(t, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", port, "-j", "DROP")
	dir := t.TempDir()
	_, addr := start(t, Config{Dir: dir})
	s, err := netlog.Dial(goneAddr+","+addr, netlog.WithStreamName("fo"), netlog.WithDialTimeout(300*time.Millisecond),
		netlog.WithErrorHandler(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	deliver(t, s, 1000, 100)
	t.Logf("delivered after %v", time.Since(began).Round(time.Millisecond))
	checkIDs(t, filepath.Join(dir, "fo.log"), 1000)
	if st := gone.Stats(); st.Frames != 0 {
		t.Fatalf("the blackholed collector got %d frames", st.Frames)
	}
}
