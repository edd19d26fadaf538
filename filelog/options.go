package filelog

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// ErrInvalidOption wraps every configuration error returned by Open.
var ErrInvalidOption = errors.New("filelog: invalid option")

// ErrClosed is returned by a File's methods after Close.
var ErrClosed = errors.New("filelog: closed")

// ErrInUse is Open's error when another File, in this process or another,
// writes the same path with rotation: each would rename the file from
// under the other, and entries written to a backup after its compression
// began would be lost with it.
var ErrInUse = errors.New("filelog: written with rotation by another File")

// ErrRecordRefused is given to the error handler for each record a device
// refused for good, one written per write() (WithRecordPerWrite): /dev/kmsg
// refuses records over about 1 KiB, a datagram socket those over its
// limit. The record is dropped, counted in Stats.Refused, and the batch
// goes on.
var ErrRecordRefused = errors.New("filelog: record refused by the device")

// ErrLocked is Lock's error when another file description holds the lock.
var ErrLocked = errors.New("filelog: locked by another process or File")

// Fsync is when a File calls fsync. The first fsync after the live file
// was created or rotated also fsyncs its directory, so that the file's
// name survives a power loss with its data.
type Fsync int

const (
	// FsyncNever leaves flushing to the operating system. Sync writes out
	// what is pending to the OS but does not fsync. The default.
	FsyncNever Fsync = iota
	// FsyncBatch fsyncs after every batch: survives power loss, costs a
	// disk round trip per batch.
	FsyncBatch
	// FsyncInterval fsyncs after a batch when the interval set with
	// WithFsyncInterval has passed since the last fsync, and on Sync.
	FsyncInterval
)

// Compression is the codec for rotated files.
type Compression int

const (
	NoCompression Compression = iota // rotated files stay as they are
	Gzip                             // rotated files become name.gz
	Zstd                             // rotated files become name.zst
)

func (c Compression) ext() string {
	switch c {
	case Gzip:
		return ".gz"
	case Zstd:
		return ".zst"
	}
	return ""
}

// DefaultMode is the permission of a file Open creates.
const DefaultMode os.FileMode = 0o640

const (
	// DefaultMaxBackups is how many rotated files are kept by default.
	DefaultMaxBackups = 10
	// Unlimited, as MaxBackups, keeps every rotated file (subject to MaxAge).
	Unlimited = -1
)

type config struct {
	mode           os.FileMode
	fsync          Fsync
	fsyncEvery     time.Duration
	maxSize        int64
	every          time.Duration
	maxBackups     int
	maxAge         time.Duration
	compression    Compression
	recordPerWrite bool
	sighup         bool
	follow         time.Duration // WithFollowPath; 0: off
	onError        func(error)
	now            func() time.Time
	fakeClock      bool // now is not time.Now: no rotation timer
}

// Option configures a File. Options validate their values; Open returns the
// error wrapped in ErrInvalidOption.
type Option func(*config) error

// WithMode sets the permissions of a file Open creates, less the process's
// umask, as with open(2). Defaults to 0640.
func WithMode(m os.FileMode) Option {
	return func(c *config) error {
		if m&^os.ModePerm != 0 {
			return fmt.Errorf("mode %v has more than permission bits", m)
		}
		c.mode = m
		return nil
	}
}

// WithFsync sets the fsync policy. Defaults to FsyncNever.
func WithFsync(f Fsync) Option {
	return func(c *config) error {
		if f < FsyncNever || f > FsyncInterval {
			return fmt.Errorf("unknown fsync policy %d", f)
		}
		c.fsync = f
		return nil
	}
}

// WithFsyncInterval selects FsyncInterval with interval d (> 0).
func WithFsyncInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("fsync interval %v must be positive", d)
		}
		c.fsync, c.fsyncEvery = FsyncInterval, d
		return nil
	}
}

// WithMaxSize rotates the file before a batch that would take it over n
// bytes. A batch larger than n goes whole into a fresh file. Zero (the
// default) turns size rotation off.
func WithMaxSize(n int64) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("max size %d is negative", n)
		}
		c.maxSize = n
		return nil
	}
}

