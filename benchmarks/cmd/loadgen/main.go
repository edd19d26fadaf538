// Command loadgen sends the same lines to a log daemon over one of three
// protocols and reports how fast they were taken: plain TCP (newline
// framed, as rsyslog's imtcp reads it), RELP (rsyslog's acked protocol,
// a window of outstanding messages, each acked), and snail's protocol
// (batches acked after the collector wrote them). It is the load generator
// of benchmarks/rsyslog/run.sh; the script counts the lines in the output
// files and reads the daemons' CPU time.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/snail-log/snail/netlog"
	"github.com/snail-log/snail/sink"
)

func main() {
	proto := flag.String("proto", "snail", "tcp, relp or snail")
	addr := flag.String("addr", "127.0.0.1:7777", "daemon address")
	in := flag.String("in", "", "file of lines to send")
	window := flag.Int("relp-window", 128, "RELP messages outstanding at once")
	flag.Parse()
	data, err := os.ReadFile(*in)
	if err != nil {
		fail(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	start := time.Now()
	// The script times from here, after the file is loaded.
	fmt.Printf("start %.6f\n", float64(start.UnixNano())/1e9)
	switch *proto {
	case "tcp":
		err = sendTCP(*addr, data)
	case "relp":
		err = sendRELP(*addr, lines, *window)
	case "snail":
		err = sendSnail(*addr, lines)
	default:
		err = fmt.Errorf("unknown -proto %q", *proto)
	}
	if err != nil {
		fail(err)
	}
	el := time.Since(start)
	fmt.Printf("%s sent %d lines in %v (%.0f lines/s as sent)\n", *proto, len(lines), el.Round(time.Millisecond), float64(len(lines))/el.Seconds())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(1)
}

// sendTCP writes the lines as they are: imtcp frames by newline. Nothing
// is acked; the script waits for the lines to appear in the file.
func sendTCP(addr string, data []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	if _, err := c.Write(data); err != nil {
		return err
	}
	return c.Close()
}

// sendSnail ships the lines through a sink Writer over a netlog Stream:
// Close returns once the collector has acked every batch.
func sendSnail(addr string, lines [][]byte) error {
	s, err := netlog.Dial(addr, netlog.WithStreamName("bench"))
	if err != nil {
		return err
	}
	w, err := sink.New(s)
	if err != nil {
		return err
	}
	for _, l := range lines {
		if _, err := w.Write(l); err != nil {
			return err
		}
	}
	return w.Close()
}

// sendRELP speaks RELP (rfc-less, see librelp's doc/relp.html): open,
// then "syslog" commands with a window of outstanding transactions, each
// answered by "rsp 200", then close.
func sendRELP(addr string, lines [][]byte, window int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	bw := bufio.NewWriterSize(c, 256<<10)
	br := bufio.NewReaderSize(c, 64<<10)
	txn := 1
	frame := func(cmd string, data []byte) {
		bw.WriteString(strconv.Itoa(txn))
		bw.WriteByte(' ')
		bw.WriteString(cmd)
		bw.WriteByte(' ')
		bw.WriteString(strconv.Itoa(len(data)))
		if len(data) > 0 {
			bw.WriteByte(' ')
			bw.Write(data)
		}
		bw.WriteByte('\n')
		txn++
	}
	frame("open", []byte("relp_version=0\nrelp_software=snail-loadgen\ncommands=syslog"))
	if err := bw.Flush(); err != nil {
		return err
	}
	if _, err := readRsp(br); err != nil {
		return fmt.Errorf("relp open: %w", err)
	}
	outstanding := 0
	for _, l := range lines {
		for outstanding >= window {
			if err := bw.Flush(); err != nil {
				return err
			}
			if _, err := readRsp(br); err != nil {
				return err
			}
			outstanding--
		}
		frame("syslog", bytes.TrimSuffix(l, []byte("\n")))
		outstanding++
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	for ; outstanding > 0; outstanding-- {
		if _, err := readRsp(br); err != nil {
			return err
		}
	}
	// Every message is acked; say goodbye without waiting for the answer
	// (whose zero-length frames this small reader does not parse).
	frame("close", nil)
	return bw.Flush()
}

// readRsp reads one RELP response frame and checks that it says 200.
func readRsp(br *bufio.Reader) (int, error) {
	for {
		hdr, err := br.ReadString(' ')
		if err != nil {
			return 0, err
		}
		txn, err := strconv.Atoi(hdr[:len(hdr)-1])
		if err != nil {
			return 0, fmt.Errorf("relp: bad txnr %q", hdr)
		}
		cmd, err := br.ReadString(' ')
		if err != nil {
			return 0, err
		}
		lenStr, err := br.ReadString(' ')
		n := 0
		if err == nil || errors.Is(err, io.EOF) {
			n, _ = strconv.Atoi(lenStr[:len(lenStr)-1])
		}
		data := make([]byte, n+1) // data and the trailing newline
		if _, err := io.ReadFull(br, data); err != nil {
			return 0, err
		}
		if cmd == "serverclose " {
			return 0, errors.New("relp: server closed")
		}
		if cmd != "rsp " {
			continue
		}
		if !bytes.HasPrefix(data, []byte("200")) {
			return 0, fmt.Errorf("relp: txn %d: %q", txn, data)
		}
		return txn, nil
	}
}
