package benchmarks

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/snail-log/snail/encoder"
	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
	"go.uber.org/zap"
)

// collectorProc is `snail collector` built from this checkout and run as a
// process of its own, so that its CPU time can be read apart from the
// client's.
type collectorProc struct {
	cmd  *exec.Cmd
	addr string
	dir  string
}

var (
	buildOnce sync.Once
	binPath   string
	binDir    string // where binPath was built, removed by TestMain
	buildErr  error
)

func startCollectorProc(b *testing.B, extra ...string) *collectorProc {
	buildOnce.Do(func() {
		// SNAIL_BENCH_COLLECTOR_BIN runs that snail binary instead of one
		// built from this checkout (an A/B of two collectors).
		if p := os.Getenv("SNAIL_BENCH_COLLECTOR_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "snail-bench-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		binPath = filepath.Join(dir, "snail")
		out, err := exec.Command("go", "build", "-C", "..", "-o", binPath, "./cmd/snail").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	// SNAIL_BENCH_COLLECTOR_DIR puts the collector's files elsewhere (for
	// instance on tmpfs, to take the disk's writeback out of the numbers).
	dir := b.TempDir()
	if d := os.Getenv("SNAIL_BENCH_COLLECTOR_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "collector-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	// SNAIL_BENCH_COLLECTOR_ARGS adds flags, e.g. "--cpu-profile /tmp/c.prof".
	extra = append(extra, strings.Fields(os.Getenv("SNAIL_BENCH_COLLECTOR_ARGS"))...)
	cmd := exec.Command(binPath, append([]string{"collector", "--listen", addr, "--dir", dir, "--log-level", "error"}, extra...)...)
	cmd.Stderr = os.Stderr
	// SNAIL_BENCH_COLLECTOR_SETSID=1 starts the collector in a session of
	// its own, as a daemon started by systemd or from another shell runs.
	// With the kernel's autogroups (sched_autogroup_enabled), CPU time is
	// then shared between the two processes first, not between all their
	// threads: the collector's one busy thread no longer competes with
	// the client's two or three as an equal. (A benchmark stopped with
	// Ctrl-C then leaves it running: the signal goes to the terminal's
	// session only.)
	if os.Getenv("SNAIL_BENCH_COLLECTOR_SETSID") == "1" {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("collector did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &collectorProc{cmd: cmd, addr: addr, dir: dir}
}

// cpu returns the process's user+system CPU time.
func (c *collectorProc) cpu(b *testing.B) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

// selfCPU returns this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runqWait returns the time the process's threads have spent runnable but
// waiting for a core, from /proc/PID/task/*/schedstat (a thread that has
// exited no longer counts).
func (c *collectorProc) runqWait() time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", c.cmd.Process.Pid))
	var sum time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(data)); len(f) >= 2 {
			ns, _ := strconv.ParseInt(f[1], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

// reads returns the process's count of read system calls.
func (c *collectorProc) reads() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "syscr: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// rawLines are 64Ki pre-encoded JSON entries of about 200 bytes with
// varying values, as a service's access log has: they compress like real
// logs (a pool this large never repeats inside one 1 MiB batch).
var rawLines = func() [][]byte {
	r := rand.New(rand.NewPCG(7, 7))
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	lines := make([][]byte, 1<<16)
	ts := 1764115200.0
	for i := range lines {
		ts += r.Float64() / 500
		var b []byte
		b = fmt.Appendf(b, `{"level":%q,"ts":%.6f,"msg":%q,"method":%q,"path":"%s%d","status":%s,"latency_ms":%.3f,"request_id":"%016x%012x","user_id":%d}`+"\n",
			pick("info", "info", "info", "warn", "error", "debug"), ts,
			pick("request completed", "cache miss", "slow query", "upstream retry", "payment authorised"),
			pick("GET", "GET", "POST", "PUT", "DELETE"), pick("/api/v1/users/", "/api/v1/orders/", "/api/v2/search?q=", "/static/app.js?v="),
			r.IntN(1_000_000), pick("200", "200", "200", "201", "204", "304", "404", "500"), r.ExpFloat64()*20,
			r.Uint64(), r.Uint64()>>16, r.IntN(50_000))
		lines[i] = b
	}
	return lines
}()

var streamSeq atomic.Int64

// BenchmarkNet measures entries/s acked end to end: G goroutines log b.N
// entries through a front-end into a sink Writer over a netlog Stream to a
// collector process on loopback; the clock stops when Close has returned
// (every batch acked), and the lines in the collector's file are counted.
// Reports bytes on the wire per entry and the collector's CPU per entry.
func BenchmarkNet(b *testing.B) {
	c := startCollectorProc(b)
	warmUp(b, c)
	fronts := []struct {
		name string
		make func(w *sink.Writer) func(i int)
	}{
		{"raw200", func(w *sink.Writer) func(int) { return func(i int) { w.Write(rawLines[i&(len(rawLines)-1)]) } }},
		{"zerolog", func(w *sink.Writer) func(int) { return zerologTarget(w, nil).log }},
		{"zap", func(w *sink.Writer) func(int) {
			return zapTarget(nil, sink.NewZapCore(zapEncoder(), w, zap.InfoLevel), nil).log
		}},
	}
	for _, comp := range []encoder.Compression{encoder.None, encoder.S2, encoder.Zstd} {
		for _, fe := range fronts {
			for _, g := range []int{1, 64, 1024} {
				b.Run(fmt.Sprintf("front=%s/comp=%s/goroutines=%d", fe.name, comp, g), func(b *testing.B) {
					runNet(b, c, comp, g, fe.make)
				})
			}
			if fe.name == "zerolog" && comp == encoder.None {
				benchZerologDiscard(b)
			}
		}
	}
}

// benchZerologDiscard measures the same process's ceiling for the zerolog
// target, zerolog into io.Discard, right after the zerolog rows. Run at the
// end of the suite, after the collector had written tens of GB, it measured
// 3.95 and 4.28 M entries/s at 64 goroutines in two rounds of three (7.32 M
// in the third, 5.6-7.4 M beside the zerolog rows).
func benchZerologDiscard(b *testing.B) {
	for _, g := range []int{1, 64, 1024} {
		b.Run(fmt.Sprintf("front=zerolog.Discard/comp=none/goroutines=%d", g), func(b *testing.B) {
			b.ReportAllocs()
			log := zerologTarget(io.Discard, nil).log
			b.ResetTimer()
			t0 := time.Now()
			spread(b.N, g, log)
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "entries/s")
		})
	}
}

// warmUp sends 2M raw lines through the collector, untimed, before the
// first measurement: both processes grow their heaps and buffers, and the
// first run in a fresh pair of processes measured 0.6-0.8x the next ones
// (raw lines, one goroutine: 3.9 and 4.8 M entries/s, then 5.7-6.6 M).
func warmUp(b *testing.B, c *collectorProc) {
	st, err := netlog.Dial(c.addr, netlog.WithStreamName("warmup"))
	if err != nil {
		b.Fatal(err)
	}
	w, err := sink.New(st)
	if err != nil {
		b.Fatal(err)
	}
	spread(2_000_000, 64, func(i int) { w.Write(rawLines[i&(len(rawLines)-1)]) })
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	dropOutput(filepath.Join(c.dir, "warmup.log"))
}

// dropOutput deletes a stream's file once it was counted. It truncates the
// file first: the collector keeps an output open for 30 s after its last
// client left, so a plain unlink would free the row's 0.2-1.1 GB of page
// cache only then, in the middle of a later row, where this VM's kernel,
// seeing over 1 GiB free at once, reports it to the host together with the
// pages SNAIL_BENCH_WARM had just warmed for that row.
func dropOutput(p string) {
	os.Truncate(p, 0)
	os.Remove(p)
}

// spread runs log(i) for i in [0, n) on g goroutines.
func spread(n, g int, log func(int)) {
	var wg sync.WaitGroup
	per, extra := n/g, n%g
	id := 0
	for k := range g {
		m := per
		if k < extra {
			m++
		}
		first := id
		id += m
		wg.Go(func() {
			for i := first; i < first+m; i++ {
				log(i)
			}
		})
	}
	wg.Wait()
}

// BenchmarkNetAck compares the two ack levels in one run: acked after
// write() against acked after fsync (group commit: one fsync covers every
// batch written meanwhile). The collector writes to the real disk here
// (SNAIL_BENCH_COLLECTOR_DIR moves it, but fsync on tmpfs costs nothing).
func BenchmarkNetAck(b *testing.B) {
	for _, ack := range []string{"write", "fsync"} {
		c := startCollectorProc(b, "--ack", ack)
		for _, g := range []int{1, 64} {
			b.Run(fmt.Sprintf("ack=%s/goroutines=%d", ack, g), func(b *testing.B) {
				runNet(b, c, encoder.None, g, func(w *sink.Writer) func(int) {
					return func(i int) { w.Write(rawLines[i&(len(rawLines)-1)]) }
				})
			})
		}
	}
}

// BenchmarkNetSync measures what a caller of Sync waits for: each
// goroutine writes one entry, then calls Sync, which returns once the
// collector has acked it (after write(), or after fsync). With one
// goroutine it is a round trip per Sync; with 64, the Syncs that come
// while a batch is on its way share the next batch (batches/sync).
func BenchmarkNetSync(b *testing.B) {
	for _, ack := range []string{"write", "fsync"} {
		c := startCollectorProc(b, "--ack", ack)
		for _, g := range []int{1, 64} {
			b.Run(fmt.Sprintf("ack=%s/goroutines=%d", ack, g), func(b *testing.B) {
				name := fmt.Sprintf("s%d", streamSeq.Add(1))
				st, err := netlog.Dial(c.addr, netlog.WithStreamName(name))
				if err != nil {
					b.Fatal(err)
				}
				w, err := sink.New(st)
				if err != nil {
					b.Fatal(err)
				}
				elapsed := writeAndSync(b, g, w)
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				if got := countLines(b, filepath.Join(c.dir, name+".log")); got != b.N {
					b.Fatalf("%d of %d entries in the collector's file", got, b.N)
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "syncs/s")
				b.ReportMetric(float64(st.Stats().Acked)/float64(b.N), "batches/sync")
				dropOutput(filepath.Join(c.dir, name+".log"))
			})
		}
	}
}

func runNet(b *testing.B, c *collectorProc, comp encoder.Compression, g int, front func(*sink.Writer) func(int)) {
	b.ReportAllocs()
	name := fmt.Sprintf("s%d", streamSeq.Add(1))
	nopts := []netlog.ClientOption{netlog.WithStreamName(name), netlog.WithCompression(comp)}
	// SNAIL_BENCH_WINDOW sets the client's window: that many frames and MiB.
	if w, _ := strconv.Atoi(os.Getenv("SNAIL_BENCH_WINDOW")); w > 0 {
		nopts = append(nopts, netlog.WithWindow(w, int64(w)<<20))
	}
	st, err := netlog.Dial(c.addr, nopts...)
	if err != nil {
		b.Fatal(err)
	}
	w, err := sink.New(st, envSinkOptions()...)
	if err != nil {
		b.Fatal(err)
	}
	log := front(w)
	warmPages(b, int64(b.N)*256)
	cpu0, reads0, self0, wait0 := c.cpu(b), c.reads(), selfCPU(), c.runqWait()
	b.ResetTimer()
	t0 := time.Now()
	spread(b.N, g, log)
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	cpu, reads, self, wait := c.cpu(b)-cpu0, c.reads()-reads0, selfCPU()-self0, c.runqWait()-wait0
	got := countLines(b, filepath.Join(c.dir, name+".log"))
	if got != b.N {
		b.Fatalf("%d of %d entries in the collector's file", got, b.N)
	}
	ss := st.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
	b.ReportMetric(float64(ss.Bytes)/float64(b.N), "wire-B/entry")
	b.ReportMetric(float64(ss.RawBytes)/float64(max(ss.WireBytes, 1)), "ratio")
	b.ReportMetric(cpu.Seconds()*1e6/float64(b.N), "collector-cpu-us/entry")
	// The time the collector's threads were ready to run but had no core,
	// per entry: beside collector-cpu-us/entry, how much of its work the
	// kernel held back while the client's threads ran.
	b.ReportMetric(wait.Seconds()*1e6/float64(b.N), "collector-runq-us/entry")
	b.ReportMetric(float64(reads)/float64(max(ss.Acked, 1)), "collector-reads/frame")
	b.ReportMetric(self.Seconds()*1e6/float64(b.N), "client-cpu-us/entry")
	// cores-busy is the CPU both processes used over the wall time: below
	// the machine's core count, one side waited for the other.
	b.ReportMetric((cpu+self).Seconds()/elapsed.Seconds(), "cores-busy")
	// Writes that slept because every sink buffer was full: the window of
	// unacked frames was full, the collector behind.
	b.ReportMetric(float64(w.Stats().Stalls)*1e6/float64(b.N), "stalls/1M")
	b.ReportMetric(float64(w.Stats().Buffers), "buffers")
	dropOutput(filepath.Join(c.dir, name+".log"))
}
