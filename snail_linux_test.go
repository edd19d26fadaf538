package snail

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/snail-log/snail/sink"
	"golang.org/x/sys/unix"
)

// TestDiskFullThroughTheStack fills a small tmpfs under a sink Writer: the
// error reaches Sync and the error handler, the process goes on, no entry is
// torn, and writing resumes once space is freed.
func TestDiskFullThroughTheStack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: filling a disk needs a small tmpfs, and mounting one needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=512k"); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs here (%v)", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	filler := filepath.Join(dir, "filler")
	os.WriteFile(filler, make([]byte, 128<<10), 0o600)

	var mu sync.Mutex
	var handled []error
	path := filepath.Join(dir, "app.log")
	w, err := OpenFile(path, nil, sink.WithBatchBytes(16<<10), sink.WithWindow(time.Millisecond),
		sink.WithErrorHandler(func(err error) { mu.Lock(); handled = append(handled, err); mu.Unlock() }))
	if err != nil {
		t.Fatal(err)
	}
	// zerolog reports each entry rejected with the sticky error on stderr;
	// the test checks the error through Sync and the handler instead.
	zerolog.ErrorHandler = func(error) {}
	defer func() { zerolog.ErrorHandler = nil }()
	zl := zerolog.New(w)
	var syncErr error
	for i := 0; i < 100000 && syncErr == nil; i++ {
		zl.Info().Int("id", i).Str("pad", strings.Repeat("p", 100)).Msg("filling")
		if i%500 == 499 {
			syncErr = w.Sync()
		}
	}
	if !errors.Is(syncErr, syscall.ENOSPC) {
		t.Fatalf("Sync on a full disk = %v, want ENOSPC", syncErr)
	}
	mu.Lock()
	if len(handled) == 0 || !errors.Is(handled[0], syscall.ENOSPC) {
		t.Fatalf("error handler saw %v", handled)
	}
	mu.Unlock()

	// Free space. The batch being retried goes through within the retry
	// backoff (at most 1s), and the Writer takes entries again.
	os.Remove(filler)
	deadline := time.Now().Add(10 * time.Second)
	for w.Stats().Failing {
		if time.Now().After(deadline) {
			t.Fatal("still failing 10s after space was freed")
		}
		time.Sleep(time.Millisecond)
	}
	zl.Info().Int("id", -1).Msg("after space was freed")
	if err := w.Sync(); err != nil {
		t.Fatalf("Sync after freeing space = %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	ls := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	for _, l := range ls {
		if !strings.HasPrefix(l, `{"level":"info"`) || !strings.HasSuffix(l, `}`) {
			t.Fatalf("torn line %q", l)
		}
	}
	if !strings.Contains(ls[len(ls)-1], "after space was freed") {
		t.Fatalf("last line %q: writing did not resume", ls[len(ls)-1])
	}
}
