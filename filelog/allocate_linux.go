package filelog

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// allocates reports whether batches appended to f gain from having their
// blocks allocated before they are written (see File.allocate): on ext4
// (whose magic number ext2 and ext3 share; their files without extents
// refuse fallocate, and File.allocate then stops asking). XFS allocates
// ahead of appends by itself, and tmpfs only loses by it: both were
// measured (benchmarks/NOTES.md, session 35).
func allocates(f *os.File) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(int(f.Fd()), &st) == nil && st.Type == unix.EXT4_SUPER_MAGIC
}

// allocateAt allocates the blocks of n bytes of f from offset off, past
// its end, without moving its end (FALLOC_FL_KEEP_SIZE: a reader sees no
// new bytes, and a write into them makes them the file's). Where the file
// system does not allocate this way, the error is errors.ErrUnsupported
// (EOPNOTSUPP or ENOSYS).
func allocateAt(f *os.File, off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, off, n)
	if testHookAllocate != nil {
		testHookAllocate(off, n, err)
	}
	return err
}

// blocksPastEnd reports whether the file fi describes holds more blocks
// than its size needs, beyond what the file system keeps for itself (64
// KiB: ext4's extent tree): blocks allocated and never written, as a
// process killed between its allocation and its writes leaves them.
func blocksPastEnd(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Blksize <= 0 {
		return false
	}
	bs := int64(st.Blksize)
	return st.Blocks*512 > (fi.Size()+bs-1)/bs*bs+64<<10
}
