package filelog

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// recordDevice reports whether fi is a device that takes one record per
// write(): Linux's /dev/kmsg, character device 1:11 (the kernel's
// devices.txt), under any name.
func recordDevice(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	dev := uint64(st.Rdev) // uint32 on mips
	return unix.Major(dev) == 1 && unix.Minor(dev) == 11
}
