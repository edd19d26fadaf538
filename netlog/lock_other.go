//go:build !unix

package netlog

import "os"

// lockFile does nothing where flock is missing: one spool directory must
// then not be shared.
func lockFile(*os.File) error { return nil }
