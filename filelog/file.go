package filelog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/snail-log/snail/internal/resume"
)

// File is a log file (or device) that takes whole batches. It is safe for
// concurrent use, though snail's sink calls it from one goroutine. The
// creator must call Close, which stops the background compressor and the
// SIGHUP listener.
type File struct {
	path string
	cfg  config

	mu         sync.Mutex
	f          *os.File
	device     bool    // not a regular file: no rotation, no truncation, no fsync
	records    bool    // one write() per entry: WithRecordPerWrite, a record device, or a datagram socket
	peerGone   bool    // the device's reader left: open it again before the next write
	torn       bool    // the live file ends inside a line: the next batch starts with a newline
	fallocate  bool    // large batches get their blocks before they are written: allocate
	allocated  bool    // allocate ran on the live file: blocks may lie past its end
	allocEnd   int64   // where the blocks allocate allocated end
	refused    []error // records a device refused, for the error handler once the lock is released
	std        bool    // os.Stdout or os.Stderr: never closed by us
	size       int64
	ino        uint64 // inode of the live file
	syncUsed   bool   // Fsync has run: rotated files are fsynced before they are closed
	dirDirty   bool   // the directory changed (file created, rotated) since its last fsync
	unsynced   bool   // batches written to the live file since its last fsync that succeeded
	syncLost   error  // an fsync failed with such batches: for the next Sync
	inSync     map[*os.File]int
	retired    map[*os.File]bool
	nextRotate time.Time
	lastSync   time.Time
	lastBackup time.Time
	renamed    string    // a rotation moved the live file to this name and has no new one yet: finishRotation
	lastFollow time.Time // when WithFollowPath last looked at the path
	closed     bool
	isClosed   atomic.Bool // closed, for Sync to read without the lock
	needSync   atomic.Bool // unsynced, dirDirty or syncLost: for Sync to read without the lock
	stats      Stats
	iov        [][]byte     // WriteBatchVec's vector, reused
	joined     []byte       // WriteBatchVec's pieces joined, for devices
	resume     resume.Point // how far a batch of records that failed part way on a device got

	comp    *compressor
	lock    *os.File // .NAME.lock beside a rotated file, while open
	hup     chan os.Signal
	hupDone chan struct{}
	rotStop chan struct{} // closed by Close: the rotation timer's goroutine ends
	rotDone chan struct{}
}

// CheckOptions returns the error Open would return for opts, without
// opening anything: for a program that opens its files later (the
// collector, as streams arrive) to refuse a bad configuration at start.
func CheckOptions(opts ...Option) error {
	_, err := newConfig(opts)
	return err
}

func newConfig(opts []Option) (config, error) {
	c := config{mode: DefaultMode, maxBackups: DefaultMaxBackups, now: time.Now, onError: printError}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return c, fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
	}
	if c.fsync == FsyncInterval && c.fsyncEvery == 0 {
		return c, fmt.Errorf("%w: FsyncInterval needs WithFsyncInterval", ErrInvalidOption)
	}
	return c, nil
}

// printError is the error handler of a File opened without
// WithErrorHandler: errors that have no caller to return to go to the
// process's standard error, as zap's ErrorOutput does by default, rather
// than nowhere.
func printError(err error) { fmt.Fprintln(os.Stderr, err) }

