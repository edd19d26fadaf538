//go:build unix

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snail-log/snail/internal/testcert"
)

// SIGHUP reloads the collector's TLS files: a renewed certificate serves
// the next connections without a restart, and files that do not load
// leave the one before in service. snail send speaks TLS to it.
func TestCollectorReloadsTLSOnSIGHUP(t *testing.T) {
	tmp := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(tmp, "ca.pem"), filepath.Join(tmp, "cert.pem"), filepath.Join(tmp, "key.pem")
	ca := testcert.NewCA(t)
	ca.WritePEM(t, caFile)
	first := ca.Issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	testcert.WritePEM(t, first, certFile, keyFile)
	dir := t.TempDir()
	d := startDaemon(t, "", dir, "--tls-cert", certFile, "--tls-key", keyFile)
	served := func() *big.Int {
		t.Helper()
		c, err := tls.Dial("tcp", d.addr, &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber
	}
	hup := func(logged string) {
		t.Helper()
		n := strings.Count(d.stderr.String(), logged)
		d.signal(t, syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(d.stderr.String(), logged) == n {
			if time.Now().After(deadline) {
				t.Fatalf("%q not logged after SIGHUP:\n%s", logged, d.stderr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if got := served(); got.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Fatalf("serial %v served, want %v", got, first.Leaf.SerialNumber)
	}

	renewed := ca.Issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	testcert.WritePEM(t, renewed, certFile, keyFile)
	hup("reloaded TLS files")
	if got := served(); got.Cmp(renewed.Leaf.SerialNumber) != 0 {
		t.Fatalf("after SIGHUP: serial %v served, want the renewed %v", got, renewed.Leaf.SerialNumber)
	}
	os.WriteFile(certFile, []byte("half-written by a renewal"), 0o600)
	hup("TLS files not reloaded")
	if got := served(); got.Cmp(renewed.Leaf.SerialNumber) != 0 {
		t.Fatalf("after a failed reload: serial %v served, want %v still", got, renewed.Leaf.SerialNumber)
	}

	in := filepath.Join(t.TempDir(), "lines.txt")
	writeLines(t, in, 0, 1000)
	var out, errb strings.Builder
	if err := sendCmd(context.Background(), []string{"--to", d.addr, "--stream", "tls", "--tls-ca", caFile, "-q", in}, nil, &out, &errb); err != nil {
		t.Fatalf("send over TLS: %v\n%s", err, errb.String())
	}
	checkLines(t, filepath.Join(dir, "tls.log"), 1000)
	d.signal(t, syscall.SIGTERM)
	d.wait(t)
}

// snail send speaks TLS to a collector that requires client certificates,
// checking the collector's certificate under --tls-server-name (it is
// dialed by address). Any --tls-* flag means TLS: a client certificate
// without --tls-ca used to be ignored, and the lines went in clear text.
func TestSendWithClientCertificate(t *testing.T) {
	tmp := t.TempDir()
	file := func(name string) string { return filepath.Join(tmp, name) }
	ca := testcert.NewCA(t)
	ca.WritePEM(t, file("ca.pem"))
	testcert.WritePEM(t, ca.Issue(t, "collector.test", x509.ExtKeyUsageServerAuth), file("server.pem"), file("server.key"))
	testcert.WritePEM(t, ca.Issue(t, "app", x509.ExtKeyUsageClientAuth), file("client.pem"), file("client.key"))
	dir := t.TempDir()
	d := startDaemon(t, "", dir, "--tls-cert", file("server.pem"), "--tls-key", file("server.key"), "--tls-client-ca", file("ca.pem"))
	in := filepath.Join(t.TempDir(), "lines.txt")
	writeLines(t, in, 0, 1000)
	var errb strings.Builder
	if err := sendCmd(context.Background(), []string{"--to", d.addr, "--stream", "mtls", "--tls-ca", file("ca.pem"),
		"--tls-server-name", "collector.test", "--tls-cert", file("client.pem"), "--tls-key", file("client.key"), "-q", in}, nil, io.Discard, &errb); err != nil {
		t.Fatalf("send with a client certificate: %v\n%s", err, errb.String())
	}
	checkLines(t, filepath.Join(dir, "mtls.log"), 1000)

	errb.Reset()
	err := sendCmd(context.Background(), []string{"--to", d.addr, "--tls-cert", file("client.pem"), "-q", in}, nil, io.Discard, &errb)
	if err == nil || !strings.Contains(err.Error(), "key") {
		t.Fatalf("--tls-cert without --tls-key: %v", err)
	}
	d.signal(t, syscall.SIGTERM)
	d.wait(t)
}
