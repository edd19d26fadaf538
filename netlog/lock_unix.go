//go:build unix

package netlog

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes f's exclusive lock without waiting: a second process (or
// Stream) on the same spool would send under the same stream id and
// sequence numbers, and the collector would skip its batches as duplicates.
// The lock goes with the file's last close, and with the process.
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errSpoolInUse
	}
	return err
}
