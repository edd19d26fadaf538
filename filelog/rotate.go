package filelog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Backup names are <stem>-<UTC time to the nanosecond>Z<ext>, for instance
// app-20261125T233529.123456789Z.log, then .gz or .zst once compressed. The
// time has a fixed width, so names sort by time, and a File never hands out
// the same time twice, nor one before a backup already there: after a
// restart with the clock gone back (a machine that booted with its clock
// behind, before NTP), a backup is named just after the newest one, so
// that names keep the order of rotations and retention, which deletes by
// that order, does not take the newest backup for the oldest.
const backupTime = "20060102T150405.000000000Z"

func (l *File) split() (dir, stem, ext string) {
	dir, base := filepath.Split(l.path)
	ext = filepath.Ext(base)
	return dir, strings.TrimSuffix(base, ext), ext
}

func (l *File) backupName(t time.Time) string {
	dir, stem, ext := l.split()
	return filepath.Join(dir, stem+"-"+t.UTC().Format(backupTime)+ext)
}

func (l *File) backupGlob() string {
	dir, stem, _ := l.split()
	return filepath.Join(dir, stem+"-*")
}

type backup struct {
	name       string
	t          time.Time
	compressed bool
}

// backups lists this file's rotated files, oldest first.
func (l *File) backups() []backup {
	dir, stem, ext := l.split()
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var bs []backup
	for _, e := range entries {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, stem+"-")
		if !ok {
			continue
		}
		t, tail, ok := cutBackupTime(rest)
		if !ok {
			continue
		}
		switch tail {
		case ext:
			bs = append(bs, backup{name: filepath.Join(dir, name), t: t})
		case ext + ".gz", ext + ".zst":
			bs = append(bs, backup{name: filepath.Join(dir, name), t: t, compressed: true})
		}
	}
	slices.SortFunc(bs, func(a, b backup) int { return a.t.Compare(b.t) })
	return bs
}

// cutBackupTime parses the backup time at the start of s and returns what
// follows it.
func cutBackupTime(s string) (t time.Time, tail string, ok bool) {
	if len(s) < len(backupTime) {
		return time.Time{}, "", false
	}
	t, err := time.Parse(backupTime, s[:len(backupTime)])
	return t, s[len(backupTime):], err == nil
}

// IsBackupName reports whether the file name (no directory) has the form
// rotation gives backups: stem-TIME.ext, maybe with .gz or .zst. A File
// counts such a file among its backups, to compress it and to delete it by
// retention, so a program that names files after its users (the
// collector, after stream names) must not open one of these names for
// live data.
func IsBackupName(name string) bool {
	name = strings.TrimSuffix(strings.TrimSuffix(name, ".gz"), ".zst")
	for _, s := range []string{name, strings.TrimSuffix(name, filepath.Ext(name))} {
		if i := len(s) - len(backupTime) - 1; i >= 0 && s[i] == '-' {
			if _, tail, ok := cutBackupTime(s[i+1:]); ok && tail == "" {
				return true
			}
		}
	}
	return false
}

// scheduleRotation sets the next time boundary: the end of the period now
// is in.
func (l *File) scheduleRotation() {
	if l.cfg.every == 0 {
		return
	}
	now := l.cfg.now()
	start, days := l.period(now)
	if days > 0 {
		l.nextRotate = start.AddDate(0, 0, days)
		return
	}
	// The last period of a day ends at midnight, where they restart.
	y, m, day := now.Date()
	l.nextRotate = start.Add(l.cfg.every)
	if next := time.Date(y, m, day+1, 0, 0, 0, 0, now.Location()); next.Before(l.nextRotate) {
		l.nextRotate = next
	}
}

// periodStart is the boundary of time rotation at or before t: the start
// of the period t is in.
func (l *File) periodStart(t time.Time) time.Time {
	start, _ := l.period(t)
	return start
}

