package filelog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair in raw mode and returns the master
// and the path of the slave.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	rc, err := m.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr != nil {
			return
		}
		n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
	})
	if ierr != nil {
		t.Fatal(ierr)
	}
	pts := fmt.Sprintf("/dev/pts/%d", n)
	// Raw mode on the slave, so "\n" is not turned into "\r\n".
	s, err := os.OpenFile(pts, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src, _ := s.SyscallConn()
	src.Control(func(fd uintptr) {
		tio, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			ierr = err
			return
		}
		tio.Oflag &^= unix.OPOST
		tio.Lflag &^= unix.ECHO | unix.ICANON
		ierr = unix.IoctlSetTermios(int(fd), unix.TCSETS, tio)
	})
	if ierr != nil {
		t.Fatal(ierr)
	}
	return m, pts
}

func TestPseudoTerminal(t *testing.T) {
	m, pts := openPTY(t)
	f := mustOpen(t, pts, WithFsync(FsyncBatch), WithMaxSize(100))
	want := lines(40, 0)
	for i := range 4 {
		if err := f.WriteBatch(lines(10, i*10), 10); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("Sync on a terminal: %v", err)
	}
	got := make([]byte, 0, len(want))
	buf := make([]byte, 4096)
	m.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(got) < len(want) {
		n, err := m.Read(buf)
		if err != nil {
			t.Fatalf("reading the terminal after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("terminal got %q", got)
	}
}

// TestDiskFull fills a small disk: the error names ENOSPC, no entry is left
// half-written, and writing resumes once space is freed. On tmpfs, and on
// ext4 with batches small and large (whose blocks File.allocate allocates
// before it writes them).
func TestDiskFull(t *testing.T) {
	for _, tc := range []struct {
		disk    string
		mount   func(*testing.T) string
		entries int // per batch: 37 make about 1 KB, 11000 about 300 KB
		filler  int
		alloc   bool // File.allocate runs, and meets the full disk first
	}{
		{"tmpfs", func(t *testing.T) string { return mountSmallTmpfs(t, 256<<10) }, 37, 64 << 10, false},
		{"ext4", func(t *testing.T) string { return mountSmallExt4(t, "ext4", 4<<20) }, 37, 1 << 20, false},
		{"ext4/large batches", func(t *testing.T) string { return mountSmallExt4(t, "ext4", 4<<20) }, 11_000, 1 << 20, true},
	} {
		for _, wm := range writeModes {
			t.Run(tc.disk+"/"+wm.name, func(t *testing.T) {
				dir := tc.mount(t)
				var allocs, full int
				testHookAllocate = func(_, _ int64, err error) {
					allocs++
					if errors.Is(err, syscall.ENOSPC) {
						full++
					}
				}
				t.Cleanup(func() { testHookAllocate = nil })
				testDiskFull(t, dir, tc.filler, tc.entries, wm.write)
				if tc.alloc != (allocs > 0) || tc.alloc != (full > 0) {
					t.Fatalf("%d allocations, %d of them refused for want of space; want both (%v) or neither", allocs, full, tc.alloc)
				}
			})
		}
	}
}

// testDiskFull fills the disk at dir, a filler file of filler bytes first,
// with batches of entries entries, written by write.
func testDiskFull(t *testing.T, dir string, filler, entries int, write func(*File, []byte, int) error) {
	fill := filepath.Join(dir, "filler")
	if err := os.WriteFile(fill, make([]byte, filler), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "app.log")
	f := mustOpen(t, path)
	var written []byte
	var werr error
	for i := 0; i < 10000; i++ {
		b := lines(entries, i*entries) // sizes that do not divide the space
		if werr = write(f, b, entries); werr != nil {
			break
		}
		written = append(written, b...)
	}
	if !errors.Is(werr, syscall.ENOSPC) || !strings.Contains(werr.Error(), path) {
		t.Fatalf("writing until full: %v, want ENOSPC with the path", werr)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, written) {
		t.Fatalf("file holds %d bytes, the successful batches %d: a failed batch left bytes behind", len(got), len(written))
	}
	// Free space: the next batch goes through.
	os.Remove(fill)
	b := lines(entries, 100_000_000)
	if err := write(f, b, entries); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
	got, _ = os.ReadFile(path)
	if !bytes.Equal(got, append(written, b...)) {
		t.Fatal("content after recovery is not the successful batches in order")
	}
	checkNoBlocksPastEnd(t, path)
}

// checkNoBlocksPastEnd fails the test if the file at path holds more blocks
// than its size needs: blocks allocated for bytes never written. Up to 64
// KiB more are the file system's own (ext4's extent tree), less than a
// batch File.allocate allocates.
func checkNoBlocksPastEnd(t *testing.T, path string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	bs := int64(st.Blksize)
	if need := (st.Size + bs - 1) / bs * bs; st.Blocks*512 > need+64<<10 {
		t.Fatalf("%s: %d bytes in %d bytes of blocks (%d needed): blocks allocated past its end", path, st.Size, st.Blocks*512, need)
	}
}

// mountSmallTmpfs mounts a tmpfs of size bytes on a new directory, or skips
// the test when that is not allowed here.
func mountSmallTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: filling a disk needs a small tmpfs, and mounting one needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs here (%v)", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// mountSmallExt4 makes a file system of size bytes in a file (mkfs.ext4,
// or mkfs.ext2 for kind "ext2", whose files have no extents), mounts it
// with the ext4 driver through a loop device on a new directory and
// returns that, or skips the test where that cannot be done here (not
// root, no loop devices, no e2fsprogs). No blocks are reserved for root
// (the tests run as root) and there is no journal, so that the space the
// test sees is the space there is.
func mountSmallExt4(t *testing.T, kind string, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a small ext4 file system needs root")
	}
	img := filepath.Join(t.TempDir(), kind+".img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs."+kind, "-q", "-F", "-m", "0", "-O", "^has_journal", img).CombinedOutput(); err != nil {
		t.Skipf("skipped: cannot make an %s file system here (%v: %s)", kind, err, bytes.TrimSpace(out))
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "ext4", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Skipf("skipped: cannot mount a loop device here (%v: %s)", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting the test's %s: %v", kind, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// /dev/kmsg takes one record per write() and refuses writes of more than
// about 1 KiB: Open recognises it by its device number, and a batch of 50
// entries (2 KiB) becomes 50 records in the kernel's log. Needs root (to
// write) and the right to read the log; skipped otherwise.
func TestKmsgGetsOneRecordPerEntry(t *testing.T) {
	r, err := os.OpenFile("/dev/kmsg", os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Skipf("cannot read the kernel log: %v", err)
	}
	defer r.Close()
	if _, err := r.Seek(0, 2); err != nil { // SEEK_END: only records from now on
		t.Skipf("cannot seek the kernel log: %v", err)
	}
	f, err := Open("/dev/kmsg")
	if err != nil {
		t.Skipf("cannot write the kernel log: %v", err)
	}
	defer f.Close()
	tag := fmt.Sprintf("snail-filelog-test-%d", time.Now().UnixNano())
	var batch []byte
	for i := range 50 {
		batch = fmt.Appendf(batch, "%s entry %02d of a batch of fifty\n", tag, i)
	}
	if err := f.WriteBatch(batch, 50); err != nil {
		t.Fatalf("a %d-byte batch to /dev/kmsg: %v", len(batch), err)
	}
	if st := f.Stats(); st.Writes != 50 {
		t.Fatalf("%d writes, want one per entry", st.Writes)
	}
	got := 0
	buf := make([]byte, 8192)
	for deadline := time.Now().Add(time.Second); got < 50 && time.Now().Before(deadline); {
		n, err := syscall.Read(int(r.Fd()), buf) // one record per read
		if err != nil {
			time.Sleep(time.Millisecond) // EAGAIN: not there yet
			continue
		}
		if bytes.Contains(buf[:n], []byte(tag)) {
			got++
		}
	}
	// The kernel rate-limits what processes write there (10 records per 5
	// s by default, printk_devkmsg=ratelimit) and drops the rest after
	// accepting the write: all 50 show only without the limit.
	mode, _ := os.ReadFile("/proc/sys/kernel/printk_devkmsg")
	if strings.TrimSpace(string(mode)) == "on" && got != 50 {
		t.Fatalf("%d records with the tag in the kernel log, want 50", got)
	}
	t.Logf("%d of 50 records in the kernel log (printk_devkmsg=%s)", got, strings.TrimSpace(string(mode)))
}

// TestDiskFullCutsOnlyItsOwnBytes fills a small disk under a File while
// the file's end moves without it: another process appends to the same
// file, or logrotate's copytruncate empties it. The failed batch is cut
// back from where the file really ends: the other writer's lines stay (cut
// at the File's own count of bytes, they were deleted), and no zero bytes
// pad the emptied file up to its old size.
func TestDiskFullCutsOnlyItsOwnBytes(t *testing.T) {
	for _, tc := range []string{"another appender", "copytruncate"} {
		t.Run(tc, func(t *testing.T) {
			dir := mountSmallTmpfs(t, 256<<10)
			path := filepath.Join(dir, "app.log")
			f := mustOpen(t, path)
			other := mustOpen(t, path) // no rotation: two Files may share it
			var want []byte
			if err := f.WriteBatch(lines(100, 0), 100); err != nil {
				t.Fatal(err)
			}
			if tc == "copytruncate" {
				if err := os.Truncate(path, 0); err != nil {
					t.Fatal(err)
				}
			} else {
				want = lines(100, 0)
			}
			filler := filepath.Join(dir, "filler")
			if err := os.WriteFile(filler, make([]byte, 128<<10), 0o600); err != nil {
				t.Fatal(err)
			}
			var werr error
			for i := 1; i < 10000; i++ {
				b := lines(37, i*37) // ~1 KB batches that do not divide the space
				if werr = f.WriteBatch(b, 37); werr != nil {
					break
				}
				want = append(want, b...)
				if tc == "another appender" {
					o := lines(3, 1_000_000+i*3)
					if err := other.WriteBatch(o, 3); err != nil {
						t.Fatal(err) // small: it fits where f's batch did
					}
					want = append(want, o...)
				}
			}
			if !errors.Is(werr, syscall.ENOSPC) {
				t.Fatalf("writing until full: %v, want ENOSPC", werr)
			}
			got, _ := os.ReadFile(path)
			if !bytes.Equal(got, want) {
				t.Fatalf("file holds %d bytes (%d zero bytes), the successful batches %d", len(got), bytes.Count(got, []byte{0}), len(want))
			}
		})
	}
}

// TestKmsgRefusesALongRecordAlone: /dev/kmsg refuses a record over about
// 1 KiB (EINVAL). That entry is dropped and reported; the batch's others
// go, once each.
func TestKmsgRefusesALongRecordAlone(t *testing.T) {
	var reported []error
	f, err := Open("/dev/kmsg", WithErrorHandler(func(err error) { reported = append(reported, err) }))
	if err != nil {
		t.Skipf("cannot write the kernel log: %v", err)
	}
	defer f.Close()
	tag := fmt.Sprintf("snail-filelog-test-%d", time.Now().UnixNano())
	batch := fmt.Appendf(nil, "%s before\n%s long %s\n%s after\n", tag, tag, strings.Repeat("z", 4000), tag)
	if err := f.WriteBatch(batch, 3); err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.Refused != 1 || st.Writes != 3 || len(reported) != 1 ||
		!errors.Is(reported[0], ErrRecordRefused) || !errors.Is(reported[0], syscall.EINVAL) {
		t.Fatalf("stats %+v, reported %v: want 3 writes, 1 refused with EINVAL", st, reported)
	}
}
