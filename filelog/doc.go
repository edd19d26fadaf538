// Package filelog writes batches of log entries to a file with one write()
// per batch (one writev() for a batch given in pieces), and keeps the file
// in shape: rotation by size or time on batch boundaries, retention,
// background compression of rotated files, fsync policies, and reopening
// after external rotation (logrotate, SIGHUP).
//
// A File is a destination for snail's sink: it takes whole batches, never
// splits an entry across files, and never leaves half an entry behind when
// a write fails (a short write on a full disk is cut back). On ext4, a
// batch of 256 KiB or more finds its blocks allocated (fallocate, 8 MiB at
// a time, the file's size unchanged; what no write filled is given back
// when the file is let go of), which makes the write cheaper for the
// kernel than ext4's delayed allocation.
//
// Character devices, FIFOs, sockets and stdout/stderr are written the same
// way but never rotated, and Sync on them never fails with EINVAL or
// ENOTSUP (zap's well-known "sync /dev/stdout: invalid argument"). For
// record-oriented devices such as /dev/kmsg, WithRecordPerWrite writes one
// entry per write() while producers are still batched. A Unix socket is
// connected to (a datagram socket, such as syslog's /dev/log, takes one
// entry per datagram), and a device whose reader left (a FIFO's reader, a
// socket's peer) is opened again at the next batch.
package filelog
