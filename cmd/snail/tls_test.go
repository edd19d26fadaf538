//go:build unix

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testCA signs certificates for 127.0.0.1 and writes them as PEM files.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "snail test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes a server certificate for 127.0.0.1 with the given serial
// number, and its key, to certFile and keyFile.
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
}

// SIGHUP reloads the collector's TLS files: a renewed certificate serves
// the next connections without a restart, and files that do not load
// leave the one before in service. snail send speaks TLS to it.
func TestCollectorReloadsTLSOnSIGHUP(t *testing.T) {
	tmp := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(tmp, "ca.pem"), filepath.Join(tmp, "cert.pem"), filepath.Join(tmp, "key.pem")
	ca := newTestCA(t)
	writePEM(t, caFile, "CERTIFICATE", ca.cert.Raw)
	ca.issue(t, 100, certFile, keyFile)
	dir := t.TempDir()
	d := startDaemon(t, freeAddr(t), dir, "--tls-cert", certFile, "--tls-key", keyFile)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	served := func() int64 {
		t.Helper()
		c, err := tls.Dial("tcp", d.addr, &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
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
	if got := served(); got != 100 {
		t.Fatalf("serial %d served, want 100", got)
	}

	ca.issue(t, 200, certFile, keyFile) // renewed on disk
	hup("reloaded TLS files")
	if got := served(); got != 200 {
		t.Fatalf("after SIGHUP: serial %d served, want the renewed 200", got)
	}
	os.WriteFile(certFile, []byte("half-written by a renewal"), 0o600)
	hup("TLS files not reloaded")
	if got := served(); got != 200 {
		t.Fatalf("after a failed reload: serial %d served, want 200 still", got)
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
