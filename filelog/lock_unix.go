//go:build unix

package filelog

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes f's exclusive lock without waiting. The lock goes with
// the file's last close, and with the process.
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrLocked
	}
	return err
}
