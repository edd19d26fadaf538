//go:build unix

package filelog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	_ "time/tzdata" // the zones of TestRotationPeriods, on machines without tzdata

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/snail-log/snail/internal/testfd"
)

func mustOpen(t *testing.T, path string, opts ...Option) *File {
	t.Helper()
	f, err := Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// split cuts b into k pieces at uneven places, not on entry boundaries.
func split(b []byte, k int) [][]byte {
	var out [][]byte
	for i := k; i > 1 && len(b) > 0; i-- {
		cut := len(b) / (i + 1)
		out = append(out, b[:cut])
		b = b[cut:]
	}
	return append(out, b)
}

// writeModes are the two ways a batch reaches a File: whole, or in pieces.
var writeModes = []struct {
	name  string
	write func(f *File, b []byte, n int) error
}{
	{"whole", func(f *File, b []byte, n int) error { return f.WriteBatch(b, n) }},
	{"pieces", func(f *File, b []byte, n int) error { return f.WriteBatchVec(split(b, 3), n) }},
}

func lines(n, from int) []byte {
	var b []byte
	for i := from; i < from+n; i++ {
		b = fmt.Appendf(b, `{"id":%d,"msg":"hello"}`+"\n", i)
	}
	return b
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing directory", filepath.Join(dir, "nope", "app.log"), "no such file or directory"},
		{"directory", dir, "is a directory"},
		{"empty", "", "invalid option: empty path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("Open(%s) = %v, want an error with %q and the path", tc.path, err, tc.want)
			}
		})
	}
	t.Run("permission denied", func(t *testing.T) {
		path := "/sys/kernel/notes" // read-only even for root
		if os.Geteuid() != 0 {
			d := filepath.Join(dir, "ro")
			os.Mkdir(d, 0o500)
			path = filepath.Join(d, "app.log")
		}
		_, err := Open(path)
		if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), path) {
			t.Fatalf("Open(%s) = %v, want permission denied with the path", path, err)
		}
	})
	t.Run("fifo without reader", func(t *testing.T) {
		p := filepath.Join(dir, "fifo")
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(p)
		if !errors.Is(err, syscall.ENXIO) || !strings.Contains(err.Error(), p) {
			t.Fatalf("Open(fifo) = %v, want ENXIO with the path", err)
		}
	})
	for _, o := range []Option{WithMode(0o1777 | os.ModeDir), WithFsync(9), WithFsyncInterval(0), WithMaxSize(-1),
		WithRotateEvery(time.Millisecond), WithMaxBackups(0), WithMaxAge(-1), WithCompression(7), WithClock(nil)} {
		if _, err := Open(filepath.Join(dir, "x.log"), o); !errors.Is(err, ErrInvalidOption) {
			t.Fatalf("bad option: %v, want ErrInvalidOption", err)
		}
	}
	if _, err := Open(filepath.Join(dir, "x.log"), WithFsync(FsyncInterval)); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("FsyncInterval without interval: %v", err)
	}
}

func TestWriteAppendAndMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	os.WriteFile(path, []byte("existing\n"), 0o600)
	f := mustOpen(t, path, WithFsync(FsyncBatch))
	if err := f.WriteBatch(lines(3, 0), 3); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if want := "existing\n" + string(lines(3, 0)); string(got) != want {
		t.Fatalf("file = %q, want %q", got, want)
	}
	if st := f.Stats(); st.Writes != 1 {
		t.Fatalf("%d writes for one batch", st.Writes)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteBatch([]byte("x\n"), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteBatch after Close = %v", err)
	}
	if err := f.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}

	p2 := filepath.Join(t.TempDir(), "new.log")
	f2 := mustOpen(t, p2, WithMode(0o600))
	f2.Close()
	if st, _ := os.Stat(p2); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	p3 := filepath.Join(t.TempDir(), "default.log")
	mustOpen(t, p3).Close()
	if st, _ := os.Stat(p3); st.Mode().Perm()&^0o640 != 0 { // umask may remove bits
		t.Fatalf("default mode %v, want 0640 at most", st.Mode().Perm())
	}
}

// readAll returns the concatenated contents of the live file and every
// backup, oldest first, decompressing as needed.
func readAll(t *testing.T, f *File) []byte {
	t.Helper()
	var out []byte
	for _, b := range f.backups() {
		out = append(out, readFile(t, b.name)...)
	}
	live, err := os.ReadFile(f.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return append(out, live...)
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	fh, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var r io.Reader = fh
	switch filepath.Ext(name) {
	case ".gz":
		gr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		r = gr
	case ".zst":
		zr, err := zstd.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// TestWriteBatchVec: a batch in pieces lands as the pieces joined, with one
// writev(); rotation counts the whole batch; after Close it is ErrClosed.
func TestWriteBatchVec(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	f := mustOpen(t, path, WithMaxSize(3000))
	var want []byte
	for i := range 20 {
		b := lines(10, i*10) // ~250 bytes
		pieces := split(b, 1+i%5)
		pieces = append(pieces, nil) // an empty piece is fine
		if err := f.WriteBatchVec(pieces, 10); err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	if st := f.Stats(); st.Writes != 20 {
		t.Fatalf("%d write calls for 20 batches, want one writev each", st.Writes)
	}
	if err := f.WriteBatchVec(nil, 0); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteBatchVec([][]byte{[]byte("x\n")}, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteBatchVec after Close = %v", err)
	}
	// Rotated files sort by name, oldest first, and none is over the size.
	var got []byte
	backups, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "app-*.log")) // sorted: names sort by time
	for _, p := range append(backups, path) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 3000 {
			t.Fatalf("%s holds %d bytes, over the 3000 limit", p, len(b))
		}
		got = append(got, b...)
	}
	if len(backups) == 0 || !bytes.Equal(got, want) {
		t.Fatalf("%d backups; content %d bytes, want the %d bytes written in order", len(backups), len(got), len(want))
	}
}

func TestRotateBySizeOnBatchBoundaries(t *testing.T) {
	for _, comp := range []Compression{NoCompression, Gzip, Zstd} {
		t.Run(fmt.Sprint(comp), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.log")
			f := mustOpen(t, path, WithMaxSize(1000), WithMaxBackups(Unlimited), WithCompression(comp))
			var want []byte
			for i := range 50 {
				b := lines(1+i%7, len(bytes.Split(want, []byte("\n")))-1)
				want = append(want, b...)
				if err := f.WriteBatch(b, 0); err != nil {
					t.Fatal(err)
				}
			}
			if f.comp != nil {
				f.comp.waitIdle()
			}
			bs := f.backups()
			if len(bs) < 3 {
				t.Fatalf("%d backups, want several", len(bs))
			}
			for _, b := range bs {
				if b.compressed != (comp != NoCompression) {
					t.Fatalf("backup %s compressed=%v with %v", b.name, b.compressed, comp)
				}
				content := readFile(t, b.name)
				if len(content) > 1000 || !bytes.HasSuffix(content, []byte("\n")) {
					t.Fatalf("backup %s: %d bytes, ends %q", b.name, len(content), content[max(0, len(content)-5):])
				}
			}
			if got := readAll(t, f); !bytes.Equal(got, want) {
				t.Fatalf("live + backups differ from what was written (%d vs %d bytes)", len(got), len(want))
			}
			if !slices.IsSortedFunc(bs, func(a, b backup) int { return strings.Compare(a.name, b.name) }) {
				t.Fatal("backup names do not sort by time")
			}
		})
	}
}

