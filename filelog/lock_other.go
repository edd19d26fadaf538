//go:build !unix

package filelog

import "os"

// lockFile does nothing where flock is missing: a rotated file (and a
// collector's directory) must then have one writer.
func lockFile(*os.File) error { return nil }
