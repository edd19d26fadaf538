package filelog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
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

// TestDiskFull fills a small tmpfs: the error names ENOSPC, no entry is left
// half-written, and writing resumes once space is freed.
func TestDiskFull(t *testing.T) {
	for _, wm := range writeModes {
		t.Run(wm.name, func(t *testing.T) { testDiskFull(t, wm.write) })
	}
}

func testDiskFull(t *testing.T, write func(*File, []byte, int) error) {
	dir := mountSmallTmpfs(t, 256<<10)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "app.log")
	f := mustOpen(t, path)
	var written []byte
	var werr error
	for i := 0; i < 10000; i++ {
		b := lines(37, i*37) // ~1 KB batches that do not divide the space
		if werr = write(f, b, 37); werr != nil {
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
	os.Remove(filler)
	b := lines(37, 1_000_000)
	if err := write(f, b, 37); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
	got, _ = os.ReadFile(path)
	if !bytes.Equal(got, append(written, b...)) {
		t.Fatal("content after recovery is not the successful batches in order")
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