func TestBackupNamesNeverCollide(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "app.log")
	f := mustOpen(t, path, WithClock(func() time.Time { return now }), WithMaxBackups(Unlimited))
	for i := range 5 { // five rotations at the same instant
		f.WriteBatch(lines(1, i), 1)
		if err := f.Rotate(); err != nil {
			t.Fatal(err)
		}
	}
	bs := f.backups()
	if len(bs) != 5 {
		t.Fatalf("%d backups, want 5", len(bs))
	}
	for i, b := range bs {
		if got := readFile(t, b.name); !bytes.Equal(got, lines(1, i)) {
			t.Fatalf("backup %d (%s) = %q", i, b.name, got)
		}
	}
}

// IsBackupName recognises every name rotation gives, compressed or not,
// and nothing else; each backup a File made passes it.
func TestIsBackupName(t *testing.T) {
	for name, want := range map[string]bool{
		"app-20261127T110000.000000000Z.log":     true,
		"app-20261127T110000.000000000Z.log.zst": true,
		"app-20261127T110000.000000000Z.log.gz":  true,
		"app-20261127T110000.000000000Z":         true, // of a path without extension
		"app-20261127T110000.000000000Z.zst":     true,
		"app.log":                                false,
		"app-20261127T110000.000000000Z.log.tmp": false,
		"app20261127T110000.000000000Z.log":      false,
		"app-20261127T110000.00000000Z.log":      false,
		"app-20261327T110000.000000000Z.log":     false, // month 13
		"-20261127T110000.000000000Z.log":        true,
		"":                                       false,
	} {
		if got := IsBackupName(name); got != want {
			t.Errorf("IsBackupName(%q) = %v, want %v", name, got, want)
		}
	}
	for _, path := range []string{"app.log", "app"} {
		f := mustOpen(t, filepath.Join(t.TempDir(), path), WithMaxBackups(Unlimited))
		f.WriteBatch(lines(1, 0), 1)
		if err := f.Rotate(); err != nil {
			t.Fatal(err)
		}
		if bs := f.backups(); len(bs) != 1 || !IsBackupName(filepath.Base(bs[0].name)) || IsBackupName(path) {
			t.Errorf("%s: backups %v", path, bs)
		}
		f.Close()
	}
}

// TestCopytruncateDoesNotRotateEarly: after logrotate's copytruncate
// empties the file, rotation by size counts from the file's real size, not
// from what the File wrote before.
func TestCopytruncateDoesNotRotateEarly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	f := mustOpen(t, path, WithMaxSize(4096))
	if err := f.WriteBatch(lines(100, 0), 100); err != nil { // over 2 KiB
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteBatch(lines(100, 100), 100); err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.Rotations != 0 {
		t.Fatalf("%d rotations after copytruncate, want 0", st.Rotations)
	}
	if got := readFile(t, path); !bytes.Equal(got, lines(100, 100)) {
		t.Fatalf("file holds %d bytes, want the second batch alone", len(got))
	}
	if _, pos := f.Position(); pos != int64(len(lines(100, 100))) {
		t.Fatalf("Position size %d, want %d", pos, len(lines(100, 100)))
	}
	// With WithFollowPath, which looks at the file every batch, Position
	// follows the truncation at once.
	g := mustOpen(t, filepath.Join(t.TempDir(), "b.log"), WithFollowPath(time.Hour))
	g.WriteBatch(lines(100, 0), 100)
	if err := os.Truncate(g.Path(), 0); err != nil {
		t.Fatal(err)
	}
	g.WriteBatch(lines(10, 0), 10)
	if _, pos := g.Position(); pos != int64(len(lines(10, 0))) {
		t.Fatalf("Position size %d after copytruncate, want %d", pos, len(lines(10, 0)))
	}
}

// TestRetentionAfterTheClockWentBack: a File opened with its clock behind
// the newest backup (a restart before NTP set the clock) names its backups
// after that one, so that retention keeps the newest data and deletes the
// oldest; named by the clock, the new backup sorted first and was deleted
// at once.
func TestRetentionAfterTheClockWentBack(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "app.log")
	clock := WithClock(func() time.Time { return now })
	f := mustOpen(t, path, clock, WithMaxBackups(3))
	for i := range 3 {
		f.WriteBatch(lines(1, i), 1)
		f.Rotate()
	}
	f.Close()
	now = now.Add(-3 * time.Hour)
	f = mustOpen(t, path, clock, WithMaxBackups(3))
	defer f.Close()
	f.WriteBatch(lines(1, 3), 1)
	if err := f.Rotate(); err != nil {
		t.Fatal(err)
	}
	bs := f.backups()
	if len(bs) != 3 {
		t.Fatalf("%d backups kept, want 3", len(bs))
	}
	for k, b := range bs {
		if got := readFile(t, b.name); !bytes.Equal(got, lines(1, k+1)) {
			t.Fatalf("backup %d (%s) = %q, want entry %d", k, filepath.Base(b.name), got, k+1)
		}
	}
}

func TestRetention(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "app.log")
	f := mustOpen(t, path, WithClock(func() time.Time { return now }), WithMaxBackups(3), WithMaxAge(90*time.Minute))
	for i := range 6 {
		f.WriteBatch(lines(1, i), 1)
		f.Rotate()
	}
	bs := f.backups()
	if len(bs) != 3 {
		t.Fatalf("%d backups kept, want 3", len(bs))
	}
	if got := readFile(t, bs[0].name); !bytes.Equal(got, lines(1, 3)) {
		t.Fatalf("oldest kept = %q, want entry 3", got)
	}
	now = now.Add(time.Hour)
	f.WriteBatch(lines(1, 6), 1)
	f.Rotate()
	if n := len(f.backups()); n != 3 {
		t.Fatalf("%d backups after an hour, want 3", n)
	}
	now = now.Add(time.Hour) // the first six are now over 90 minutes old
	f.WriteBatch(lines(1, 7), 1)
	f.Rotate()
	if bs := f.backups(); len(bs) != 2 {
		t.Fatalf("%d backups, want the 2 younger than 90 minutes", len(bs))
	}
}