// period returns the start of the period of time rotation that t is in,
// and, when the period is a whole number of days, that number. Periods of
// whole days are counted on the calendar, so that daily files still turn
// at local midnight across a daylight saving change (a day of 23 or 25
// hours); shorter ones are counted in elapsed time from local midnight.
func (l *File) period(t time.Time) (start time.Time, days int) {
	d := l.cfg.every
	y, m, day := t.Date()
	midnight := time.Date(y, m, day, 0, 0, 0, 0, t.Location())
	if d%(24*time.Hour) == 0 {
		// Periods of n days start on the days whose number since
		// 1970-01-01 is a multiple of n, whenever the File was opened.
		n := int(d / (24 * time.Hour))
		dayNumber := int(time.Date(y, m, day, 0, 0, 0, 0, time.UTC).Unix() / 86400)
		return midnight.AddDate(0, 0, -(dayNumber % n)), n
	}
	return midnight.Add(t.Sub(midnight) / d * d), 0
}

// rotateStale rotates, at Open, a file with time rotation that was last
// written before the current period began: its entries belong to an
// earlier period, whose boundary passed while nobody had it open. Called
// before l is shared.
func (l *File) rotateStale() error {
	if l.cfg.every == 0 || l.size == 0 {
		return nil
	}
	fi, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("filelog: %w", err)
	}
	if !fi.ModTime().Before(l.periodStart(l.cfg.now())) {
		return nil
	}
	return l.rotateLocked()
}

// rotateOnTime rotates the file at each boundary of time rotation, so that
// an idle file does not wait for its next batch to rotate, and applies
// MaxAge then. Errors go to the error handler (the next batch meets them
// too). It ends when Close closes rotStop.
func (l *File) rotateOnTime() {
	defer close(l.rotDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	retry := time.Duration(0)
	for {
		l.mu.Lock()
		wait := max(l.nextRotate.Sub(l.cfg.now()), retry, 10*time.Millisecond)
		l.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-l.rotStop:
			return
		case <-timer.C:
		}
		l.mu.Lock()
		var err error
		if !l.closed {
			err = l.maybeRotate(0)
			if err == nil && l.cfg.maxAge > 0 {
				err = l.retention() // an idle file's backups age too
			}
		}
		l.mu.Unlock()
		retry = 0
		if err != nil {
			retry = time.Second // a failing rotation is not tried in a loop
			l.cfg.onError(err)
		}
	}
}

func (l *File) maybeRotate(n int) error {
	if l.device {
		return nil
	}
	if l.renamed != "" {
		return l.finishRotation()
	}
	if err := l.follow(); err != nil {
		return err
	}
	if l.device { // the path is a device now
		return nil
	}
	due := !l.nextRotate.IsZero() && !l.cfg.now().Before(l.nextRotate)
	if due && l.size == 0 {
		l.scheduleRotation() // nothing to rotate away
		due = false
	}
	overSize := func() bool { return l.cfg.maxSize > 0 && l.size > 0 && l.size+int64(n) > l.cfg.maxSize }
	if !due && overSize() {
		// About to rotate for size: look at the file's real size first,
		// which logrotate's copytruncate may have cut to nothing.
		if st, err := l.f.Stat(); err == nil {
			l.size = st.Size()
		}
	}
	if due || overSize() {
		return l.rotateLocked()
	}
	return nil
}

// Rotate moves the current file to a backup name and starts a new one, as
// if a rotation boundary had been reached. It does nothing on devices.
func (l *File) Rotate() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.device {
		return nil
	}
	return l.rotateLocked()
}

// pathIsOurs reports whether the path names the open file. A path that is
// missing, or names another file, is not; one that cannot be looked at
// (EACCES on the directory) counts as ours, so that writing goes on.
func (l *File) pathIsOurs() bool {
	fi, err := os.Stat(l.path)
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	cur, err := l.f.Stat()
	return err != nil || os.SameFile(fi, cur)
}

// unlinked reports whether the open file has no name left (rm): one
// fstat, cheap enough for every batch, so that nothing is written to a
// deleted file after the deletion, however short the interval. It also
// takes the file's real size from that fstat, so that Position stays true
// after logrotate's copytruncate (the collector journals it, to cut a torn
// batch after a crash).
func (l *File) unlinked() bool {
	fi, err := l.f.Stat()
	if err != nil {
		return false
	}
	l.size = fi.Size()
	n, ok := links(fi)
	return ok && n == 0
}