// WithRotateEvery rotates the file at every multiple of d in local time:
// time.Hour rotates on the hour, 24*time.Hour at local midnight (also on
// the days of a daylight saving change). An interval under a day counts
// from each local midnight (with 7h, at 0, 7, 14 and 21 h); a longer one
// must be a whole number of days, counted from 1970-01-01. Zero (the
// default) turns time rotation off; otherwise d must be at least a
// second. The file
// rotates at the boundary even if nothing is written then (an empty file is
// not rotated), and Open rotates a file last written before the current
// period began, so that a period's backup never holds an earlier one's
// entries.
func WithRotateEvery(d time.Duration) Option {
	return func(c *config) error {
		if d != 0 && d < time.Second {
			return fmt.Errorf("rotation interval %v is under a second", d)
		}
		if d > 24*time.Hour && d%(24*time.Hour) != 0 {
			return fmt.Errorf("rotation interval %v is over a day but not a whole number of days", d)
		}
		c.every = d
		return nil
	}
}

// WithMaxBackups keeps at most n rotated files, deleting the oldest first.
// Defaults to 10: zero would keep none, so it is rejected; keeping every
// file must be asked for with Unlimited.
func WithMaxBackups(n int) Option {
	return func(c *config) error {
		if n == 0 || n < Unlimited {
			return fmt.Errorf("max backups %d: want at least 1, or Unlimited", n)
		}
		c.maxBackups = n
		return nil
	}
}

// WithMaxAge deletes rotated files older than d, by the time in their name.
// Zero (the default) sets no age limit; MaxBackups still applies.
func WithMaxAge(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("max age %v is negative", d)
		}
		c.maxAge = d
		return nil
	}
}

// WithCompression compresses rotated files in the background, one at a
// time, with gzip or zstd. A crash during compression leaves the
// uncompressed file; the next Open finishes the job. Defaults to none.
func WithCompression(comp Compression) Option {
	return func(c *config) error {
		if comp < NoCompression || comp > Zstd {
			return fmt.Errorf("unknown compression %d", comp)
		}
		c.compression = comp
		return nil
	}
}

// WithRecordPerWrite writes each entry of a batch with its own write(),
// for record-oriented devices where one write is one record. Entries must
// end with a newline. Producers are still batched. Linux's /dev/kmsg
// (which refuses writes of more than about 1 KiB) is recognised by its
// device number and gets this without the option; note that the kernel
// drops records that processes write there past 10 per 5 s unless
// /proc/sys/kernel/printk_devkmsg is "on".
func WithRecordPerWrite() Option {
	return func(c *config) error {
		c.recordPerWrite = true
		return nil
	}
}

// WithSIGHUP makes the File reopen its path when the process receives
// SIGHUP, for logrotate's default (move, then signal). The File stops
// listening at Close.
func WithSIGHUP() Option {
	return func(c *config) error {
		c.sighup = true
		return nil
	}
}

// WithFollowPath makes the File check that its path still names the file
// it writes; when the file was deleted, moved away or replaced (rm,
// logrotate without a signal, sed -i), the batch goes to a new file at the
// path, as after Reopen. A file left without a name (rm, sed -i) is
// noticed before the next batch (one fstat a batch); one moved away, at
// most d later (one stat of the path every d), batches until then going
// to it where it was moved. Without the option, writing goes on into the
// old file, which an rm leaves unreachable: what is written there is
// lost. Off by default, as in zap and lumberjack (use Reopen or
// WithSIGHUP); the collector turns it on with d = 1s. Devices are not
// followed.
func WithFollowPath(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("follow-path interval %v must be positive", d)
		}
		c.follow = d
		return nil
	}
}

// WithErrorHandler receives the errors that have no caller to return to:
// of background work (compression, retention), and records a device
// refused (ErrRecordRefused). It is never called with the File's lock
// held, so it may call the File. Without it they are printed to standard
// error; a nil f discards them.
func WithErrorHandler(f func(error)) Option {
	return func(c *config) error {
		if f == nil {
			f = func(error) {}
		}
		c.onError = f
		return nil
	}
}

// WithClock sets the clock used for time rotation and backup names
// (tests). Defaults to time.Now. With a clock of its own, a File rotates
// by time only when a batch is written: the timer that rotates an idle
// file at the boundary runs on the real clock.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return errors.New("nil clock")
		}
		c.now, c.fakeClock = now, true
		return nil
	}
}