func TestRotateByTime(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 59, 0, 0, time.Local)
	path := filepath.Join(t.TempDir(), "app.log")
	f := mustOpen(t, path, WithClock(func() time.Time { return now }), WithRotateEvery(time.Hour))
	f.WriteBatch(lines(2, 0), 2)
	now = now.Add(30 * time.Second)
	f.WriteBatch(lines(1, 2), 1)
	if n := len(f.backups()); n != 0 {
		t.Fatalf("rotated before the hour: %d backups", n)
	}
	now = now.Add(31 * time.Second) // 11:00:01
	f.WriteBatch(lines(1, 3), 1)
	bs := f.backups()
	if len(bs) != 1 || !bytes.Equal(readFile(t, bs[0].name), lines(3, 0)) {
		t.Fatalf("after the hour: %d backups", len(bs))
	}
	now = now.Add(3 * time.Hour) // an idle file is not rotated into empty backups
	f.WriteBatch(lines(1, 4), 1)
	now = now.Add(time.Hour)
	f.WriteBatch(lines(1, 5), 1)
	if got := readAll(t, f); !bytes.Equal(got, lines(6, 0)) {
		t.Fatalf("content %q", got)
	}
}

// Time rotation's periods: whole days on the calendar (local midnight even
// on the 23- and 25-hour days of a daylight saving change), shorter
// intervals from each local midnight, several days from 1970-01-01.
func TestRotationPeriods(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	at := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, ny) }
	for _, tc := range []struct {
		every            time.Duration
		now, start, next time.Time
	}{
		// 2026-11-01 has 25 hours in New York, 2026-03-08 has 23.
		{24 * time.Hour, at(2026, 11, 1, 23, 30), at(2026, 11, 1, 0, 0), at(2026, 11, 2, 0, 0)},
		{24 * time.Hour, at(2026, 3, 8, 23, 30), at(2026, 3, 8, 0, 0), at(2026, 3, 9, 0, 0)},
		{24 * time.Hour, at(2026, 11, 27, 12, 0), at(2026, 11, 27, 0, 0), at(2026, 11, 28, 0, 0)},
		{time.Hour, at(2026, 11, 27, 12, 30), at(2026, 11, 27, 12, 0), at(2026, 11, 27, 13, 0)},
		{7 * time.Hour, at(2026, 11, 27, 22, 0), at(2026, 11, 27, 21, 0), at(2026, 11, 28, 0, 0)}, // periods restart at midnight
		{48 * time.Hour, at(2026, 11, 27, 12, 0), at(2026, 11, 27, 0, 0), at(2026, 11, 29, 0, 0)}, // day 20784 since 1970
		{48 * time.Hour, at(2026, 11, 28, 12, 0), at(2026, 11, 27, 0, 0), at(2026, 11, 29, 0, 0)},
	} {
		l := &File{cfg: config{every: tc.every, now: func() time.Time { return tc.now }}}
		l.scheduleRotation()
		if start := l.periodStart(tc.now); !start.Equal(tc.start) || !l.nextRotate.Equal(tc.next) {
			t.Errorf("every %v at %v: period %v to %v, want %v to %v", tc.every, tc.now, start, l.nextRotate, tc.start, tc.next)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "a.log"), WithRotateEvery(36*time.Hour)); err == nil {
		t.Error("a 36h rotation interval was accepted")
	}
}

// WithFollowPath: once the interval has passed, a batch finds that the
// path no longer names the open file (moved by logrotate without a signal)
// and goes to a new file at the path; a batch before that still goes to
// the old file. A file left without a name (deleted, or replaced by sed
// -i) is noticed at the next batch. Without its directory the batch
// fails until the directory is back.
func TestFollowPath(t *testing.T) {
	for _, tc := range []struct {
		name    string
		act     func(path string) error
		old     string // where the old file went, "" if gone
		oldHas  []byte // what it holds then
		newHas  []byte // what the path holds at the end
		reopens int64
	}{
		{"deleted", os.Remove, "", nil, lines(2, 1), 1}, // an unlinked file is noticed at once
		{"moved", func(p string) error { return os.Rename(p, p+".1") }, ".1", lines(2, 0), lines(1, 2), 1},
		{"replaced", func(p string) error {
			if err := os.WriteFile(p+".tmp", []byte("edited\n"), 0o640); err != nil {
				return err
			}
			return os.Rename(p+".tmp", p)
		}, "", nil, append([]byte("edited\n"), lines(2, 1)...), 1}, // the old file has no name left: at once
		{"left alone", func(string) error { return nil }, "", nil, lines(3, 0), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
			path := filepath.Join(t.TempDir(), "app.log")
			f := mustOpen(t, path, WithClock(func() time.Time { return now }), WithFollowPath(time.Second))
			f.WriteBatch(lines(1, 0), 1)
			if err := tc.act(path); err != nil {
				t.Fatal(err)
			}
			now = now.Add(500 * time.Millisecond)
			f.WriteBatch(lines(1, 1), 1) // within the interval: the old file, unless deleted
			now = now.Add(600 * time.Millisecond)
			if err := f.WriteBatch(lines(1, 2), 1); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, path); !bytes.Equal(got, tc.newHas) {
				t.Errorf("path holds %q, want %q", got, tc.newHas)
			}
			if tc.old != "" {
				if got := readFile(t, path+tc.old); !bytes.Equal(got, tc.oldHas) {
					t.Errorf("old file holds %q, want %q", got, tc.oldHas)
				}
			}
			if got := f.Stats().Reopens; got != tc.reopens {
				t.Errorf("%d reopens, want %d", got, tc.reopens)
			}
		})
	}
	t.Run("directory gone", func(t *testing.T) {
		now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
		dir := filepath.Join(t.TempDir(), "logs")
		os.Mkdir(dir, 0o750)
		path := filepath.Join(dir, "app.log")
		f := mustOpen(t, path, WithClock(func() time.Time { return now }), WithFollowPath(time.Second))
		f.WriteBatch(lines(1, 0), 1)
		os.RemoveAll(dir)
		now = now.Add(2 * time.Second)
		if err := f.WriteBatch(lines(1, 1), 1); err == nil {
			t.Fatal("a batch without the directory did not fail")
		}
		os.Mkdir(dir, 0o750)
		if err := f.WriteBatch(lines(1, 1), 1); err != nil { // looks again at once
			t.Fatal(err)
		}
		if got := readFile(t, path); !bytes.Equal(got, lines(1, 1)) {
			t.Errorf("path holds %q", got)
		}
	})
	if err := CheckOptions(WithFollowPath(0)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("WithFollowPath(0): %v", err)
	}
}

func TestCrashDuringCompressionLosesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	// What a crash mid-compression leaves: the rotated file whole, and a
	// partial .zst.tmp beside it.
	backup := filepath.Join(dir, "app-20261125T120000.000000000Z.log")
	os.WriteFile(backup, lines(100, 0), 0o640)
	os.WriteFile(backup+".zst.tmp", []byte("partial garbage"), 0o640)
	f := mustOpen(t, path, WithCompression(Zstd))
	f.comp.waitIdle()
	if _, err := os.Stat(backup + ".zst.tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("stale .tmp left behind")
	}
	if got := readFile(t, backup+".zst"); !bytes.Equal(got, lines(100, 0)) {
		t.Fatal("the interrupted backup was not compressed whole on the next Open")
	}
	if _, err := os.Stat(backup); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("original kept after compression")
	}
}

// TestRotationThatCannotOpenTheNewFile: a rotation renamed the live file
// and then could not open a new one at the path (the open-file limit; a
// full disk with no inode left would do the same). The batch fails and
// nothing is written into the backup meanwhile; once the open succeeds the
// rotation is finished: the batch goes to the new file and the backup is
// compressed, as after any rotation.
func TestRotationThatCannotOpenTheNewFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	batch := func(k int) []byte { return lines(100, 100*k) }
	f := mustOpen(t, path, WithMaxSize(int64(len(batch(0))+10)), WithCompression(Zstd), WithErrorHandler(func(error) {}))
	for k := range 2 { // the second rotates the first away
		if err := f.WriteBatch(batch(k), 100); err != nil {
			t.Fatal(err)
		}
	}
	f.comp.waitIdle()

	release := testfd.Exhaust(t, 0)
	for range 3 {
		if err := f.WriteBatch(batch(2), 100); !errors.Is(err, syscall.EMFILE) {
			release()
			t.Fatalf("WriteBatch with no descriptor free = %v, want EMFILE", err)
		}
	}
	release()
	if err := f.WriteBatch(batch(2), 100); err != nil {
		t.Fatalf("WriteBatch once descriptors are back = %v", err)
	}
	f.comp.waitIdle()
	bs := f.backups()
	if len(bs) != 2 || !bs[0].compressed || !bs[1].compressed {
		t.Fatalf("backups %+v: want two, both compressed", bs)
	}
	for i, want := range [][]byte{batch(0), batch(1)} {
		if got := readFile(t, bs[i].name); !bytes.Equal(got, want) {
			t.Errorf("backup %d holds %d bytes, want batch %d alone", i, len(got), i)
		}
	}
	if got := readFile(t, path); !bytes.Equal(got, batch(2)) {
		t.Errorf("the live file holds %d bytes, want the batch that waited, once", len(got))
	}
}

// TestFailedCompressionTriedAgain: a backup whose compression failed (here
// its .tmp path is taken; a full disk does the same) is compressed with the
// next rotation's, not left as it is until the next Open.
func TestFailedCompressionTriedAgain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var errs []error
	f := mustOpen(t, path, WithMaxSize(600), WithCompression(Zstd), WithClock(func() time.Time { return now }),
		WithErrorHandler(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }))
	first := f.backupName(now)
	if err := os.Mkdir(first+".zst.tmp", 0o750); err != nil { // in the way of the compressor's output
		t.Fatal(err)
	}
	for k := range 2 {
		if err := f.WriteBatch(lines(20, 20*k), 20); err != nil {
			t.Fatal(err)
		}
	}
	f.comp.waitIdle()
	mu.Lock()
	failed := len(errs)
	mu.Unlock()
	if failed != 1 || !exists(first) {
		t.Fatalf("%d errors, %s there: %v; want the compression's failure and the backup kept", failed, first, exists(first))
	}
	os.Remove(first + ".zst.tmp")
	now = now.Add(time.Minute)
	if err := f.WriteBatch(lines(20, 40), 20); err != nil {
		t.Fatal(err)
	}
	f.comp.waitIdle()
	bs := f.backups()
	if len(bs) != 2 || !bs[0].compressed || !bs[1].compressed {
		t.Fatalf("backups %+v: want two, both compressed", bs)
	}
	if got := readAll(t, f); !bytes.Equal(got, lines(60, 0)) {
		t.Fatalf("backups and live file hold %d bytes, want the 60 lines in order", len(got))
	}
}

// TestCompressionTriedAgainAfterEMFILE: a compression that fails for want
// of descriptors (or space) is tried again shortly, without waiting for
// the next rotation, and reported once.
func TestCompressionTriedAgainAfterEMFILE(t *testing.T) {
	orig, origDelay := createTemp, compressRetryDelay
	t.Cleanup(func() { createTemp, compressRetryDelay = orig, origDelay }) // after the File's Close
	var fails atomic.Int32
	fails.Store(2)
	createTemp = func(name string) (*os.File, error) {
		if fails.Add(-1) >= 0 {
			return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EMFILE}
		}
		return orig(name)
	}
	compressRetryDelay = 10 * time.Millisecond
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	var mu sync.Mutex
	var errs []error
	f := mustOpen(t, path, WithMaxSize(600), WithCompression(Zstd),
		WithErrorHandler(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }))
	for k := range 2 {
		if err := f.WriteBatch(lines(20, 20*k), 20); err != nil {
			t.Fatal(err)
		}
	}
	f.comp.waitIdle()
	bs := f.backups()
	if len(bs) != 1 || !bs[0].compressed {
		t.Fatalf("backups %+v: want the one, compressed after the failures", bs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 1 || !errors.Is(errs[0], syscall.EMFILE) || !strings.Contains(errs[0].Error(), "trying again") {
		t.Fatalf("reported %v: want the first failure, once", errs)
	}
	if got := readAll(t, f); !bytes.Equal(got, lines(40, 0)) {
		t.Fatalf("backup and live file hold %d bytes, want the 40 lines", len(got))
	}
}

func TestCloseAbandonsCompression(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	big := bytes.Repeat(lines(1000, 0), 200) // ~5 MB to compress
	f := mustOpen(t, path, WithCompression(Gzip))
	f.WriteBatch(big, 0)
	f.Rotate()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Whatever Close interrupted, the content is there once: compressed, or
	// not yet.
	bs := (&File{path: path}).backups()
	if len(bs) != 1 || !bytes.Equal(readFile(t, bs[0].name), big) {
		t.Fatalf("backups after Close: %v", bs)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	if len(matches) != 0 {
		t.Fatalf("temporary files left: %v", matches)
	}
}

// Rotations faster than compression, with few backups kept: retention
// deletes backups queued for compression or being compressed. That is not
// an error, and a backup retention deleted does not come back compressed.
// Once the queue is done, Compressing says so.
func TestRetentionDuringCompression(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	var mu sync.Mutex
	var errs []error
	f := mustOpen(t, path, WithMaxSize(256<<10), WithMaxBackups(2), WithCompression(Zstd),
		WithErrorHandler(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }))
	batch := bytes.Repeat(lines(100, 0), 40) // ~100 KB
	for range 60 {
		if err := f.WriteBatch(batch, 0); err != nil {
			t.Fatal(err)
		}
	}
	f.comp.waitIdle()
	if f.Compressing() {
		t.Fatal("Compressing after the queue emptied")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("errors reported: %v", errs)
	}
	bs := f.backups()
	if len(bs) == 0 || len(bs) > 2 {
		t.Fatalf("%d backups, keeping 2: %v", len(bs), bs)
	}
	for _, b := range bs {
		if !b.compressed {
			t.Fatalf("backup %s not compressed", b.name)
		}
	}
}

// A rotated file has one writer: a second File with rotation on the path,
// in this process or another, fails at Open (each would rename the file
// from under the other); one without rotation may append beside it.
func TestRotatedFileHasOneWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	f := mustOpen(t, path, WithMaxSize(1<<20))
	if g, err := Open(path, WithRotateEvery(time.Hour)); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), path) {
		if g != nil {
			g.Close()
		}
		t.Fatalf("second rotating File: %v, want ErrInUse naming the path", err)
	}
	plain := mustOpen(t, path)
	if err := plain.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g := mustOpen(t, path, WithMaxSize(1<<20)) // free once the first is closed
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReopenAfterExternalMove(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	f := mustOpen(t, path)
	f.WriteBatch(lines(2, 0), 2)
	moved := filepath.Join(dir, "app.log.1")
	os.Rename(path, moved)
	f.WriteBatch(lines(1, 2), 1) // still lands in the moved file
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	f.WriteBatch(lines(1, 3), 1)
	a, _ := os.ReadFile(moved)
	b, _ := os.ReadFile(path)
	if !bytes.Equal(a, lines(3, 0)) || !bytes.Equal(b, lines(1, 3)) {
		t.Fatalf("moved file %q, new file %q", a, b)
	}
}