// Open opens path for appending, creating it (not its directory) with the
// configured mode. A relative path is taken from the working directory at
// Open, also for the rotations and reopens after a change of directory.
// Errors (missing directory, permission denied, a directory at path, a
// FIFO without a reader) are returned here, with the path, not at the
// first write. The names "stdout", "stderr", "-",
// /dev/stdout and /dev/stderr write to the process's standard streams.
// A File that rotates (WithMaxSize, WithRotateEvery) holds a lock on
// .NAME.lock beside the file while open: a second rotating File on the
// path fails with ErrInUse.
func Open(path string, opts ...Option) (*File, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty path", ErrInvalidOption)
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if stdStream(path) == nil && !filepath.IsAbs(path) {
		// Rotation, following and Reopen open the path again: from the
		// directory of now, not the one the program may move to.
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("filelog: open %s: %w", path, err)
		}
		path = abs
	}
	l := &File{path: path, cfg: c}
	if err := l.open(); err != nil {
		return nil, err
	}
	if !l.device && (c.maxSize > 0 || c.every > 0) {
		if err := l.lockRotation(); err != nil {
			l.f.Close()
			return nil, err
		}
	}
	if !l.device {
		if err := l.rotateStale(); err != nil {
			c.onError(err) // not fatal: writing goes on, into the file as it is
		}
		if l.lock != nil { // a rotating File: its retention holds from the start
			if err := l.retention(); err != nil {
				c.onError(err)
			}
		}
		l.scheduleRotation()
		if c.compression != NoCompression {
			l.comp = newCompressor(c.compression, c.onError)
			l.comp.cleanStale(l.backupGlob())
			l.queueUncompressed("")
		}
	}
	if !l.device && c.every > 0 && !c.fakeClock {
		l.rotStop, l.rotDone = make(chan struct{}), make(chan struct{})
		go l.rotateOnTime()
	}
	if c.sighup {
		l.hup = make(chan os.Signal, 1)
		l.hupDone = make(chan struct{})
		signal.Notify(l.hup, syscall.SIGHUP)
		go l.hupLoop()
	}
	return l, nil
}

func stdStream(path string) *os.File {
	switch path {
	case "stdout", "-", "/dev/stdout":
		return os.Stdout
	case "stderr", "/dev/stderr":
		return os.Stderr
	}
	return nil
}

// open opens (or reopens) l.path. Called with l.mu held, or before l is shared.
func (l *File) open() error {
	if l.f != nil {
		l.trimAllocated() // the file being let go of
	}
	l.fallocate = false // until the new file is known to be on ext4
	if s := stdStream(l.path); s != nil {
		l.f, l.std, l.device = s, true, true
		return nil
	}
	flag := os.O_WRONLY | os.O_APPEND | os.O_CREATE
	fi, err := os.Stat(l.path)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("filelog: open %s: is a directory", l.path)
	case l.f != nil && l.device && (err != nil || fi.Mode().IsRegular()):
		// Opening a device or socket again (after its reader left, or on
		// SIGHUP) while its path is missing (a log agent restarting
		// removes its socket first) must not make a regular file there:
		// the agent could not bind its socket again, and we would never
		// find it. Wait for the device instead.
		if err == nil {
			err = errors.New("a regular file now")
		}
		return fmt.Errorf("filelog: open %s again: %w; waiting for the device or socket it was", l.path, unwrapPath(err))
	case err == nil && fi.Mode()&os.ModeSocket != 0:
		f, dgram, err := dialSocket(l.path)
		if err != nil {
			return err
		}
		l.f, l.device = f, true
		l.records = l.cfg.recordPerWrite || dgram // an entry per datagram
		return nil
	case err == nil && !fi.Mode().IsRegular():
		// Devices, FIFOs: a FIFO with no reader fails at once (ENXIO)
		// instead of blocking Open.
		flag = os.O_WRONLY | syscall.O_NONBLOCK
		l.device = true
	}
	l.records = l.cfg.recordPerWrite || err == nil && recordDevice(fi)
	f, err := os.OpenFile(l.path, flag, l.cfg.mode)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) {
			return fmt.Errorf("filelog: open %s: no process is reading the FIFO: %w", l.path, err)
		}
		return fmt.Errorf("filelog: %w", err) // *PathError names the path
	}
	l.f = f
	if !l.device {
		l.dirDirty = true // maybe created, or another file at the path
		l.unsynced = false
		l.noteSyncState()
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("filelog: %w", err)
		}
		l.size, l.ino = st.Size(), Inode(st)
		l.torn = endsInsideLine(l.path, l.size)
		l.fallocate = !l.records && allocates(f)
		// Blocks an earlier process allocated and did not fill (it was
		// killed) are given back too, when this File lets go of the file.
		l.allocated = l.fallocate && blocksPastEnd(st)
	}
	return nil
}

