//go:build !unix

package filelog

import "os"

// Inode returns 0: this platform has no inode numbers in os.FileInfo.
func Inode(fi os.FileInfo) uint64 { return 0 }

// links reports nothing: this platform has no link count in os.FileInfo.
func links(fi os.FileInfo) (uint64, bool) { return 0, false }
