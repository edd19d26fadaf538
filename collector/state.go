package collector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/snail-log/snail/filelog"
)

// The deduplication state of an output, kept beside its data so that it
// survives a crash of the collector: a journal of fixed-size records, one
// appended after each batch is written, saying up to which sequence number
// a client stream id has written every batch and where the live file ended
// then (inode, size). The ack of a batch is sent only after its record is
// written, so:
//
//   - an acked batch is in the file and in the journal (both in the page
//     cache, which a killed process does not lose; with AckFsync both are
//     fsynced before the ack);
//   - a batch written in part, or written but not journaled, is not acked,
//     and on restart the live file is cut back to where the journal says it
//     ended (or to nothing, if it is a newer file than the journal knows):
//     the client sends that batch again;
//   - a batch sent again after a restart is recognised by its sequence
//     number and not written twice;
//   - a stream's latest record wins: records normally go up, one per
//     batch, and go down after a failed fsync (AckFsync) to below the
//     batches it may have lost, so that those are written again when
//     their client sends them again, after a restart too;
//   - a journal's first record, made when the collector first opens the
//     output, says where the live file ended then (stream 0, no batch), so
//     that a crash before the first batch's record is recovered the same
//     way; so does the first record after each restart;
//   - closing an output cleanly journals that (stream 0, sequence number
//     closedSeq): everything in the file was journaled then, so a restart
//     cuts nothing, whatever happened to the file meanwhile (an operator's
//     sed -i, a restore from a backup);
//   - after a crash, a live file that is not the one the journal last
//     wrote (another inode) is cut only if it holds at most one batch: a
//     file rotated just before the crash holds what was written after the
//     rotation, at most the one batch not journaled yet; a bigger one was
//     put there by someone else and is kept.
//
// Record (40 bytes, little-endian): magic "SNST", stream id, sequence
// number, inode, size, CRC-32C of the first 36 bytes. A torn last record
// fails its CRC and is cut off; a damaged one amid valid records is
// skipped (its stream's resent batch may then be written twice). The
// journal is compacted (rewritten with one record per stream id, through a
// temporary file and a rename) when it grows past compactAt records.

const (
	// closedSeq is the sequence number of a stream-0 record that says the
	// output was closed cleanly; 0 is that of a baseline.
	closedSeq  = 1
	recordSize = 40
	compactAt  = 1 << 16
	stateDir   = ".snail" // stream names cannot start with '.'
)

var stateMagic = [4]byte{'S', 'N', 'S', 'T'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type record struct {
	stream, seq uint64
	ino         uint64
	size        int64
}

func (r record) append(b []byte) []byte {
	b = append(b, stateMagic[:]...)
	b = binary.LittleEndian.AppendUint64(b, r.stream)
	b = binary.LittleEndian.AppendUint64(b, r.seq)
	b = binary.LittleEndian.AppendUint64(b, r.ino)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.size))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[len(b)-36:], castagnoli))
}

// parseRecord reads a record, or reports false for a torn or corrupt one
// (its CRC, or a size no file has).
func parseRecord(b []byte) (record, bool) {
	if len(b) < recordSize || [4]byte(b[:4]) != stateMagic ||
		crc32.Checksum(b[:36], castagnoli) != binary.LittleEndian.Uint32(b[36:]) {
		return record{}, false
	}
	r := record{
		stream: binary.LittleEndian.Uint64(b[4:]),
		seq:    binary.LittleEndian.Uint64(b[12:]),
		ino:    binary.LittleEndian.Uint64(b[20:]),
		size:   int64(binary.LittleEndian.Uint64(b[28:])),
	}
	return r, r.size >= 0
}

// journal is an output's state file.
type journal struct {
	path    string
	f       *os.File
	records int
	last    record // the latest record: where the live file ended
	damaged int    // records skipped at open, damaged amid valid ones
	buf     []byte
}

func journalPath(dir, name string) string { return filepath.Join(dir, stateDir, name+".state") }