// endsInsideLine reports whether the regular file at path, of size bytes,
// ends with something other than a newline: a line torn by a writer that
// died in the middle of its write() (SIGKILL, a full disk, a power loss),
// or written by someone else without its newline. The next batch then
// starts with a newline, so that its first entry is not glued to that
// line, where a reader of the log would take both for one broken entry.
// An unreadable file counts as whole.
func endsInsideLine(path string, size int64) bool {
	if size == 0 {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var last [1]byte
	n, _ := f.ReadAt(last[:], size-1)
	return n == 1 && last[0] != '\n'
}

// newline starts the next batch on a line of its own when the file ends
// inside one (see endsInsideLine).
var newline = []byte{'\n'}

// lockRotation takes the lock of a rotated file: an flock on a hidden file
// beside it, .NAME.lock, which rotation does not move.
func (l *File) lockRotation() error {
	dir, base := filepath.Split(l.path)
	lf, err := Lock(filepath.Join(dir, "."+base+".lock"), l.cfg.mode)
	if errors.Is(err, ErrLocked) {
		return fmt.Errorf("%w: %s", ErrInUse, l.path)
	}
	if err != nil {
		return err
	}
	l.lock = lf
	return nil
}

// Lock opens path, creating it with mode, and takes its exclusive lock
// (flock) without waiting, or returns ErrLocked while another open file
// holds it, in this process or another. The lock lasts until the returned
// file is closed, or the process ends. Where flock is missing it locks
// nothing. A File locks .NAME.lock this way while it rotates; a collector
// locks its output directory.
func Lock(path string, mode os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, mode)
	if err != nil {
		return nil, fmt.Errorf("filelog: lock: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%w: %s", err, path)
		}
		return nil, fmt.Errorf("filelog: lock %s: %w", path, err)
	}
	return f, nil
}

// Path returns the path the File writes to.
func (l *File) Path() string { return l.path }

// WriteBatch writes batch, which holds entries whole entries, with one
// write() (or one per entry with WithRecordPerWrite), rotating first when
// the batch would cross a size or time boundary. On a short write the file
// is cut back to where the batch began, so a failed batch leaves nothing
// behind; the error wraps the cause (ENOSPC on a full disk).
func (l *File) WriteBatch(batch []byte, entries int) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	err := l.writeBatch(batch)
	l.unlockReporting()
	return err
}

// unlockReporting releases the lock, then gives the error handler the
// records a device refused meanwhile: a handler that calls the File (its
// Stats, say) would wait for the lock its caller held.
func (l *File) unlockReporting() {
	refused := l.refused
	l.refused = nil
	l.mu.Unlock()
	for _, err := range refused {
		l.cfg.onError(err)
	}
}

// WriteBatchVec writes a batch given in pieces, in order, as WriteBatch
// writes them joined, but with one writev() and no copy (sink.VectorWriter).
// On a device, and with WithRecordPerWrite, the pieces are joined and go
// the way of WriteBatch.
func (l *File) WriteBatchVec(pieces [][]byte, entries int) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	err := l.writeBatchVec(pieces)
	l.unlockReporting()
	return err
}

// writeBatchVec is WriteBatchVec with the lock held.
func (l *File) writeBatchVec(pieces [][]byte) error {
	if l.device || l.records {
		l.joined = l.joined[:0]
		for _, p := range pieces {
			l.joined = append(l.joined, p...)
		}
		return l.writeBatch(l.joined)
	}
	total := 0
	for _, p := range pieces {
		total += len(p)
	}
	if total == 0 {
		return nil
	}
	if err := l.maybeRotate(total); err != nil {
		return err
	}
	start := l.size
	if l.torn {
		pieces = append([][]byte{newline}, pieces...)
		total++
	}
	l.allocate(total)
	n, calls, err := writev(l.f, pieces, &l.iov)
	clear(l.iov[:cap(l.iov)]) // hold no reference to the caller's buffers
	if err := l.account(n, calls, err); err != nil {
		return err
	}
	return l.untorn(l.durable(start))
}

// untorn notes that the batch just written, which began with a newline if
// the file ended inside a line, is in the file: unless err cut it back.
func (l *File) untorn(err error) error {
	if err == nil {
		l.torn = false
	}
	return err
}

