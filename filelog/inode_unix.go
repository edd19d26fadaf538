//go:build unix

package filelog

import (
	"os"
	"syscall"
)

// Inode returns the inode number of the file fi describes, which tells a
// file apart from another that later took its path; 0 where the platform
// has none.
func Inode(fi os.FileInfo) uint64 {
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(sys.Ino)
	}
	return 0
}

// links returns the number of names (hard links) the file fi describes
// has: 0 once it was deleted while open.
func links(fi os.FileInfo) (uint64, bool) {
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(sys.Nlink), true
	}
	return 0, false
}
