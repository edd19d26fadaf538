package collector

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snail-log/snail/internal/testnet"
	"github.com/snail-log/snail/netlog"
)

// The collector is down when the client starts and stays down while the
// client fills its window: the batches go to the spool, and once the
// collector comes up they are all delivered, in order, exactly once.
func TestSpoolWhileCollectorDown(t *testing.T) {
	dir, spoolDir := t.TempDir(), t.TempDir()
	addr := unusedAddr(t) // nobody listens yet
	s, err := netlog.Dial(addr, netlog.WithStreamName("spooled"), netlog.WithWindow(2, 1<<20),
		netlog.WithSpool(spoolDir, 64<<20, netlog.SpoolBlock), netlog.WithBackoff(5*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	const n, per = 100_000, 500
	send(t, s, 0, n, per) // returns at once: the spool takes what the window cannot
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "seg-*.spool"))
	if len(segs) == 0 {
		t.Fatal("nothing was spooled while the collector was down")
	}
	serveAt(t, addr, Config{Dir: dir}) // the collector comes up
	checkDelivered(t, s, filepath.Join(dir, "spooled.log"), spoolDir, n)
}

// A Stream closed while the collector is down, its batches all in the
// window: with WithSpoolAll they stay in the spool and the next Stream on
// the same directory delivers them, in order, exactly once; without it
// (the spill-over spool) Close counts them lost.
func TestSpoolAllKeepsTheWindowAtClose(t *testing.T) {
	for _, all := range []bool{true, false} {
		t.Run(fmt.Sprintf("all=%v", all), func(t *testing.T) {
			dir, spoolDir := t.TempDir(), t.TempDir()
			addr := unusedAddr(t) // nobody listens yet
			opts := []netlog.ClientOption{netlog.WithStreamName("kept"), netlog.WithSpool(spoolDir, 64<<20, netlog.SpoolBlock),
				netlog.WithBackoff(5*time.Millisecond, 50*time.Millisecond), netlog.WithDrainTimeout(100 * time.Millisecond),
				netlog.WithErrorHandler(func(error) {})}
			if all {
				opts = append(opts, netlog.WithSpoolAll())
			}
			s, err := netlog.Dial(addr, opts...)
			if err != nil {
				t.Fatal(err)
			}
			const n, per = 1000, 100 // 10 batches: the default window takes them all
			send(t, s, 0, n, per)
			if err := s.Close(); err == nil {
				t.Fatal("Close with the collector down returned nil")
			}
			st := s.Stats()
			if !all {
				if st.Lost != n || st.Spooled != 0 {
					t.Fatalf("spill-over spool: lost %d, spooled %d; want %d lost", st.Lost, st.Spooled, n)
				}
				return
			}
			if st.Lost != 0 || st.Spooled != n {
				t.Fatalf("lost %d, spooled %d; want %d spooled", st.Lost, st.Spooled, n)
			}
			serveAt(t, addr, Config{Dir: dir}) // the collector comes up
			s2, err := netlog.Dial(addr, opts...)
			if err != nil {
				t.Fatal(err)
			}
			checkDelivered(t, s2, filepath.Join(dir, "kept.log"), spoolDir, n)
		})
	}
}

