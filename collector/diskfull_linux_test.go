package collector

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/snail-log/snail/netlog"
	"golang.org/x/sys/unix"
)

// TestDiskFullBackPressure fills the collector's disk (a small tmpfs): the
// collector retries the write and stops reading, acks stop, the client's
// window fills and its sender blocks, the collector's frame memory stays
// within its budget, and once space is freed every entry is delivered
// exactly once.
func TestDiskFullBackPressure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: filling a disk needs a small tmpfs, and mounting one needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs here (%v)", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 900<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	c, addr := start(t, Config{Dir: dir, MaxFrameSize: 64 << 10, MaxDecompressedSize: 64 << 10, MaxMemory: 256 << 10})
	s, err := netlog.Dial(addr, netlog.WithStreamName("full"), netlog.WithWindow(4, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	const n, per = 20_000, 500 // ~200 KiB: more than the ~100 KiB left
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		send(t, s, 0, n, per)
	}()
	// Acks stop: the window fills and the sender blocks.
	waitFor(t, func() bool { return c.metrics.stats().Frames > 0 && value(c.metrics.writeErrors) > 0 })
	time.Sleep(100 * time.Millisecond)
	select {
	case <-sent:
		t.Fatal("the sender finished although the disk is full")
	default:
	}
	if st := s.Stats(); st.Pending > 4 {
		t.Fatalf("%d batches in flight, window is 4", st.Pending)
	}
	if free := c.mem.available(); free < 0 {
		t.Fatalf("memory budget overdrawn: %d", free)
	}
	// Free space: the collector's retry goes through, acks resume.
	os.Remove(filler)
	<-sent
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkIDs(t, filepath.Join(dir, "full.log"), n)
}
