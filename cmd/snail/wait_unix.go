//go:build unix

package main

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// canWaitReadable reports whether waitReadable works here.
const canWaitReadable = true

// waitEvery is how often waitReadable looks at stopped while it waits.
const waitEvery = 100 // milliseconds

// waitReadable waits until a read of f will not block (input, its end, or
// an error to report), or until stopped is closed (errStopped). It
// consumes nothing: a stop while it waits loses no input. Regular files are
// always ready.
func waitReadable(f *os.File, stopped <-chan struct{}) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil // let the read report it
	}
	for {
		select {
		case <-stopped:
			return errStopped
		default:
		}
		var n int
		var perr error
		if err := rc.Control(func(fd uintptr) {
			n, perr = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, waitEvery)
		}); err != nil {
			return nil
		}
		switch {
		case errors.Is(perr, unix.EINTR):
		case perr != nil || n > 0:
			return nil // ready, hung up or failed: the read tells which
		}
	}
}