// A rotation that finds the file gone (deleted, or moved without a
// SIGHUP) starts a new one at the path instead of failing on every batch;
// with its directory gone too, each batch fails with the open's error
// until the directory is back, and then writing resumes without a Reopen.
func TestRotateAfterTheFileWasRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "app.log")
	f := mustOpen(t, path, WithMaxSize(100))
	if err := f.WriteBatch(lines(2, 0), 2); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := f.WriteBatch(lines(2, 2), 2); err != nil { // into the deleted file, up to the size
		t.Fatal(err)
	}
	if err := f.WriteBatch(lines(1, 4), 1); err != nil { // rotates: a new file
		t.Fatalf("rotation after the file was deleted: %v", err)
	}
	if b := readFile(t, path); !bytes.Equal(b, lines(1, 4)) {
		t.Fatalf("new file holds %q", b)
	}
	if bs := f.backups(); len(bs) != 0 {
		t.Fatalf("backups %v of a file that was gone", bs)
	}

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	f.WriteBatch(lines(3, 5), 3) // into the deleted file, up to the size
	err := f.WriteBatch(lines(1, 8), 1)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("rotation without the directory: %v", err)
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteBatch(lines(1, 8), 1); err != nil {
		t.Fatalf("with the directory back: %v", err)
	}
	if b := readFile(t, path); !bytes.Equal(b, lines(1, 8)) {
		t.Fatalf("file in the new directory holds %q", b)
	}
}

// A rotation that finds another file at the path (logrotate moved ours
// and created an empty one, without a signal) does not back theirs up as
// if it were ours: writing goes on in the file at the path, and ours stays
// where it was moved.
func TestRotateDoesNotTakeAnotherFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	f := mustOpen(t, path, WithMaxSize(100))
	f.WriteBatch(lines(2, 0), 2)
	if err := os.Rename(path, path+".1"); err != nil { // logrotate, create mode
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteBatch(lines(3, 2), 3); err != nil { // over the size: rotates
		t.Fatal(err)
	}
	if bs := f.backups(); len(bs) != 0 {
		t.Fatalf("backups %v: another file was taken for ours", bs)
	}
	if b := readFile(t, path); !bytes.Equal(b, lines(3, 2)) {
		t.Fatalf("the file at the path holds %q", b)
	}
	if b := readFile(t, path+".1"); !bytes.Equal(b, lines(2, 0)) {
		t.Fatalf("the moved file holds %q", b)
	}
}

func TestSIGHUPReopens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	var errs []error
	f := mustOpen(t, path, WithSIGHUP(), WithErrorHandler(func(err error) { errs = append(errs, err) }))
	f.WriteBatch(lines(1, 0), 1)
	os.Rename(path, path+".1")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !exists(path) { // the handler reopens, which creates the file
		if time.Now().After(deadline) {
			t.Fatal("no reopen within 10s of SIGHUP")
		}
		time.Sleep(time.Millisecond)
	}
	f.WriteBatch(lines(1, 1), 1)
	if b, _ := os.ReadFile(path); !bytes.Equal(b, lines(1, 1)) {
		t.Fatalf("new file %q", b)
	}
	if err := f.Close(); err != nil || len(errs) != 0 {
		t.Fatalf("Close = %v, handler errors %v", err, errs)
	}
}

func TestFIFO(t *testing.T) {
	for _, wm := range writeModes {
		t.Run(wm.name, func(t *testing.T) { testFIFO(t, wm.write) })
	}
}

func testFIFO(t *testing.T, write func(*File, []byte, int) error) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f := mustOpen(t, p, WithFsync(FsyncBatch), WithMaxSize(10)) // neither applies to a FIFO
	// Read only once the writer is connected: a FIFO that has never had a
	// writer reads as end of file at once.
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r) // until the writer closes
		got <- b
	}()
	var want []byte
	for i := range 200 { // more than a pipe buffer holds: writes wait for the reader
		b := lines(50, i*50)
		want = append(want, b...)
		if err := write(f, b, 50); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("Sync on a FIFO: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("reader got %d bytes, want %d", len(b), len(want))
	}
	if n := len(f.backups()); n != 0 {
		t.Fatalf("a FIFO was rotated: %d backups", n)
	}
}

// requireCharDevice skips a test meant for a character device when path is
// not one here (a broken /dev/null is a regular file): rotating it would
// litter /dev.
func requireCharDevice(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Skipf("%s is not a character device on this machine (%v)", path, err)
	}
}

