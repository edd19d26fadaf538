//go:build !linux

package filelog

import (
	"errors"
	"os"
)

// allocates reports false: off Linux, batches are written without their
// blocks allocated first.
func allocates(*os.File) bool { return false }

func allocateAt(*os.File, int64, int64) error { return errors.ErrUnsupported }

func blocksPastEnd(os.FileInfo) bool { return false }
