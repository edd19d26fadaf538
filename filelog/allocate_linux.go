package filelog

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// allocates reports whether batches appended to f gain from having their
// blocks allocated before they are written (see File.allocate): on ext4
// (whose magic number ext2 and ext3 share; their files without extents
// refuse fallocate, and allocateEnd's caller then stops asking). XFS
// allocates ahead of appends by itself, and tmpfs only loses by it: both
// were measured (benchmarks/NOTES.md, session 35).
func allocates(f *os.File) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(int(f.Fd()), &st) == nil && st.Type == unix.EXT4_SUPER_MAGIC
}

// allocateEnd allocates the blocks of the n bytes past the end of f,
// without moving its end (FALLOC_FL_KEEP_SIZE: a reader sees no new bytes,
// and a write into them makes them the file's). The end is read from the
// file, not taken from a count of what was written: another process may
// append to it, or empty it (logrotate's copytruncate), and blocks
// allocated past where the write lands would stay allocated. Where the
// file system does not allocate this way, the error is errors.ErrUnsupported
// (EOPNOTSUPP or ENOSYS).
func allocateEnd(f *os.File, n int64) error {
	end, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, end, n)
	}
	if testHookAllocate != nil {
		testHookAllocate(end, n, err)
	}
	return err
}