func TestDevNull(t *testing.T) {
	requireCharDevice(t, os.DevNull)
	f := mustOpen(t, os.DevNull, WithFsync(FsyncBatch), WithMaxSize(1))
	for range 3 {
		if err := f.WriteBatch(lines(10, 0), 10); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("Sync(/dev/null) = %v", err)
	}
	if err := f.Rotate(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.backups()); n != 0 {
		t.Fatalf("/dev/null was rotated: %d backups", n)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRecordPerWrite(t *testing.T) {
	requireCharDevice(t, os.DevNull)
	f := mustOpen(t, os.DevNull, WithRecordPerWrite())
	if err := f.WriteBatch(lines(7, 0), 7); err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.Writes != 7 || st.Bytes != int64(len(lines(7, 0))) {
		t.Fatalf("stats %+v, want 7 writes", st)
	}
}

// childMain runs a child process's job when the test binary is re-executed
// by a test; it reports whether it did.
func childMain() bool {
	switch os.Getenv("FILELOG_CHILD") {
	case "stdout":
		f, err := Open("/dev/stdout", WithFsync(FsyncBatch))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for i := range 100 {
			if err := f.WriteBatch(lines(10, i*10), 10); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
		}
		if err := f.Sync(); err != nil {
			fmt.Fprintln(os.Stderr, "sync:", err)
			os.Exit(4)
		}
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close:", err)
			os.Exit(5)
		}
		os.Exit(0)
	}
	return false
}

// TestStdoutOfChildProcess: a child writes to /dev/stdout, which is a pipe
// to us; Sync must not fail the way zap's does ("sync /dev/stdout: invalid
// argument").
func TestStdoutOfChildProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FILELOG_CHILD=stdout")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v: %s", err, stderr.String())
	}
	if !bytes.Equal(out, lines(1000, 0)) {
		t.Fatalf("child wrote %d bytes, want %d", len(out), len(lines(1000, 0)))
	}
}

func TestConcurrentWritersAndRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	f := mustOpen(t, path, WithMaxSize(4096), WithMaxBackups(Unlimited), WithCompression(Zstd))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				if err := f.WriteBatch(lines(3, (g*100+i)*3), 3); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	f.comp.waitIdle()
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(readAll(t, f)))
	for sc.Scan() {
		seen[sc.Text()]++
	}
	if len(seen) != 2400 {
		t.Fatalf("%d distinct lines, want 2400", len(seen))
	}
	for l, n := range seen {
		if n != 1 {
			t.Fatalf("line %q seen %d times", l, n)
		}
	}
}

