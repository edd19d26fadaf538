package filelog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
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

// On ext4, a batch of 256 KiB or more has its blocks allocated just before
// it is written, exactly the batch's, at the file's real end: after
// another process appended, and after logrotate's copytruncate emptied the
// file (where the File's own count of bytes would leave blocks allocated
// past the end, for good). Smaller batches are written as they are.
func TestLargeBatchesAllocatedFirst(t *testing.T) {
	path := filepath.Join(ext4Dir(t), "app.log")
	got := recordAllocations(t)
	f := mustOpen(t, path)
	var want []allocation
	var content []byte
	end := func() int64 { return int64(len(content)) }
	small, large := lines(37, 0), lines(11_000, 0) // about 1 KB and 300 KB
	other, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	steps := []struct {
		name string
		do   func() error
	}{
		{"a small batch", func() error { content = append(content, small...); return f.WriteBatch(small, 37) }},
		{"a large batch", func() error {
			want = append(want, allocation{end(), int64(len(large)), nil})
			content = append(content, large...)
			return f.WriteBatch(large, 11_000)
		}},
		{"a large batch in pieces", func() error {
			want = append(want, allocation{end(), int64(len(large)), nil})
			content = append(content, large...)
			return f.WriteBatchVec(split(large, 3), 11_000)
		}},
		{"another process appends, then a large batch", func() error {
			if _, err := other.Write([]byte("theirs\n")); err != nil {
				return err
			}
			content = append(content, "theirs\n"...)
			want = append(want, allocation{end(), int64(len(large)), nil})
			content = append(content, large...)
			return f.WriteBatch(large, 11_000)
		}},
		{"copytruncate, then a large batch", func() error {
			if err := os.Truncate(path, 0); err != nil {
				return err
			}
			content = content[:0]
			want = append(want, allocation{0, int64(len(large)), nil})
			content = append(content, large...)
			return f.WriteBatchVec(split(large, 2), 11_000)
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if len(*got) != len(want) || (len(want) > 0 && (*got)[len(want)-1] != want[len(want)-1]) {
			t.Fatalf("after %s: allocations %+v, want %+v", s.name, *got, want)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, content) {
			t.Fatalf("after %s: the file holds %d bytes, want %d", s.name, len(data), len(content))
		}
		checkNoBlocksPastEnd(t, path)
	}
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