// A spool's batches belong to the stream that spooled them: a client of
// another stream on the same directory is refused while they wait (it
// would deliver them into its own file), and takes the spool once they
// are delivered.
func TestSpoolKeepsToItsStream(t *testing.T) {
	dir, spoolDir := t.TempDir(), t.TempDir()
	addr := unusedAddr(t) // nobody listens yet
	opts := func(stream string) []netlog.ClientOption {
		return []netlog.ClientOption{netlog.WithStreamName(stream), netlog.WithSpool(spoolDir, 64<<20, netlog.SpoolBlock),
			netlog.WithSpoolAll(), netlog.WithBackoff(5*time.Millisecond, 50*time.Millisecond),
			netlog.WithDrainTimeout(100 * time.Millisecond), netlog.WithErrorHandler(func(error) {})}
	}
	s, err := netlog.Dial(addr, opts("a")...)
	if err != nil {
		t.Fatal(err)
	}
	const n, per = 1000, 100
	send(t, s, 0, n, per)
	if err := s.Close(); err == nil {
		t.Fatal("Close with the collector down returned nil")
	}
	if st := s.Stats(); st.Spooled != n {
		t.Fatalf("spooled %d, want %d", st.Spooled, n)
	}
	serveAt(t, addr, Config{Dir: dir}) // the collector comes up
	if s, err := netlog.Dial(addr, opts("b")...); !errors.Is(err, netlog.ErrInvalidOption) || !strings.Contains(err.Error(), `batches of stream "a" not acked yet (10)`) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("stream b on a spool holding stream a's batches: %v", err)
	}
	s, err = netlog.Dial(addr, opts("a")...)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, s, filepath.Join(dir, "a.log"), spoolDir, n)
	if _, err := os.Stat(filepath.Join(dir, "b.log")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("b.log: %v, want none", err)
	}
	s, err = netlog.Dial(addr, opts("b")...) // empty now: it changes hands
	if err != nil {
		t.Fatal(err)
	}
	send(t, s, 0, n, per)
	checkDelivered(t, s, filepath.Join(dir, "b.log"), spoolDir, n)
	checkIDs(t, filepath.Join(dir, "a.log"), n)
}

// A relative spool directory and a relative output directory are taken
// from the working directory at Dial and New: after the program changes
// directory, new spool segments and new streams' files still go there.
func TestRelativeDirectoriesSurviveChdir(t *testing.T) {
	base, elsewhere := t.TempDir(), t.TempDir()
	t.Chdir(base)
	addr := unusedAddr(t) // nobody listens yet
	opts := []netlog.ClientOption{netlog.WithStreamName("rel"), netlog.WithSpool("spool", 64<<20, netlog.SpoolBlock),
		netlog.WithSpoolAll(), netlog.WithBackoff(5*time.Millisecond, 50*time.Millisecond),
		netlog.WithDrainTimeout(100 * time.Millisecond), netlog.WithErrorHandler(func(error) {})}
	s, err := netlog.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	serveAt(t, addr, Config{Dir: "logs"})
	t.Chdir(elsewhere) // before the stream's file is opened, and the spool's first segment
	const n, per = 1000, 100
	send(t, s, 0, n, per)
	checkDelivered(t, s, filepath.Join(base, "logs", "rel.log"), filepath.Join(base, "spool"), n)
	if names, _ := filepath.Glob(filepath.Join(elsewhere, "*")); len(names) != 0 {
		t.Fatalf("files in the new working directory: %v", names)
	}
}

// TestSpoolRecordDamagedWhileSpooled: a record damaged in place while it
// waits in the spool (a bad sector under a running client) fails its CRC
// when it is read back to be sent: its batch is counted lost and reported,
// never sent as it reads, and the batches after it are delivered.
func TestSpoolRecordDamagedWhileSpooled(t *testing.T) {
	dir, spoolDir := t.TempDir(), t.TempDir()
	addr := unusedAddr(t) // nobody listens yet
	var rep reports
	s, err := netlog.Dial(addr, netlog.WithStreamName("damaged"), netlog.WithWindow(1, 1<<20),
		netlog.WithSpool(spoolDir, 64<<20, netlog.SpoolBlock), netlog.WithBackoff(5*time.Millisecond, 50*time.Millisecond),
		netlog.WithErrorHandler(rep.add))
	if err != nil {
		t.Fatal(err)
	}
	const n, per = 1000, 100
	send(t, s, 0, n, per) // the first batch waits in the window, the others in the spool
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "seg-*.spool"))
	damaged := false
	for _, seg := range segs {
		data, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.Index(string(data), "id=450\n"); i >= 0 {
			f, err := os.OpenFile(seg, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("9"), int64(i+3)); err != nil { // id=950: a batch that would be written twice
				t.Fatal(err)
			}
			f.Close()
			damaged = true
		}
	}
	if !damaged {
		t.Fatalf("id 450 is not in the spool (%v)", segs)
	}
	serveAt(t, addr, Config{Dir: dir}) // the collector comes up
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Lost != per {
		t.Fatalf("lost %d, want the damaged batch's %d", st.Lost, per)
	}
	counts := countIDs(t, filepath.Join(dir, "damaged.log"), n)
	for id, c := range counts {
		if want := map[bool]int{true: 0, false: 1}[id >= 400 && id < 500]; c != want {
			t.Fatalf("id %d written %d times, want %d", id, c, want)
		}
	}
	if !rep.has("batch 5 of 100 entries", "fails its CRC") {
		t.Fatalf("the damaged record was not reported: %q", rep.list())
	}
}

