package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// activationSpec reports whether --listen or --metrics names a socket
// handed over by systemd's socket activation: "systemd" (the first) or
// "systemd#N" (the Nth, from 1), as Vector's sources take it. n is 0 for
// an address.
func activationSpec(flag, spec string) (n int, err error) {
	if spec == "systemd" {
		return 1, nil
	}
	rest, ok := strings.CutPrefix(spec, "systemd#")
	if !ok {
		return 0, nil
	}
	if n, err = strconv.Atoi(rest); err != nil || n < 1 {
		return 0, flagError("--%s %q: want systemd or systemd#N, N from 1", flag, spec)
	}
	return n, nil
}

// activated returns socket n (from 1) of those systemd passed this process:
// $LISTEN_FDS of them from descriptor 3, when $LISTEN_PID is this process.
func activated(flag string, n int) (net.Listener, error) {
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return nil, fmt.Errorf("--%s systemd: no socket was passed to this process (LISTEN_PID=%q; start it from a systemd .socket unit, or use an address)", flag, os.Getenv("LISTEN_PID"))
	}
	count, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || count < n {
		return nil, fmt.Errorf("--%s: socket %d wanted, %q passed (LISTEN_FDS)", flag, n, os.Getenv("LISTEN_FDS"))
	}
	f := os.NewFile(uintptr(3+n-1), "systemd socket "+strconv.Itoa(n))
	l, err := net.FileListener(f) // a duplicate, close-on-exec
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("--%s: systemd socket %d: %w", flag, n, err)
	}
	return l, nil
}

// listeners makes the collector's listeners: each flag's address is
// listened on, or socket ln (mn) taken from systemd when it is above 0 (as
// activationSpec read the flag). ml is nil without --metrics. The
// addresses are checked by collector.New before.
func listeners(listen string, ln int, metrics string, mn int) (l, ml net.Listener, err error) {
	if ln > 0 && ln == mn {
		return nil, nil, flagError("--listen %s and --metrics %s name the same socket", listen, metrics)
	}
	open := func(flag, spec string, n int, prefix string) (net.Listener, error) {
		if n > 0 {
			return activated(flag, n)
		}
		l, err := net.Listen("tcp", spec)
		if err != nil {
			return nil, fmt.Errorf("%s%w", prefix, err)
		}
		return l, nil
	}
	if l, err = open("listen", listen, ln, "collector: "); err != nil {
		return nil, nil, err
	}
	if metrics != "" {
		if ml, err = open("metrics", metrics, mn, "collector: metrics: "); err != nil {
			l.Close()
			return nil, nil, err
		}
	}
	if ln > 0 || mn > 0 {
		// Not for the collector's children, if it ever has any.
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
	}
	return l, ml, nil
}