// writeBatch is WriteBatch with the lock held.
func (l *File) writeBatch(batch []byte) error {
	if len(batch) == 0 {
		return nil
	}
	if l.peerGone {
		if err := l.reconnect(); err != nil {
			return err
		}
	}
	if err := l.maybeRotate(len(batch)); err != nil {
		return err
	}
	start := l.size
	if l.torn && l.records {
		// A record of its own, as every entry has.
		if err := l.write(newline); err != nil {
			return err
		}
		l.torn = false
		start = l.size
	}
	if l.torn {
		// One write() still: the newline and the batch together, so that
		// a failure cuts both back.
		l.allocate(len(batch) + 1)
		n, calls, err := writev(l.f, [][]byte{newline, batch}, &l.iov)
		clear(l.iov[:cap(l.iov)])
		if err := l.account(n, calls, err); err != nil {
			return err
		}
		return l.untorn(l.durable(start))
	}
	if !l.records {
		l.allocate(len(batch))
		if err := l.write(batch); err != nil {
			return err
		}
		return l.durable(start)
	}
	if err := l.writeRecords(batch, start); err != nil {
		return err
	}
	return l.durable(start)
}

// allocateMin is the smallest batch allocate allocates for: below it the
// call costs more than the write saves (measured on ext4: a loss at 16
// KiB, even at 64 KiB, a gain from 256 KiB), and a writer that fills
// batches this large is busy.
const allocateMin = 256 << 10

// allocateChunk is how far allocate allocates at a time: far enough that
// a file written side by side with others (a collector's streams) gets
// extents of this size, where allocating each batch alone gave it one
// extent per batch (185 extents in 90 MB, against 1-3 with ext4's delayed
// allocation, in benchmarks/NOTES.md, session 35).
const allocateChunk = 8 << 20

// allocate gives the blocks of a batch of n bytes about to be appended
// before it is written, where the file system makes the write cheaper for
// it (ext4: see allocates). On ext4 a write() into blocks allocated but not
// yet written costs the kernel less than one that leaves the allocation
// for later (delayed allocation): in 1 MiB batches, 0.21-0.22 against
// 0.12-0.15 s of the writer's CPU per GB written, 0.25-0.29 against
// 0.17-0.21 s of both cores' with the writeback counted
// (benchmarks/NOTES.md, session 35). The blocks are allocated up to the
// next multiple of allocateChunk (not past the rotation size), from where
// the file really ends (another process may have appended to it); what
// no write filled is given back when the File lets go of the file
// (trimAllocated). A failure is left to the write, which reports it (a
// full disk) or does without, and what it allocated is given back at once,
// so that a file on a disk nearly full does not take the last of its
// space from other files.
func (l *File) allocate(n int) {
	if !l.fallocate || n < allocateMin || l.size+int64(n) <= l.allocEnd {
		return
	}
	end, err := l.f.Seek(0, io.SeekEnd)
	if err != nil {
		if testHookAllocate != nil {
			testHookAllocate(-1, int64(n), err)
		}
		return
	}
	want := (end + int64(n) + allocateChunk - 1) / allocateChunk * allocateChunk
	if m := l.cfg.maxSize; m > 0 {
		want = min(want, max(end+int64(n), m))
	}
	l.allocated = true
	switch err := allocateAt(l.f, end, want-end); {
	case err == nil:
		l.allocEnd = want
	case errors.Is(err, errors.ErrUnsupported):
		l.fallocate = false
	default:
		l.trimAllocated()
	}
}

// trimAllocated gives back the blocks allocate took past the end of the
// live file that no write filled, when the File lets go of it (a
// rotation, a reopen, Close) or an allocation failed. Only when the file
// ends where this File's writes left it: if another process appended to
// it, or emptied it (logrotate's copytruncate), cutting it at this File's
// count would delete that process's lines or pad the file with zero bytes,
// so those blocks stay allocated (up to allocateChunk) and a later
// allocation fills them.
func (l *File) trimAllocated() {
	if !l.allocated || l.device {
		return
	}
	l.allocated, l.allocEnd = false, 0
	if st, err := l.f.Stat(); err == nil && st.Size() == l.size {
		_ = l.f.Truncate(l.size) // gives back the blocks past the end; on failure they stay
	}
}

