//go:build unix

package netlog

import "syscall"

const canReadFD = true

func readFD(fd uintptr, b []byte) (int, error) { return syscall.Read(int(fd), b) }