// openJournal reads the journal of output name (if any) into seen and
// returns it open for appending, with its latest record. If used is not
// nil, it gets each stream's recency: the position of its latest record.
func openJournal(dir, name string, seen, used map[uint64]uint64) (*journal, bool, error) {
	path := journalPath(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, false, err
	}
	j := &journal{path: path}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	found := false
	valid, bad := 0, 0
	for off := 0; len(data)-off >= recordSize; off += recordSize {
		r, ok := parseRecord(data[off:])
		if !ok {
			// Torn by a crash (then nothing valid follows, and the
			// tail is cut below), or damaged in place: skipped, so
			// that one bad record does not send recovery back to an
			// older one and cut the live file to it.
			bad++
			continue
		}
		j.last, found = r, true
		j.records += bad + 1
		j.damaged += bad
		bad = 0
		valid = off + recordSize
		if r.stream == 0 {
			continue // a baseline or a clean close: no client's
		}
		// The latest record of a stream wins: records go up with each
		// batch, and down when an fsync failed (output.failSynced).
		seen[r.stream] = r.seq
		if used != nil {
			used[r.stream] = uint64(j.records)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, false, err
	}
	if data == nil {
		// Created: its name, and its directory's, must survive a
		// power loss with the records fsynced into it.
		if err := errors.Join(filelog.SyncDir(filepath.Dir(path)), filelog.SyncDir(dir)); err != nil {
			f.Close()
			return nil, false, err
		}
	}
	if valid != len(data) {
		// Cut the torn tail so that new records follow valid ones.
		if err := f.Truncate(int64(valid)); err != nil {
			f.Close()
			return nil, false, err
		}
	}
	if _, err := f.Seek(int64(valid), io.SeekStart); err != nil {
		f.Close()
		return nil, false, err
	}
	j.f = f
	return j, found, nil
}

// errNotOurs is recoverLive's answer for a live file that is not the one
// the journal last wrote and is too big to be what a crash left: it is
// kept as it is.
var errNotOurs = errors.New("not the file the state journal last wrote, and more than one batch: kept as is")

// recoverLive cuts the live file at path back to what the journal's last
// record says was written whole: a batch written in part (or written and
// not journaled, hence not acked) is removed; its client sends it again.
// A file that is not the one the record names (another inode) is cut to
// nothing if it holds at most maxBatch bytes (a file rotated just before
// the crash), and otherwise kept, with errNotOurs. It reports how many
// bytes were cut.
func recoverLive(path string, last record, maxBatch int64) (int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil // rotated away and not created again yet
	}
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, nil
	}
	keep := last.size
	if filelog.Inode(fi) != last.ino {
		if fi.Size() > maxBatch {
			return 0, fmt.Errorf("%s: %w", path, errNotOurs)
		}
		keep = 0 // a file newer than the journal's last record: nothing in it was acked
	}
	if fi.Size() <= keep {
		return 0, nil
	}
	if err := os.Truncate(path, keep); err != nil {
		return 0, fmt.Errorf("cut torn tail of %s: %w", path, err)
	}
	return fi.Size() - keep, nil
}

// closed journals that the output was closed cleanly, with the file at
// (ino, size), and syncs the journal. Called with the output's lock held,
// after its last write.
func (j *journal) closed(ino uint64, size int64, all func() []idMark) error {
	if err := j.add(record{stream: 0, seq: closedSeq, ino: ino, size: size}, all); err != nil {
		return err
	}
	return j.sync()
}

// closedCleanly reports whether the journal's last record is a clean close.
func (j *journal) closedCleanly() bool { return j.last.stream == 0 && j.last.seq == closedSeq }

// baseline journals where the live file at path ends before the collector
// first writes to it, with no client's sequence number (stream 0, seq 0):
// what is in the file then was not written by this journal's batches, and
// a crash before the first batch's record still finds a record to cut the
// file back to. Without it, a restart kept a batch written but never
// journaled, and wrote it again when its client resent it.
func (j *journal) baseline(path string, seen map[uint64]uint64) error {
	var r record
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.Mode().IsRegular():
		r.ino, r.size = filelog.Inode(fi), fi.Size()
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return err
	}
	if err := j.add(r, func() []idMark { return marksOf(seen) }); err != nil {
		return err
	}
	return j.sync()
}

// idMark is a client stream id and the sequence number the journal keeps
// for it.
type idMark struct{ id, seq uint64 }

// marksOf lists seen, in no particular order.
func marksOf(seen map[uint64]uint64) []idMark {
	ms := make([]idMark, 0, len(seen))
	for id, seq := range seen {
		ms = append(ms, idMark{id, seq})
	}
	return ms
}

// add appends a record; all returns every stream's latest sequence
// number, least recently written first, for a compaction. Called with the
// output's lock held.
func (j *journal) add(r record, all func() []idMark) error {
	if j.records >= compactAt {
		if err := j.compact(all(), r); err != nil {
			return err
		}
		j.last = r
		return nil
	}
	j.buf = r.append(j.buf[:0])
	if _, err := j.f.Write(j.buf); err != nil {
		return fmt.Errorf("state journal %s: %w", j.path, err)
	}
	j.records++
	j.last = r
	return nil
}

// compact rewrites the journal with one record per stream id in the order
// of marks, so that a restart knows which were written lately, and the
// latest (r, not yet in marks) last, through a temporary file and a rename.
func (j *journal) compact(marks []idMark, r record) error {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	var b []byte
	n := 0
	for _, m := range marks {
		if m.id == r.stream {
			continue
		}
		b = record{stream: m.id, seq: m.seq, ino: r.ino, size: r.size}.append(b)
		n++
	}
	b = r.append(b)
	n++
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact state journal %s: %w", j.path, err)
	}
	// The new journal is in place: records go to it from now on, even if
	// its directory cannot be synced (that error is returned).
	nf, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("compact state journal %s: %w", j.path, err)
	}
	j.f.Close()
	j.f = nf
	j.records = n
	if err := filelog.SyncDir(filepath.Dir(j.path)); err != nil {
		return fmt.Errorf("compact state journal %s: %w", j.path, err)
	}
	return nil
}

// rewrite starts the journal anew at its path with marks and r (as a
// compaction does): for a journal whose file was deleted with its
// directory. Called with the output's lock held.
func (j *journal) rewrite(marks []idMark, r record) error {
	if err := j.compact(marks, r); err != nil {
		return err
	}
	j.last = r
	return nil
}

func (j *journal) sync() error { return j.f.Sync() }

func (j *journal) close() error { return j.f.Close() }
