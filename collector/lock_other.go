//go:build !unix

package collector

import "os"

// lockFile does nothing where flock is missing: one output directory must
// then not be shared.
func lockFile(*os.File) error { return nil }