// writeRecords writes batch one entry per write(). On a regular file a
// failure cuts back every record of the batch, as for one write. On a
// device, a record the device refuses for good (longer than /dev/kmsg
// takes, or than a datagram socket's limit) is dropped and reported, and
// the batch goes on; another failure keeps what was written in l.resume,
// so that the batch, tried again, goes on after it.
func (l *File) writeRecords(batch []byte, start int64) error {
	done := l.resume.From(batch)
	for done < len(batch) {
		rec := batch[done:]
		if i := bytes.IndexByte(rec, '\n'); i >= 0 {
			rec = rec[:i+1]
		}
		n, err := l.f.Write(rec)
		if err == nil {
			l.account(n, 1, nil)
			done += len(rec)
			continue
		}
		if l.device && n == 0 && refusedRecord(err) {
			l.stats.Writes++
			l.stats.Refused++
			l.refused = append(l.refused, fmt.Errorf("%w: %s took no record of %d bytes (%q...): %w",
				ErrRecordRefused, l.path, len(rec), rec[:min(len(rec), 40)], unwrapPath(err)))
			done += len(rec)
			continue
		}
		if l.device {
			// The records a device took cannot be taken back: the batch,
			// tried again, goes on after them.
			l.resume.Save(batch, done)
			return l.account(n, 1, err)
		}
		return l.account(int(l.size-start)+n, 1, err) // cuts the whole batch back
	}
	return nil
}

// refusedRecord reports whether a device's error for one record says that
// it refuses that record, whatever the next try: /dev/kmsg's EINVAL for a
// record over its limit, a datagram socket's EMSGSIZE.
func refusedRecord(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EMSGSIZE)
}

// write writes p with one write() (which Go repeats on a short write,
// EINTR and EAGAIN) and cuts a partial write back.
func (l *File) write(p []byte) error {
	n, err := l.f.Write(p)
	return l.account(n, 1, err)
}

// account counts calls write()s that wrote n bytes in all, and cuts a
// partial write back if they ended in err.
func (l *File) account(n, calls int, err error) error {
	l.stats.Writes += int64(calls)
	if err != nil {
		if l.device && !l.std && peerGone(err) {
			l.peerGone = true
		}
		return l.cutBack(n, err)
	}
	l.size += int64(n)
	l.stats.Bytes += int64(n)
	return nil
}

// cutBack undoes a partial write of n bytes on a regular file, so that no
// torn entry is left, and returns the write error with the path.
func (l *File) cutBack(n int, err error) error {
	if n > 0 && !l.device {
		if terr := l.cutLast(int64(n)); terr != nil {
			return fmt.Errorf("filelog: write %s: %w (and cutting back %d partial bytes: %v)", l.path, err, n, terr)
		}
	}
	return fmt.Errorf("filelog: write %s: %w", l.path, unwrapPath(err))
}

