//go:build !unix

package filelog

import "os"

// Inode returns 0: this platform has no inode numbers in os.FileInfo.
func Inode(fi os.FileInfo) uint64 { return 0 }