// Writers, rotations by size and by call, and logrotate's move plus
// Reopen, all at once (and the path followed): every line is in exactly
// one file at the end, the moved ones included.
func TestConcurrentRotationAndReopen(t *testing.T) {
	for round := range 5 {
		dir := t.TempDir()
		path := filepath.Join(dir, "app.log")
		f := mustOpen(t, path, WithMaxSize(8192), WithMaxBackups(Unlimited), WithCompression(Zstd), WithFollowPath(time.Millisecond))
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() { // logrotate, pacing its moves
			for i := 0; !stop.Load(); i++ {
				_ = os.Rename(path, filepath.Join(dir, fmt.Sprintf("moved.%d", i)))
				if err := f.Reopen(); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Millisecond)
			}
		})
		wg.Go(func() {
			for !stop.Load() {
				if err := f.Rotate(); err != nil {
					t.Error(err)
				}
				time.Sleep(700 * time.Microsecond)
			}
		})
		var writers sync.WaitGroup
		for g := range 8 {
			writers.Go(func() {
				for i := range 200 {
					if err := f.WriteBatch(lines(3, (g*200+i)*3), 3); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		writers.Wait()
		stop.Store(true)
		wg.Wait()
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		names, _ := filepath.Glob(filepath.Join(dir, "*"))
		seen := map[string]int{}
		for _, name := range names {
			sc := bufio.NewScanner(bytes.NewReader(readFile(t, name)))
			for sc.Scan() {
				seen[sc.Text()]++
			}
		}
		if len(seen) != 8*200*3 {
			t.Fatalf("round %d: %d distinct lines, want %d (files %v)", round, len(seen), 8*200*3, names)
		}
		for l, n := range seen {
			if n != 1 {
				t.Fatalf("round %d: line %q seen %d times", round, l, n)
			}
		}
	}
}

// A relative path is taken from the working directory at Open: a program
// that changes directory afterwards (a daemon's chdir to /) still rotates,
// follows and reopens the file it opened, and never renames another file
// of the same name in its new working directory.
func TestRelativePathSurvivesChdir(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	decoy := filepath.Join(elsewhere, "app.log")
	if err := os.WriteFile(decoy, []byte("not snail's\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	f := mustOpen(t, "app.log", WithMaxSize(1<<20), WithFollowPath(time.Millisecond))
	if err := f.WriteBatch(lines(3, 0), 3); err != nil {
		t.Fatal(err)
	}
	t.Chdir(elsewhere)
	if err := f.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteBatch(lines(3, 3), 3); err != nil {
		t.Fatal(err)
	}
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(decoy); err != nil || string(got) != "not snail's\n" {
		t.Fatalf("the other directory's app.log: %q, %v", got, err)
	}
	if names, _ := filepath.Glob(filepath.Join(elsewhere, "*")); len(names) != 1 {
		t.Fatalf("files in the other directory: %v", names)
	}
	if got := string(readAll(t, f)); got != string(lines(6, 0)) {
		t.Fatalf("the files opened hold %q, want %q", got, lines(6, 0))
	}
}

func TestPositionAndFsync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pos.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ino0, size0 := f.Position()
	if ino0 == 0 || size0 != 0 {
		t.Fatalf("new file at %d, %d", ino0, size0)
	}
	if err := f.WriteBatch([]byte("a\nbb\n"), 2); err != nil {
		t.Fatal(err)
	}
	if err := f.Fsync(); err != nil {
		t.Fatal(err)
	}
	if ino, size := f.Position(); ino != ino0 || size != 5 {
		t.Fatalf("after 5 bytes: %d, %d", ino, size)
	}
	if err := f.Rotate(); err != nil {
		t.Fatal(err)
	}
	if ino, size := f.Position(); ino == ino0 || size != 0 {
		t.Fatalf("after rotation: inode %d (was %d), size %d", ino, ino0, size)
	}
}

// Fsync runs outside the lock: writes and rotations go on while it runs,
// and a file rotated during an Fsync is closed by it, not under it.
func TestFsyncConcurrentWithRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.log")
	f, err := Open(path, WithMaxSize(4<<10), WithMaxBackups(Unlimited))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := f.Fsync(); err != nil {
				done <- err
				return
			}
		}
	}()
	line := []byte(strings.Repeat("x", 99) + "\n")
	for range 2000 {
		if err := f.WriteBatch(line, 1); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("Fsync during rotations: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if f.Stats().Rotations < 10 {
		t.Fatalf("only %d rotations", f.Stats().Rotations)
	}
	total := 0
	files, _ := filepath.Glob(filepath.Join(dir, "r*"))
	for _, name := range files {
		b, _ := os.ReadFile(name)
		total += strings.Count(string(b), "\n")
	}
	if total != 2000 {
		t.Fatalf("%d lines across %d files, want 2000", total, len(files))
	}
}

// TestSyncFsyncsOnlyWhatIsNotYet: Sync fsyncs what was written since the
// last fsync, and nothing else. With FsyncBatch every batch was fsynced
// once written, and a Sync after it fsynced again: 64 goroutines that each
// logged and synced an entry made an fsync each, one after another.
func TestSyncFsyncsOnlyWhatIsNotYet(t *testing.T) {
	var fsyncs atomic.Int64
	testHookFsync = func(string) error { fsyncs.Add(1); return nil }
	t.Cleanup(func() { testHookFsync = nil })
	batch := []byte("one\n")
	for _, tc := range []struct {
		name string
		opts []Option
		want []int64 // fsyncs after a Sync with nothing written, a batch, its Sync, a second Sync
	}{
		{"never", nil, []int64{0, 0, 0, 0}},
		{"every batch", []Option{WithFsync(FsyncBatch)}, []int64{1, 2, 2, 2}},
		{"interval", []Option{WithFsyncInterval(time.Hour)}, []int64{1, 1, 2, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsyncs.Store(0)
			f := mustOpen(t, filepath.Join(t.TempDir(), "s.log"), tc.opts...)
			steps := []func() error{
				f.Sync, // the new file's name is not durable yet
				func() error { return f.WriteBatch(batch, 1) },
				f.Sync,
				f.Sync,
			}
			for i, step := range steps {
				if err := step(); err != nil {
					t.Fatal(err)
				}
				if got := fsyncs.Load(); got != tc.want[i] {
					t.Fatalf("step %d: %d fsyncs, want %d", i, got, tc.want[i])
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); !errors.Is(err, ErrClosed) {
				t.Fatalf("Sync after Close = %v, want ErrClosed", err)
			}
		})
	}
}

// The name of a file survives a power loss only once its directory is
// fsynced: the first fsync after the live file is created or rotated
// fsyncs the directory too, once; with FsyncNever nothing is synced; a
// compressed backup's name is synced before its original is removed.
func TestFsyncSyncsDirectoryOnce(t *testing.T) {
	var mu sync.Mutex
	synced := map[string]int{}
	testHookSyncDir = func(dir string) error {
		mu.Lock()
		synced[dir]++
		mu.Unlock()
		return nil
	}
	t.Cleanup(func() { testHookSyncDir = nil })
	count := func(dir string) int {
		mu.Lock()
		defer mu.Unlock()
		return synced[dir]
	}
	batch := []byte("one\n")
	for _, tc := range []struct {
		name  string
		opts  []Option
		fsync func(*File) error
		want  []int // directory syncs after the first batch, a second, a rotation and a batch
	}{
		{"never", nil, (*File).Sync, []int{0, 0, 0}},
		{"every batch", []Option{WithFsync(FsyncBatch)}, (*File).Sync, []int{1, 1, 2}},
		{"Fsync", nil, (*File).Fsync, []int{1, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := mustOpen(t, filepath.Join(dir, "d.log"), tc.opts...)
			defer f.Close()
			step := func(i int) {
				t.Helper()
				if err := f.WriteBatch(batch, 1); err != nil {
					t.Fatal(err)
				}
				if err := tc.fsync(f); err != nil {
					t.Fatal(err)
				}
				if got := count(dir); got != tc.want[i] {
					t.Fatalf("step %d: directory synced %d times, want %d", i, got, tc.want[i])
				}
			}
			step(0)
			step(1)
			if err := f.Rotate(); err != nil {
				t.Fatal(err)
			}
			step(2)
		})
	}
	t.Run("compression", func(t *testing.T) {
		dir := t.TempDir()
		f := mustOpen(t, filepath.Join(dir, "c.log"), WithCompression(Zstd), WithMaxBackups(Unlimited))
		if err := f.WriteBatch(batch, 1); err != nil {
			t.Fatal(err)
		}
		if err := f.Rotate(); err != nil {
			t.Fatal(err)
		}
		f.comp.waitIdle()
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		matches, _ := filepath.Glob(filepath.Join(dir, "c-*.zst"))
		if len(matches) != 1 || count(dir) != 1 {
			t.Fatalf("compressed backups %v, directory synced %d times, want 1 and 1", matches, count(dir))
		}
	})
}

// injectFailure sets test hook *hook to fail with the returned error while
// the returned flag is set (it starts set), until the test ends.
func injectFailure(t *testing.T, hook *func(string) error) (*bool, error) {
	fail := errors.New("injected fsync failure")
	failing := true
	*hook = func(string) error {
		if failing {
			return fail
		}
		return nil
	}
	t.Cleanup(func() { *hook = nil })
	return &failing, fail
}

// A batch whose fsync fails (FsyncBatch) is cut back like a failed write:
// the error reaches the caller, and the batch written again is in the file
// once.
func TestFailedFsyncCutsTheBatchBack(t *testing.T) {
	failing, fail := injectFailure(t, &testHookSyncDir)
	for _, vec := range []bool{false, true} {
		t.Run(fmt.Sprint("vector=", vec), func(t *testing.T) {
			*failing = true
			path := filepath.Join(t.TempDir(), "f.log")
			f := mustOpen(t, path, WithFsync(FsyncBatch))
			defer f.Close()
			write := func(b string) error {
				if vec {
					return f.WriteBatchVec([][]byte{[]byte(b[:2]), []byte(b[2:])}, 1)
				}
				return f.WriteBatch([]byte(b), 1)
			}
			if err := write("one\n"); !errors.Is(err, fail) {
				t.Fatalf("write with a failing fsync: %v, want the fsync's error", err)
			}
			if got := string(readFile(t, path)); got != "" {
				t.Fatalf("file holds %q after the failed batch, want nothing", got)
			}
			if _, size := f.Position(); size != 0 {
				t.Fatalf("position %d after the failed batch", size)
			}
			*failing = false
			for _, b := range []string{"one\n", "two\n"} { // the retry, then the next
				if err := write(b); err != nil {
					t.Fatal(err)
				}
			}
			if got := string(readFile(t, path)); got != "one\ntwo\n" {
				t.Fatalf("file holds %q, want each batch once", got)
			}
		})
	}
}

// With FsyncInterval, an fsync that fails after batches were already
// reported written makes the next Sync fail too: Linux may have dropped
// them and says so only once, so a Sync whose own fsync succeeds must not
// call them durable. The failing batch itself is cut back as always.
func TestFailedIntervalFsyncReachesSync(t *testing.T) {
	failing, fail := injectFailure(t, &testHookFsync)
	*failing = false
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "i.log")
	f := mustOpen(t, path, WithFsyncInterval(time.Second), WithClock(func() time.Time { return now }))
	defer f.Close()
	write := func(b string) error { return f.WriteBatch([]byte(b), 1) }
	if err := write("a\n"); err != nil { // the first batch is fsynced
		t.Fatal(err)
	}
	now = now.Add(100 * time.Millisecond)
	if err := write("b\n"); err != nil { // not yet: reported written, not durable
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	*failing = true
	if err := write("c\n"); !errors.Is(err, fail) {
		t.Fatalf("batch with a failing fsync: %v, want the fsync's error", err)
	}
	*failing = false
	if err := write("c\n"); err != nil { // the sink's retry
		t.Fatal(err)
	}
	if err := f.Sync(); !errors.Is(err, fail) || !strings.Contains(err.Error(), "may be lost") {
		t.Fatalf("Sync after the failed fsync: %v, want the failure and that earlier batches may be lost", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("second Sync: %v", err)
	}
	if got := string(readFile(t, path)); got != "a\nb\nc\n" {
		t.Fatalf("file holds %q", got)
	}

	// With FsyncBatch every earlier batch was fsynced: a failure is the
	// failing batch's alone, and Sync has nothing to report.
	path = filepath.Join(t.TempDir(), "b.log")
	g := mustOpen(t, path, WithFsync(FsyncBatch))
	defer g.Close()
	if err := g.WriteBatch([]byte("a\n"), 1); err != nil {
		t.Fatal(err)
	}
	*failing = true
	if err := g.WriteBatch([]byte("b\n"), 1); !errors.Is(err, fail) {
		t.Fatalf("batch with a failing fsync: %v", err)
	}
	*failing = false
	if err := g.Sync(); err != nil {
		t.Fatalf("Sync after a failed batch fsync: %v", err)
	}
}

// Time rotation does not wait for a write: a file opened after its
// period's boundary passed, with entries from before it, is rotated at
// Open; one written in the current period is not; and an open file that
// nobody writes to is rotated at the boundary.
func TestRotateByTimeWithoutWrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	if err := os.WriteFile(path, lines(3, 0), 0o640); err != nil {
		t.Fatal(err)
	}
	yesterday := time.Now().Add(-25 * time.Hour)
	if err := os.Chtimes(path, yesterday, yesterday); err != nil {
		t.Fatal(err)
	}
	f := mustOpen(t, path, WithRotateEvery(24*time.Hour))
	if bs := f.backups(); len(bs) != 1 || !bytes.Equal(readFile(t, bs[0].name), lines(3, 0)) {
		t.Fatalf("a file of yesterday opened today: backups %v", bs)
	}
	if b := readFile(t, path); len(b) != 0 {
		t.Fatalf("live file holds %q after the rotation at Open", b)
	}
	if err := f.WriteBatch(lines(1, 3), 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	f = mustOpen(t, path, WithRotateEvery(24*time.Hour)) // written today: kept
	if bs := f.backups(); len(bs) != 1 {
		t.Fatalf("a file of today rotated at Open: %d backups", len(bs))
	}
	f.Close()

	// Every second, while idle: the batch written leaves for a backup at
	// the next boundary, with no write after it.
	path2 := filepath.Join(dir, "idle.log")
	g := mustOpen(t, path2, WithRotateEvery(time.Second))
	if err := g.WriteBatch(lines(2, 0), 2); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(g.backups()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("an idle file was not rotated at the boundary")
		}
		time.Sleep(10 * time.Millisecond)
	}
	bs := g.backups()
	if !bytes.Equal(readFile(t, bs[0].name), lines(2, 0)) || len(readFile(t, path2)) != 0 {
		t.Fatalf("backup %q, live %q", readFile(t, bs[0].name), readFile(t, path2))
	}
	// The next boundary passes with the file empty: the timer moves on
	// to the one after, and makes no empty backup.
	next := func() time.Time {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.nextRotate
	}
	passed := next()
	for deadline := time.Now().Add(10 * time.Second); !next().After(passed); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the boundary after the rotation did not pass")
		}
	}
	if n := len(g.backups()); n != 1 {
		t.Fatalf("%d backups: an empty file was rotated", n)
	}
}