// cutLast cuts off the last n bytes of the file, which this File has just
// written, and sets l.size to where the file then ends. The end is read
// from the file, not taken from l.size, which counts this File's writes
// only: another process appending to the same file, or a truncation from
// outside (logrotate's copytruncate), moves it. Cutting at l.size deleted
// the other process's lines in the first case, and padded the file with
// zero bytes up to the old size in the second.
func (l *File) cutLast(n int64) error {
	st, err := l.f.Stat()
	if err != nil {
		return err
	}
	end := max(st.Size()-n, 0)
	if err := l.f.Truncate(end); err != nil {
		return err
	}
	l.size = end
	l.allocated, l.allocEnd = false, 0 // the truncation gave back every block past the end
	return nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// durable applies the fsync policy to a batch just written from offset
// start. If the fsync fails, the batch is cut back as a failed write is:
// the caller (the sink) writes it again, and it is in the file once, not
// twice. After a failed fsync Linux may have dropped the data it could not
// write out, so writing the batch again is also what makes it durable.
//
// With FsyncInterval the batches written before it since the last fsync
// that succeeded were already reported written, and may be lost too: no
// later fsync says so (Linux reports a failed writeback once), so the next
// Sync returns this error.
func (l *File) durable(start int64) error {
	defer l.noteSyncState()
	earlier := l.unsynced
	l.unsynced = true
	err := l.afterWrite()
	if err == nil || l.device {
		return err
	}
	if earlier && l.syncLost == nil {
		l.syncLost = fmt.Errorf("%w: batches written before it since the last fsync that succeeded may be lost", err)
	}
	n := l.size - start // this batch
	if terr := l.cutLast(n); terr != nil {
		return fmt.Errorf("%w (and cutting the batch back: %v)", err, terr)
	}
	l.stats.Bytes -= n
	l.unsynced = earlier // this batch is gone
	return err
}

func (l *File) afterWrite() error {
	switch l.cfg.fsync {
	case FsyncBatch:
		return l.fsync()
	case FsyncInterval:
		if now := l.cfg.now(); now.Sub(l.lastSync) >= l.cfg.fsyncEvery {
			return l.fsync()
		}
	}
	return nil
}

func (l *File) fsync() error {
	if l.device {
		return nil
	}
	l.lastSync = l.cfg.now()
	err := l.f.Sync()
	if err == nil && testHookFsync != nil {
		err = testHookFsync(l.path)
	}
	if err != nil {
		return fmt.Errorf("filelog: fsync %s: %w", l.path, unwrapPath(err))
	}
	l.unsynced = false
	if l.dirDirty {
		if err := SyncDir(filepath.Dir(l.path)); err != nil {
			l.noteSyncState()
			return err
		}
		l.dirDirty = false
	}
	l.noteSyncState()
	return nil
}

// noteSyncState records, for Sync to read without the lock, whether an
// fsync has anything to do. Called with l.mu held after any change to
// unsynced, dirDirty or syncLost.
func (l *File) noteSyncState() {
	l.needSync.Store(l.unsynced || l.dirDirty || l.syncLost != nil)
}

// SyncDir fsyncs directory dir, so that the names created, renamed or
// removed in it survive a power loss as the data fsynced in its files
// does: fsync on a file covers its data, not the directory entry that
// names it. A file system that cannot fsync a directory (EINVAL) is not an
// error.
func SyncDir(dir string) error {
	if testHookSyncDir != nil {
		if err := testHookSyncDir(dir); err != nil {
			return fmt.Errorf("filelog: fsync directory: %w", err)
		}
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("filelog: fsync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, syscall.EINVAL) { // EINVAL: the file system cannot fsync a directory
		return fmt.Errorf("filelog: fsync directory: %w", err)
	}
	return nil
}

// testHookFsync, set by tests only, can fail a file's fsync after it ran.
var testHookFsync func(path string) error

// testHookAllocate, set by tests only, sees each allocation allocateAt
// asks for: where, how many bytes, and the error (at -1: the file's end
// could not be read).
var testHookAllocate func(off, n int64, err error)

// testHookSyncDir, set by tests only, sees each directory SyncDir fsyncs,
// and makes that fsync fail with the error it returns.
var testHookSyncDir func(dir string) error

// Sync makes what was written durable as the fsync policy says: with
// FsyncNever, data written is already with the operating system and Sync
// does nothing; otherwise it fsyncs, unless nothing was written since the
// last fsync (with FsyncBatch, every batch was fsynced once written). On
// devices it never fails with EINVAL or ENOTSUP.
func (l *File) Sync() error {
	if l.cfg.fsync == FsyncNever || !l.needSync.Load() {
		// Nothing to fsync (every batch was, with FsyncBatch): without the
		// lock. Many goroutines that each log and Sync waited for it behind
		// the batch being written and fsynced, to learn nothing, and each
		// fsynced again.
		if l.isClosed.Load() {
			return ErrClosed
		}
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	err := l.fsync()
	if lost := l.syncLost; lost != nil {
		l.syncLost = nil
		err = errors.Join(lost, err)
	}
	l.noteSyncState()
	return err
}

// Fsync flushes the live file to stable storage now, whatever the fsync
// policy: for a caller that groups many batches under one fsync (the
// collector's acks after fsync). The fsync runs outside the File's lock, so
// batches keep being written meanwhile (they wait for the next Fsync); a
// file rotated or reopened during it is closed once it is done, and a file
// rotated after an Fsync ever ran is fsynced before it is closed, so that
// what was written to it is covered. Devices are not synced.
func (l *File) Fsync() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.device {
		l.mu.Unlock()
		return nil
	}
	f := l.f
	dirty := l.dirDirty
	l.dirDirty = false // needSync stays as it was until Sync's next fsync: conservative
	l.syncUsed = true
	if l.inSync == nil {
		l.inSync = make(map[*os.File]int)
	}
	l.inSync[f]++
	l.mu.Unlock()

	err := f.Sync()
	if err != nil {
		err = fmt.Errorf("filelog: fsync %s: %w", l.path, unwrapPath(err))
	} else if dirty {
		err = SyncDir(filepath.Dir(l.path))
	}

	l.mu.Lock()
	if err != nil && dirty {
		l.dirDirty = true // the next Fsync tries again
		l.noteSyncState()
	}
	l.inSync[f]--
	var cerr error
	if l.inSync[f] == 0 {
		delete(l.inSync, f)
		if l.retired[f] {
			delete(l.retired, f)
			cerr = closeFile(f, l.path)
		}
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	return cerr
}

// retire closes a file that rotation, Reopen or Close replaced: at once,
// or when the Fsync running on it ends. Called with l.mu held.
func (l *File) retire(f *os.File, path string) error {
	var err error
	if l.syncUsed {
		if serr := f.Sync(); serr != nil {
			err = fmt.Errorf("filelog: fsync %s: %w", path, unwrapPath(serr))
		}
	}
	if l.inSync[f] > 0 {
		if l.retired == nil {
			l.retired = make(map[*os.File]bool)
		}
		l.retired[f] = true
		return err
	}
	return errors.Join(err, closeFile(f, path))
}

// Position reports where the live file ends after the batches written so
// far: its inode number and size. The collector records it with each batch
// so that, after a crash, it can cut a batch that was written in part.
// Devices report 0, 0.
func (l *File) Position() (ino uint64, size int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ino, l.size
}

// Reopen closes the file and opens its path again: after logrotate (or an
// operator) moved it away, writing continues in a new file at path.
func (l *File) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.std {
		return nil
	}
	if l.renamed != "" {
		return l.finishRotation() // the path is empty: a rotation of ours moved the file
	}
	old := l.f
	if err := l.open(); err != nil {
		return err // keep writing to the old file
	}
	return l.retire(old, l.path)
}

// reconnect opens a device again after its reader left (a FIFO's reader,
// a socket's peer), as rsyslog's pipe output does, so that writing goes on
// to the next one; until there is one it fails (ENXIO for a FIFO, a
// refused connection for a socket), and the sink tries again later.
// Called with l.mu held.
func (l *File) reconnect() error {
	old := l.f
	if err := l.open(); err != nil {
		return err
	}
	l.peerGone = false
	l.stats.Reopens++
	return l.retire(old, l.path)
}

func closeFile(f *os.File, path string) error {
	if err := f.Close(); err != nil {
		return fmt.Errorf("filelog: close %s: %w", path, unwrapPath(err))
	}
	return nil
}

func (l *File) hupLoop() {
	defer close(l.hupDone)
	for range l.hup {
		if err := l.Reopen(); err != nil && !errors.Is(err, ErrClosed) {
			l.cfg.onError(err)
		}
	}
}

// Close fsyncs (unless the policy is FsyncNever), closes the file, stops
// the SIGHUP listener and the compressor (a compression in progress is
// abandoned and finished by the next Open). Later calls return ErrClosed.
func (l *File) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.isClosed.Store(true)
	var errs []error
	if l.cfg.fsync != FsyncNever {
		errs = append(errs, l.fsync())
	}
	if !l.std {
		l.trimAllocated()
		errs = append(errs, l.retire(l.f, l.path))
	}
	l.mu.Unlock()
	if l.rotStop != nil {
		close(l.rotStop)
		<-l.rotDone
	}
	if l.hup != nil {
		signal.Stop(l.hup)
		close(l.hup)
		<-l.hupDone
	}
	if l.comp != nil {
		l.comp.close()
	}
	if l.lock != nil {
		l.lock.Close() // after the compressor: it works on this path's backups
	}
	return errors.Join(errs...)
}

// Compressing reports whether rotated files wait to be compressed, or one
// is being compressed: Close abandons that work (the next Open resumes
// it), so an owner that can wait may keep the File open meanwhile.
func (l *File) Compressing() bool { return l.comp != nil && l.comp.busy() }

// Stats are a File's counters.
type Stats struct {
	Writes    int64 // write calls made (one per batch, or per entry with WithRecordPerWrite)
	Bytes     int64 // bytes written
	Rotations int64 // rotations done
	Reopens   int64 // new files opened at the path by WithFollowPath, devices opened again after their reader left
	Refused   int64 // records a device refused for good, dropped (ErrRecordRefused)
}

// Stats returns the File's counters.
func (l *File) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}