// checkDelivered syncs and closes s, then checks that ids 0..n-1 are in
// path once each and in order, and that the spool in spoolDir is empty.
func checkDelivered(t *testing.T, s *netlog.Stream, path, spoolDir string, n int) {
	t.Helper()
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkIDs(t, path, n)
	checkOrder(t, path)
	if segs, _ := filepath.Glob(filepath.Join(spoolDir, "seg-*.spool")); len(segs) != 0 {
		t.Fatalf("spool not emptied after delivery: %v", segs)
	}
}

// checkOrder fails unless the ids in path increase line by line.
func checkOrder(t *testing.T, path string) {
	t.Helper()
	f, _ := os.Open(path)
	defer f.Close()
	sc := bufio.NewScanner(f)
	prev := -1
	for sc.Scan() {
		k, _ := strconv.Atoi(sc.Text()[3:])
		if k <= prev {
			t.Fatalf("id %d after %d: out of order", k, prev)
		}
		prev = k
	}
}

func TestSpoolDropOldest(t *testing.T) {
	spoolDir := t.TempDir()
	addr := testnet.RefusedAddr(t)
	s, err := netlog.Dial(addr, netlog.WithWindow(1, 1<<20), netlog.WithSpool(spoolDir, 4<<20, netlog.SpoolDropOldest),
		netlog.WithDrainTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 100<<10)
	for range 200 { // 20 MB into a 4 MB spool
		if err := s.WriteBatch(line, 1); err != nil {
			t.Fatal(err)
		}
	}
	var size int64
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "seg-*.spool"))
	for _, name := range segs {
		fi, _ := os.Stat(name)
		size += fi.Size()
	}
	if size > 4<<20 {
		t.Fatalf("spool holds %d bytes, bound is 4 MiB", size)
	}
	if st := s.Stats(); st.Lost < 100 {
		t.Fatalf("%d entries counted lost, want the dropped ones (>= 100)", st.Lost)
	}
	s.Close()
}

