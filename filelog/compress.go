package filelog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// compressor compresses rotated files one at a time on its own goroutine.
// It writes name.ext.tmp, fsyncs it, renames it to name.ext and only then
// removes name, so a crash at any point leaves the uncompressed file whole.
type compressor struct {
	codec   Compression
	onError func(error)

	mu        sync.Mutex
	idle      sync.Cond // broadcast when the queue empties or the compressor stops
	queue     []string  // queue[0] is in progress
	reporting bool      // the last file's failure is with onError: not idle yet
	stopped   bool

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func newCompressor(codec Compression, onError func(error)) *compressor {
	c := &compressor{codec: codec, onError: onError,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	c.idle.L = &c.mu
	go c.run()
	return c
}

// add queues name, unless it is queued or in progress already.
func (c *compressor) add(name string) {
	c.mu.Lock()
	if slices.Contains(c.queue, name) {
		c.mu.Unlock()
		return
	}
	c.queue = append(c.queue, name)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// close abandons the work in progress (its .tmp is removed) and stops.
func (c *compressor) close() {
	close(c.stop)
	<-c.done
}

// busy reports whether a rotated file is queued or being compressed (or
// its failure being reported).
func (c *compressor) busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busyLocked()
}

func (c *compressor) busyLocked() bool {
	return (len(c.queue) > 0 || c.reporting) && !c.stopped
}

// waitIdle waits until nothing is queued or in progress, and every failure
// reported, or the compressor has stopped.
func (c *compressor) waitIdle() {
	c.mu.Lock()
	for c.busyLocked() {
		c.idle.Wait()
	}
	c.mu.Unlock()
}

func (c *compressor) run() {
	defer close(c.done)
	defer func() {
		c.mu.Lock()
		c.stopped = true
		c.idle.Broadcast()
		c.mu.Unlock()
	}()
	retries := 0
	for {
		c.mu.Lock()
		var name string
		if len(c.queue) > 0 {
			name = c.queue[0]
		}
		c.mu.Unlock()
		if name == "" {
			select {
			case <-c.wake:
				continue
			case <-c.stop:
				return
			}
		}
		err := c.compress(name)
		if transient(err) && retries < maxCompressRetries {
			// Out of descriptors or space for now: the file stays first
			// in line, and the File open (a collector keeps an output
			// open while it compresses), rather than wait for the next
			// rotation or Open.
			if retries == 0 {
				c.onError(fmt.Errorf("%w (trying again)", err))
			}
			retries++
			select {
			case <-c.stop:
				return
			case <-time.After(min(compressRetryDelay<<(retries-1), time.Minute)):
			}
			continue
		}
		retries = 0
		if errors.Is(err, errStopped) {
			return
		}
		// Out of the queue before the report, so that the file can be
		// queued again meanwhile (by the next rotation); idle only after
		// it, so that whoever waits for idle also sees the failure.
		c.mu.Lock()
		c.queue = c.queue[1:]
		c.reporting = err != nil
		c.mu.Unlock()
		if err != nil {
			c.onError(err)
		}
		c.mu.Lock()
		c.reporting = false
		if !c.busyLocked() {
			c.idle.Broadcast()
		}
		c.mu.Unlock()
	}
}

var errStopped = errors.New("filelog: compressor stopped")

// A compression that fails for want of descriptors or space is tried again
// after compressRetryDelay, doubling up to a minute, maxCompressRetries
// times (about 6 minutes in all); then the file waits for the next
// rotation, or the next Open.
var compressRetryDelay = time.Second

const maxCompressRetries = 10

// transient reports whether err is a lack of file descriptors (EMFILE,
// ENFILE) or of space (ENOSPC, EDQUOT), which time may cure.
func transient(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// createTemp creates the compressed copy's temporary file (a variable for
// tests).
var createTemp = func(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
}

// stopReader stops a copy when the compressor is told to stop.
type stopReader struct {
	r    io.Reader
	stop <-chan struct{}
}

func (s stopReader) Read(p []byte) (int, error) {
	select {
	case <-s.stop:
		return 0, errStopped
	default:
	}
	return s.r.Read(p)
}

func (c *compressor) compress(name string) (err error) {
	src, err := os.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // deleted by retention meanwhile
		}
		return fmt.Errorf("filelog: compress: %w", err)
	}
	defer src.Close()
	final := name + c.codec.ext()
	tmp := final + ".tmp"
	dst, err := createTemp(tmp)
	if err != nil {
		return fmt.Errorf("filelog: compress: %w", err)
	}
	defer func() {
		if err != nil {
			dst.Close()
			os.Remove(tmp)
		}
	}()
	if st, err := src.Stat(); err == nil {
		dst.Chmod(st.Mode().Perm())
	}
	var enc io.WriteCloser
	switch c.codec {
	case Gzip:
		enc = gzip.NewWriter(dst)
	case Zstd:
		if enc, err = zstd.NewWriter(dst, zstd.WithEncoderConcurrency(1)); err != nil {
			return fmt.Errorf("filelog: compress: %w", err)
		}
	}
	if _, err = io.CopyBuffer(enc, stopReader{src, c.stop}, make([]byte, 256<<10)); err != nil {
		enc.Close()
		if errors.Is(err, errStopped) {
			return err
		}
		return fmt.Errorf("filelog: compress %s: %w", name, err)
	}
	if err = enc.Close(); err != nil {
		return fmt.Errorf("filelog: compress %s: %w", name, err)
	}
	if err = dst.Sync(); err != nil {
		return fmt.Errorf("filelog: compress %s: %w", name, err)
	}
	if err = dst.Close(); err != nil {
		return fmt.Errorf("filelog: compress %s: %w", name, err)
	}
	if err = os.Rename(tmp, final); err != nil {
		return fmt.Errorf("filelog: compress %s: %w", name, err)
	}
	// The compressed file's name is durable before the original goes.
	if err := SyncDir(filepath.Dir(final)); err != nil {
		return fmt.Errorf("filelog: compress %s: %w", name, err)
	}
	if err := os.Remove(name); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			// Retention deleted the backup while it was being
			// compressed: its compressed copy goes too.
			os.Remove(final)
			return nil
		}
		return fmt.Errorf("filelog: compress: remove original: %w", err)
	}
	return nil
}

// cleanStale removes .tmp files left by a compression that a crash cut
// short; their originals are still there and get compressed again.
func (c *compressor) cleanStale(glob string) {
	matches, _ := filepath.Glob(glob)
	for _, m := range matches {
		if strings.HasSuffix(m, ".gz.tmp") || strings.HasSuffix(m, ".zst.tmp") {
			os.Remove(m)
		}
	}
}