// A rotating File applies its retention when it opens, not only at its
// next rotation: kept backups follow the configuration from the start.
func TestRetentionAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	f := mustOpen(t, path, WithMaxSize(1<<20), WithMaxBackups(Unlimited))
	for i := range 5 {
		f.WriteBatch(lines(1, i), 1)
		if err := f.Rotate(); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	f = mustOpen(t, path, WithMaxSize(1<<20), WithMaxBackups(2))
	bs := f.backups()
	if len(bs) != 2 || !bytes.Equal(readFile(t, bs[0].name), lines(1, 3)) {
		t.Fatalf("%d backups after Open with MaxBackups 2, want the 2 newest", len(bs))
	}
}

// TestTornTailGetsANewline: a file that ends inside a line (its writer
// died in the middle of a write(), or wrote no newline) gets a newline
// before the first batch written to it, so that the batch's first entry
// is not glued to that line; through WriteBatch, WriteBatchVec and one
// write() per entry, at Open and at Reopen. A file that ends with a
// newline, or is empty, gets none; nor does the batch after.
func TestTornTailGetsANewline(t *testing.T) {
	for _, tc := range []struct {
		name, before, want string
		opts               []Option
		vec                bool
	}{
		{"torn", `{"a":1}` + "\n" + `{"torn":`, `{"a":1}` + "\n" + `{"torn":` + "\nx\ny\n", nil, false},
		{"torn, in pieces", `{"torn":`, `{"torn":` + "\nx\ny\n", nil, true},
		{"torn, a write per entry", `{"torn":`, `{"torn":` + "\nx\ny\n", []Option{WithRecordPerWrite()}, false},
		{"whole", "a\n", "a\nx\ny\n", nil, false},
		{"empty", "", "x\ny\n", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.log")
			if err := os.WriteFile(path, []byte(tc.before), 0o640); err != nil {
				t.Fatal(err)
			}
			f := mustOpen(t, path, tc.opts...)
			for _, b := range []string{"x\n", "y\n"} {
				var err error
				if tc.vec {
					err = f.WriteBatchVec([][]byte{[]byte(b[:1]), []byte(b[1:])}, 1)
				} else {
					err = f.WriteBatch([]byte(b), 1)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if got, _ := os.ReadFile(path); string(got) != tc.want {
				t.Fatalf("file %q, want %q", got, tc.want)
			}
			if _, size := f.Position(); size != int64(len(tc.want)) {
				t.Fatalf("Position says %d bytes, the file has %d", size, len(tc.want))
			}
		})
	}
	t.Run("reopen", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "app.log")
		f := mustOpen(t, path)
		if err := f.WriteBatch([]byte("a\n"), 1); err != nil {
			t.Fatal(err)
		}
		// Moved away, and another file put there that ends inside a line.
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("half"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := f.Reopen(); err != nil {
			t.Fatal(err)
		}
		if err := f.WriteBatch([]byte("b\n"), 1); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); string(got) != "half\nb\n" {
			t.Fatalf("file %q, want %q", got, "half\nb\n")
		}
	})
}
