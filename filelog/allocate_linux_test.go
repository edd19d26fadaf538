package filelog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// ext4Dir returns a directory on ext4: the test's own if it is on one,
// else a small ext4 mounted for the test (or the test is skipped).
func ext4Dir(t *testing.T) string {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.EXT4_SUPER_MAGIC {
		return dir
	}
	return mountSmallExt4(t, "ext4", 32<<20)
}

type allocation struct {
	off, n int64
	err    error
}

// recordAllocations records what allocateEnd asks of the file system
// until the test ends.
func recordAllocations(t *testing.T) *[]allocation {
	var got []allocation
	testHookAllocate = func(off, n int64, err error) { got = append(got, allocation{off, n, err}) }
	t.Cleanup(func() { testHookAllocate = nil })
	return &got
}

// On ext4, a batch of 256 KiB or more has its blocks allocated before it
// is written, up to the next multiple of 8 MiB (allocateChunk) from the
// file's real end, or to the rotation size; smaller batches are written as
// they are. What no write filled is given back when the File lets go of
// the file (Close, rotation), unless another process appended to it or
// emptied it: then the File's count is not the file's end, and cutting
// there would delete their lines or pad the file with zeros.
func TestLargeBatchesAllocatedFirst(t *testing.T) {
	small, large := lines(37, 0), lines(11_000, 0) // about 1 KB and 300 KB
	const chunk = allocateChunk
	up := func(n int64) int64 { return (n + chunk - 1) / chunk * chunk }
	check := func(t *testing.T, path string, want []byte) {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, want) {
			t.Fatalf("%s holds %d bytes (%d zero bytes), want %d", path, len(data), bytes.Count(data, []byte{0}), len(want))
		}
	}
	t.Run("one writer", func(t *testing.T) {
		path := filepath.Join(ext4Dir(t), "app.log")
		got := recordAllocations(t)
		f := mustOpen(t, path)
		content := append([]byte(nil), small...)
		if err := f.WriteBatch(small, 37); err != nil {
			t.Fatal(err)
		}
		var want []allocation
		var allocEnd int64  // where the blocks allocated so far end
		for i := range 30 { // past the first 8 MiB
			end := int64(len(content))
			if end+int64(len(large)) > allocEnd {
				allocEnd = up(end + int64(len(large)))
				want = append(want, allocation{end, allocEnd - end, nil})
			}
			var err error
			if i%2 == 0 {
				err = f.WriteBatch(large, 11_000)
			} else {
				err = f.WriteBatchVec(split(large, 3), 11_000)
			}
			if err != nil {
				t.Fatal(err)
			}
			content = append(content, large...)
		}
		if !slices.Equal(*got, want) {
			t.Fatalf("allocations %+v, want %+v", *got, want)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		check(t, path, content)
		checkNoBlocksPastEnd(t, path)
	})
	t.Run("another appender", func(t *testing.T) {
		path := filepath.Join(ext4Dir(t), "app.log")
		f := mustOpen(t, path)
		if err := f.WriteBatch(large, 11_000); err != nil {
			t.Fatal(err)
		}
		other, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		if _, err := other.Write([]byte("theirs\n")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Write([]byte("theirs again\n")); err != nil {
			t.Fatal(err)
		}
		check(t, path, slices.Concat(large, []byte("theirs\ntheirs again\n")))
	})
	t.Run("copytruncate", func(t *testing.T) {
		path := filepath.Join(ext4Dir(t), "app.log")
		got := recordAllocations(t)
		f := mustOpen(t, path)
		for range 2 {
			if err := f.WriteBatch(large, 11_000); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.WriteBatch(large, 11_000); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		check(t, path, large)         // not padded to the File's count of bytes
		checkNoBlocksPastEnd(t, path) // the truncation gave them back
		if len(*got) != 1 || (*got)[0] != (allocation{0, chunk, nil}) {
			t.Fatalf("allocations %+v, want one chunk from 0", *got)
		}
	})
	t.Run("rotation", func(t *testing.T) {
		dir := ext4Dir(t)
		path := filepath.Join(dir, "app.log")
		got := recordAllocations(t)
		const max = 1 << 20
		f := mustOpen(t, path, WithMaxSize(max))
		var content []byte
		for range 7 { // 3 a file
			if err := f.WriteBatch(large, 11_000); err != nil {
				t.Fatal(err)
			}
			content = append(content, large...)
		}
		for _, a := range *got {
			if a.off != 0 || a.n != max || a.err != nil {
				t.Fatalf("allocations %+v, want each from 0 to the rotation size", *got)
			}
		}
		if len(*got) != 3 {
			t.Fatalf("allocations %+v, want one a file", *got)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		bs := f.backups()
		if len(bs) != 2 {
			t.Fatalf("backups %+v, want 2", bs)
		}
		for _, name := range []string{bs[0].name, bs[1].name, path} {
			checkNoBlocksPastEnd(t, name)
		}
		if data := readAll(t, f); !bytes.Equal(data, content) {
			t.Fatalf("backups and live file hold %d bytes, want %d", len(data), len(content))
		}
	})
}

// On a file system that takes the ext4 driver but whose files have no
// extents (an ext2 one), fallocate is refused: the File asks once, then
// writes without, and every batch is written.
func TestAllocationRefusedOnce(t *testing.T) {
	path := filepath.Join(mountSmallExt4(t, "ext2", 16<<20), "app.log")
	got := recordAllocations(t)
	f := mustOpen(t, path)
	large := lines(11_000, 0)
	for i := range 3 {
		if err := f.WriteBatch(large, 11_000); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	if len(*got) != 1 || !errors.Is((*got)[0].err, syscall.EOPNOTSUPP) {
		t.Fatalf("allocations %+v, want one refused with EOPNOTSUPP", *got)
	}
	data, _ := os.ReadFile(path)
	if !bytes.Equal(data, bytes.Repeat(large, 3)) {
		t.Fatalf("the file holds %d bytes, want the 3 batches' %d", len(data), 3*len(large))
	}
}

// A path reopened as something else than a regular file on ext4 (here a
// FIFO, once the file was moved away) gets no allocation.
func TestNoAllocationAfterReopenOnAFIFO(t *testing.T) {
	dir := ext4Dir(t)
	path := filepath.Join(dir, "app.log")
	got := recordAllocations(t)
	f := mustOpen(t, path)
	large := lines(11_000, 0)
	if err := f.WriteBatch(large, 11_000); err != nil {
		t.Fatal(err)
	}
	if len(*got) != 1 {
		t.Fatalf("allocations %+v, want one for the regular file", *got)
	}
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDWR, 0) // a reader, which never blocks opening
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	read := make(chan int)
	go func() {
		n, buf := 0, make([]byte, 64<<10)
		for n < len(large) {
			k, err := r.Read(buf)
			if err != nil {
				break
			}
			n += k
		}
		read <- n
	}()
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteBatch(large, 11_000); err != nil {
		t.Fatal(err)
	}
	if n := <-read; n != len(large) {
		t.Fatalf("the FIFO's reader got %d bytes, want %d", n, len(large))
	}
	if len(*got) != 1 {
		t.Fatalf("allocations %+v: one for the FIFO", *got)
	}
}

// Blocks allocated past the end and never written, as a process killed
// between its allocation and its writes leaves them, are given back when
// the next File lets go of the file, even if it wrote no large batch.
func TestBlocksLeftPastTheEndGivenBack(t *testing.T) {
	path := filepath.Join(ext4Dir(t), "app.log")
	if err := os.WriteFile(path, lines(10, 0), 0o640); err != nil {
		t.Fatal(err)
	}
	fd, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = unix.Fallocate(int(fd.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, allocateChunk)
	fd.Close()
	if err != nil {
		t.Fatal(err)
	}
	f := mustOpen(t, path)
	if err := f.WriteBatch(lines(37, 10), 37); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	checkNoBlocksPastEnd(t, path)
	if data, _ := os.ReadFile(path); !bytes.Equal(data, lines(47, 0)) {
		t.Fatalf("the file holds %d bytes, want the 47 lines", len(data))
	}
}
