package collector

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snail-log/snail/netlog"
	"golang.org/x/sys/unix"
)

// smallDisk mounts a tmpfs of 1 MiB for the test, or skips it where that
// cannot be done (not root, or no mount allowed).
func smallDisk(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: filling a disk needs a small tmpfs, and mounting one needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs here (%v)", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestDiskFullBackPressure fills the collector's disk (a small tmpfs): the
// collector retries the write and stops reading, acks stop, the client's
// window fills and its sender blocks, the collector's frame memory stays
// within its budget, and once space is freed every entry is delivered
// exactly once.
func TestDiskFullBackPressure(t *testing.T) {
	dir := smallDisk(t)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 900<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	c, addr := start(t, Config{Dir: dir, MaxFrameSize: 64 << 10, MaxDecompressedSize: 64 << 10, MaxMemory: 256 << 10,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	s, err := netlog.Dial(addr, netlog.WithStreamName("full"), netlog.WithWindow(4, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	const n, per = 20_000, 500 // ~200 KiB: more than the ~100 KiB left
	sent := make(chan struct{})
	// On a failure below, the sender is stopped before the test ends
	// (its error is then the test's, not a panic after it).
	t.Cleanup(func() { s.Close(); <-sent })
	go func() {
		defer close(sent)
		send(t, s, 0, n, per)
	}()
	// Acks stop: the window fills and the sender blocks.
	for deadline := time.Now().Add(10 * time.Second); c.metrics.stats().Frames == 0 || value(c.metrics.writeErrors) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no write error within 10s: %d frames, client %+v\n%s", c.metrics.stats().Frames, s.Stats(), logs)
		}
	}
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
	// Meanwhile /readyz says so (and /healthz does not: the process is
	// fine), for a load balancer to send clients elsewhere.
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	ready := func() int {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ready(); code != http.StatusServiceUnavailable || value(c.metrics.failing) != 1 {
		t.Fatalf("/readyz %d and failing_outputs %d with the disk full, want 503 and 1", code, value(c.metrics.failing))
	}
	if got := get(t, srv.URL+"/healthz"); got != "ok\n" {
		t.Fatalf("/healthz = %q with the disk full", got)
	}
	// Free space: the collector's retry goes through, acks resume.
	// Let the write fail often (retries back off from 10ms), so that one
	// log line per retry would show.
	waitFor(t, func() bool { return value(c.metrics.writeErrors) >= 8 })
	os.Remove(filler)
	<-sent
	// The log said when writing failed and when it resumed, not once per
	// retry.
	if failed, resumed := strings.Count(logs.String(), "write failed; retrying"), strings.Count(logs.String(), "write resumed"); failed != 1 || resumed != 1 {
		t.Errorf("log: %d failures, %d resumptions, want 1 and 1 (%d retries):\n%s", failed, resumed, value(c.metrics.writeErrors), logs)
	}
	if code := ready(); code != http.StatusOK || value(c.metrics.failing) != 0 {
		t.Fatalf("/readyz %d and failing_outputs %d once writing resumed", code, value(c.metrics.failing))
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkIDs(t, filepath.Join(dir, "full.log"), n)
}

// TestDiskFullSyncAndCloseEnd fills the collector's disk after the client's
// handshake, so that the collector holds the client's batches (and its next
// handshakes) while it retries the write: the client's Sync reports the
// collector unavailable instead of waiting for it, and Close gives up after
// the drain timeout, even while a handshake is under way, and counts what was
// not acked as lost.
func TestDiskFullSyncAndCloseEnd(t *testing.T) {
	dir := smallDisk(t)
	_, addr := start(t, Config{Dir: dir, MaxFrameSize: 64 << 10, MaxDecompressedSize: 64 << 10, MaxMemory: 256 << 10,
		HandshakeTimeout: time.Minute})
	const drain = time.Second
	s, err := netlog.Dial(addr, netlog.WithStreamName("full"), netlog.WithReportAfter(time.Second),
		netlog.WithAckTimeout(300*time.Millisecond), netlog.WithHandshakeTimeout(time.Minute),
		netlog.WithDrainTimeout(drain), netlog.WithErrorHandler(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	send(t, s, 0, 10, 5)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 2<<20), 0o600); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("filling the disk: %v", err)
	}
	send(t, s, 10, 2000, 500)
	t0 := time.Now()
	if err := s.Sync(); !errors.Is(err, netlog.ErrUnavailable) {
		t.Fatalf("Sync with the collector's disk full: %v, want ErrUnavailable", err)
	}
	if took := time.Since(t0); took > 10*time.Second {
		t.Fatalf("Sync took %v; the report delay is 1s", took) // not the handshake's minute
	}
	// The client is now in a handshake the collector holds (up to a
	// minute); Close cuts it short.
	start := time.Now()
	err = s.Close()
	if took := time.Since(start); err == nil || took > drain+10*time.Second {
		t.Fatalf("Close after %v: %v; want an error after about %v", took, err, drain)
	}
	if st := s.Stats(); st.Lost == 0 {
		t.Fatalf("nothing counted lost: %+v", st)
	}
}

// A collector whose disk is full turns new clients of the stream away at
// the handshake, instead of holding the handshake until the disk frees: a
// client given another collector fails over to it and delivers there.
func TestDiskFullFailsOver(t *testing.T) {
	dirA, dirB := smallDisk(t), t.TempDir()
	limits := Config{MaxFrameSize: 64 << 10, MaxDecompressedSize: 64 << 10, MaxMemory: 256 << 10, HandshakeTimeout: time.Minute}
	cfgA, cfgB := limits, limits
	cfgA.Dir, cfgB.Dir = dirA, dirB
	_, addrA := start(t, cfgA)
	_, addrB := start(t, cfgB)
	s, err := netlog.Dial(addrA+","+addrB, netlog.WithStreamName("full"), netlog.WithAckTimeout(300*time.Millisecond),
		netlog.WithHandshakeTimeout(time.Minute), netlog.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		netlog.WithErrorHandler(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	send(t, s, 0, 10, 5)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirA, "filler"), make([]byte, 2<<20), 0o600); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("filling the disk: %v", err)
	}
	const n = 2010
	start := time.Now()
	send(t, s, 10, n-10, 500)
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("delivered after %v: the full collector held the handshakes", took) // a minute each
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seen := make([]bool, n)
	for _, dir := range []string{dirA, dirB} {
		data, _ := os.ReadFile(filepath.Join(dir, "full.log"))
		for line := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
			if k, err := strconv.Atoi(strings.TrimPrefix(line, "id=")); err == nil && k >= 0 && k < n {
				seen[k] = true
			}
		}
	}
	for k, ok := range seen {
		if !ok {
			t.Fatalf("id %d in neither collector's file", k)
		}
	}
}

// TestSpoolOnAFullDisk: a client's spool on a full disk (a small tmpfs)
// does not fail batches the collector can take. They go to the collector
// around the spool, in order, and the client says so once; once space is
// freed they go through the spool again. Every entry arrives once, in
// order. (A spool write that failed used to fail the batch: snail send
// stopped after one line.)
func TestSpoolOnAFullDisk(t *testing.T) {
	spoolDisk := smallDisk(t)
	dir := t.TempDir()
	_, addr := start(t, Config{Dir: dir})
	spoolDir := filepath.Join(spoolDisk, "spool")
	var rep reports
	s, err := netlog.Dial(addr, netlog.WithStreamName("spooled"), netlog.WithSpool(spoolDir, 64<<20, netlog.SpoolBlock),
		netlog.WithSpoolAll(), netlog.WithErrorHandler(rep.add))
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(spoolDisk, "filler") // the disk fills after Dial made the spool
	if err := os.WriteFile(filler, make([]byte, 2<<20), 0o600); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("filling the disk: %v", err)
	}
	const n, per = 20_000, 500 // 40 batches of ~6 KiB
	send(t, s, 0, n/2, per)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := rep.list(); len(got) != 1 || !rep.has("no space left", "without it") {
		t.Fatalf("reports %q: want one, about the spool that cannot be written", got)
	}
	os.Remove(filler)
	send(t, s, n/2, n/2, per)
	checkDelivered(t, s, filepath.Join(dir, "spooled.log"), spoolDir, n)
	if st := s.Stats(); st.Lost != 0 {
		t.Fatalf("lost %d", st.Lost)
	}
}
