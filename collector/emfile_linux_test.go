package collector

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/snail-log/snail/netlog"
)

// TestIdleOutputsGiveWayAtTheFileLimit: at the open-file limit, a stream
// that connects is not turned away while outputs no connection uses hold
// descriptors (two each, for up to outputIdle): they are closed at once
// and the stream's output opens. Without that, every new stream was
// refused until they aged out, and the descriptors each refusal freed
// went to the next connection, which failed the same way. The test lowers
// the process's open-file limit: no other test runs meanwhile.
func TestIdleOutputsGiveWayAtTheFileLimit(t *testing.T) {
	dir := t.TempDir()
	c, addr := start(t, Config{Dir: dir})
	const idle = 20
	for i := range idle {
		s, err := netlog.Dial(addr, netlog.WithStreamName("idle"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, s, 10, 10)
	}
	open := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.outputs)
	}
	if n := open(); n != idle {
		t.Fatalf("%d outputs open, want the %d idle ones", n, idle)
	}

	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Skip("no RLIMIT_NOFILE:", err)
	}
	limit := old
	limit.Cur = uint64(highestFD(t) + 16)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &limit); err != nil {
		t.Skip("cannot lower RLIMIT_NOFILE:", err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	// Every descriptor below the limit taken but 3: the client's socket,
	// the collector's end of it, and one of the several a new output
	// needs.
	var fillers []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		fillers = append(fillers, f)
	}
	for _, f := range fillers[len(fillers)-3:] {
		f.Close()
	}
	fillers = fillers[:len(fillers)-3]
	defer func() {
		for _, f := range fillers {
			f.Close()
		}
	}()

	s, err := netlog.Dial(addr, netlog.WithStreamName("new"), netlog.WithErrorHandler(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	send(t, s, 0, 100, 10)
	synced := make(chan error, 1)
	go func() { synced <- s.Sync() }()
	select {
	case err := <-synced:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second): // the idle outputs age out after outputIdle (30 s)
		t.Fatalf("the new stream was not written within 10 s at the open-file limit (%d outputs open)", open())
	}
	if n := open(); n != 1 {
		t.Errorf("%d outputs open, want the new stream's alone", n)
	}
	for _, f := range fillers {
		f.Close()
	}
	fillers = nil
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkIDs(t, filepath.Join(dir, "new.log"), 100)
	for i := range idle {
		checkIDs(t, filepath.Join(dir, "idle"+strconv.Itoa(i)+".log"), 10)
	}
}

// highestFD returns the highest file descriptor open in the process.
func highestFD(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	top := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > top {
			top = n
		}
	}
	return top
}