// follow implements WithFollowPath: when it is time to look, and the path
// no longer names the open file, it opens the path again. A path that
// cannot be opened (its directory is gone) fails the batch, which its
// writer retries, so that writing resumes once it is back.
func (l *File) follow() error {
	if l.cfg.follow == 0 {
		return nil
	}
	now := l.cfg.now()
	gone := l.unlinked()
	if now.Sub(l.lastFollow) < l.cfg.follow && !l.lastFollow.After(now) && !gone {
		return nil
	}
	l.lastFollow = now
	if l.pathIsOurs() {
		return nil
	}
	old := l.f
	if err := l.open(); err != nil {
		l.lastFollow = time.Time{} // look again at the next batch
		return fmt.Errorf("filelog: follow %s: %w", l.path, err)
	}
	l.stats.Reopens++
	l.scheduleRotation()
	return l.retire(old, l.path)
}

func (l *File) rotateLocked() error {
	if l.renamed != "" {
		return l.finishRotation()
	}
	t := l.cfg.now()
	if l.lastBackup.IsZero() { // this File's first rotation: see backupTime
		if bs := l.backups(); len(bs) > 0 {
			l.lastBackup = bs[len(bs)-1].t
		}
	}
	if !t.After(l.lastBackup) {
		t = l.lastBackup.Add(time.Nanosecond)
	}
	name := l.backupName(t)
	for exists(name) || exists(name+".gz") || exists(name+".zst") {
		t = t.Add(time.Nanosecond) // another process rotated at the same instant
		name = l.backupName(t)
	}
	err := fs.ErrNotExist
	if l.pathIsOurs() {
		err = os.Rename(l.path, name)
	}
	// Otherwise the path is empty, or holds another file: ours was moved
	// away (by logrotate, which created an empty one) or replaced (sed
	// -i). Theirs is not ours to back up: start a new file as below.
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("filelog: rotate %s: %w", l.path, err)
		}
		// The file was moved or deleted from under us (with its directory,
		// perhaps): what was written to it went with it, so there is
		// nothing to back up. Start a new file at the path, as Reopen
		// does; without the directory this fails, and the next batch
		// tries again, so that writing resumes once it is back.
		old := l.f
		if err := l.open(); err != nil {
			return fmt.Errorf("filelog: rotate: %w", err)
		}
		l.scheduleRotation()
		return l.retire(old, l.path)
	}
	l.lastBackup = t
	l.stats.Rotations++
	l.renamed = name
	return l.finishRotation()
}

// finishRotation opens the new file at the path after a rotation renamed
// the live one to l.renamed, retires the old one, queues it for
// compression and applies retention. When the open fails (the open-file
// limit, a full disk with no inode left), the rotation stays half done
// and the batch fails: it is tried again, and this again first, so that
// no entry goes into the backup and the backup is still compressed.
func (l *File) finishRotation() error {
	old := l.f
	if err := l.open(); err != nil {
		return fmt.Errorf("filelog: rotate: %w", err)
	}
	name := l.renamed
	l.renamed = ""
	l.scheduleRotation()
	err := l.retire(old, name)
	if l.comp != nil {
		// With it, the backups whose compression failed (a full disk,
		// the open-file limit) are tried again, oldest first, rather
		// than left as they are until the next Open.
		l.queueUncompressed(name)
	}
	return errors.Join(err, l.retention())
}

// queueUncompressed queues for compression the backups that are not
// compressed yet, oldest first, and name (a backup just made: listing the
// directory may fail) if it is not among them.
func (l *File) queueUncompressed(name string) {
	var names []string
	for _, b := range l.backups() {
		if !b.compressed && filepath.Ext(b.name) != l.cfg.compression.ext() {
			names = append(names, b.name)
		}
	}
	if name != "" && !slices.Contains(names, name) {
		names = append(names, name)
	}
	for _, n := range names {
		l.comp.add(n)
	}
}

func exists(name string) bool {
	_, err := os.Lstat(name)
	return err == nil
}

// retention deletes the backups over MaxBackups (oldest first) and those
// older than MaxAge.
func (l *File) retention() error {
	bs := l.backups()
	var errs []error
	cut := 0
	if l.cfg.maxBackups > 0 && len(bs) > l.cfg.maxBackups {
		cut = len(bs) - l.cfg.maxBackups
	}
	if l.cfg.maxAge > 0 {
		limit := l.cfg.now().Add(-l.cfg.maxAge)
		for cut < len(bs) && bs[cut].t.Before(limit) {
			cut++
		}
	}
	for _, b := range bs[:cut] {
		if err := os.Remove(b.name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("filelog: retention: %w", err))
		}
	}
	return errors.Join(errs...)
}