// spoolChild runs in a child process (the test binary again): a client
// with a spool sends phase 1 to a live collector and syncs, then phase 2
// while the collector is down, says "spooled", and waits to be killed.
func spoolChild() {
	addr, spoolDir := os.Getenv("SPOOL_CHILD_ADDR"), os.Getenv("SPOOL_CHILD_DIR")
	s, err := netlog.Dial(addr, netlog.WithStreamName("crash"), netlog.WithWindow(2, 1<<20),
		netlog.WithSpool(spoolDir, 64<<20, netlog.SpoolBlock), netlog.WithBackoff(5*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	batch := func(from, n int) {
		for k := from; k < from+n; k += 100 {
			var b []byte
			for i := k; i < k+100; i++ {
				b = fmt.Appendf(b, "id=%d\n", i)
			}
			if err := s.WriteBatch(b, 100); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
		}
	}
	batch(0, 50_000)
	if err := s.Sync(); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("acked")
	bufio.NewReader(os.Stdin).ReadString('\n') // the parent stops the collector
	batch(50_000, 50_000)
	fmt.Println("spooled")
	select {} // wait for SIGKILL
}

// The client process is killed with SIGKILL while its spool holds data;
// a new client on the same spool directory delivers it all, the torn last
// record is dropped, and nothing acked before the kill is sent again.
func TestSpoolSurvivesClientSIGKILL(t *testing.T) {
	dir, spoolDir := t.TempDir(), t.TempDir()
	_, addr, stop := serve(t, Config{Dir: dir})

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SPOOL_CHILD=1", "SPOOL_CHILD_ADDR="+addr, "SPOOL_CHILD_DIR="+spoolDir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewReader(stdout)
	expect := func(want string) {
		line, err := out.ReadString('\n')
		if err != nil || line != want+"\n" {
			t.Fatalf("child said %q (%v), want %q", line, err, want)
		}
	}
	expect("acked")
	stop(true)
	io.WriteString(stdin, "go\n")
	expect("spooled")
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// A crash in the middle of a spool write: half a record at the end.
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "seg-*.spool"))
	if len(segs) == 0 {
		t.Fatal("the child spooled nothing")
	}
	f, _ := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte("SNSP\x01\x02\x03 half a record"))
	f.Close()

	c2, addr2 := start(t, Config{Dir: dir})
	var rep reports
	s, err := netlog.Dial(addr2, netlog.WithStreamName("crash"), netlog.WithSpool(spoolDir, 64<<20, netlog.SpoolBlock),
		netlog.WithErrorHandler(rep.add))
	if err != nil {
		t.Fatal(err)
	}
	// The cut is reported, from Dial (to the handler's goroutine).
	waitFor(t, func() bool { return len(rep.list()) > 0 })
	if got := rep.list(); len(got) != 1 || !rep.has("cut 21 bytes", "torn by a crash") {
		t.Errorf("reported at Dial: %q, want the cut of the half record", got)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Batches in the child's window when it died (not spooled, not acked)
	// are the documented loss: at most the window, 2 batches of 100.
	data, _ := os.ReadFile(filepath.Join(dir, "crash.log"))
	seen := map[int]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		k, err := strconv.Atoi(line[3:])
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		if seen[k] {
			t.Fatalf("id %d twice", k)
		}
		seen[k] = true
	}
	for k := range 50_000 {
		if !seen[k] {
			t.Fatalf("acked id %d missing", k)
		}
	}
	if missing := 100_000 - len(seen); missing > 200 {
		t.Fatalf("%d ids missing; a crash may lose at most the window (200)", missing)
	}
	if st := c2.Stats(); st.Duplicates != 0 {
		t.Fatalf("%d batches sent again although acked", st.Duplicates)
	}
}

// A spool whose state went back (restored from an older copy: here its
// next sequence number is set back to 1) would number new batches like
// ones the collector already wrote, which would skip them as duplicates.
// The collector's welcome says how far it wrote for the stream id: the
// client numbers its next batches past that, says so, and they arrive.
// (A crash of the machine does not take the state back: the numbers are
// reserved ahead and fsynced, TestSpoolReservesAhead in netlog.)
func TestSpoolThatWentBack(t *testing.T) {
	dir, spoolDir := t.TempDir(), t.TempDir()
	_, addr := start(t, Config{Dir: dir})
	dial := func(report func(error)) *netlog.Stream {
		t.Helper()
		s, err := netlog.Dial(addr, netlog.WithStreamName("back"), netlog.WithSpool(spoolDir, 1<<20, netlog.SpoolBlock),
			netlog.WithErrorHandler(report))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := dial(func(error) {})
	send(t, s, 0, 100, 10)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	statePath := filepath.Join(spoolDir, "state")
	state, err := os.ReadFile(statePath)
	if err != nil || len(state) != 32 {
		t.Fatalf("spool state: %d bytes, %v", len(state), err)
	}
	binary.LittleEndian.PutUint64(state[12:], 1) // next sequence number
	binary.LittleEndian.PutUint64(state[20:], 0) // acked
	binary.LittleEndian.PutUint32(state[28:], crc32.Checksum(state[:28], crc32.MakeTable(crc32.Castagnoli)))
	if err := os.WriteFile(statePath, state, 0o640); err != nil {
		t.Fatal(err)
	}

	var rep reports
	s = dial(rep.add)
	// Batches numbered before the welcome arrives cannot be told from the
	// old ones; the report says so. Here the welcome comes first.
	waitFor(t, func() bool { return s.Stats().Connected })
	send(t, s, 100, 100, 10)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkIDs(t, filepath.Join(dir, "back.log"), 200)
	if got := rep.list(); len(got) != 1 || !rep.has("went back") {
		t.Fatalf("reported %q, want the spool going back", got)
	}
}
