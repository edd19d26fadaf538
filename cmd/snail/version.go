package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/snail-log/snail/netlog"
)

// version says which snail this is: the module version the go command
// stamped (a tag, or a pseudo-version from the checkout's commit), the
// commit and whether the tree had changes, the Go release and platform,
// and the wire protocol's version, which decides what it can talk to.
func version() string {
	v, rev := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" && modified {
			rev += "+dirty"
		}
	}
	s := "snail " + v
	if rev != "" && !strings.Contains(v, strings.TrimSuffix(rev, "+dirty")) { // a pseudo-version names it already
		s += " commit " + rev
	}
	return fmt.Sprintf("%s (%s %s/%s, protocol %d)", s, runtime.Version(), runtime.GOOS, runtime.GOARCH, netlog.ProtocolVersion)
}
