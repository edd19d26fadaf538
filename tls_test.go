package snail

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snail-log/snail/collector"
	"github.com/snail-log/snail/internal/testcert"
	"github.com/snail-log/snail/netlog"
)

// A snail:// URL speaks TLS to a collector that requires client
// certificates, with the collector's certificate checked under the name
// tls_server_name gives (the URL names it by its address, which the
// certificate does not name); without that name, or without the client
// certificate, the collector is not reached.
func TestURLWithTLS(t *testing.T) {
	tmp := t.TempDir()
	ca := testcert.NewCA(t)
	caFile, certFile, keyFile := filepath.Join(tmp, "ca.pem"), filepath.Join(tmp, "client.pem"), filepath.Join(tmp, "client.key")
	ca.WritePEM(t, caFile)
	testcert.WritePEM(t, ca.Issue(t, "app", x509.ExtKeyUsageClientAuth), certFile, keyFile)
	server := ca.Issue(t, "collector.test", x509.ExtKeyUsageServerAuth)
	dir := t.TempDir()
	_, addr := startCollector(t, "", collector.Config{Dir: dir, TLS: &tls.Config{
		Certificates: []tls.Certificate{server}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	}})
	base := "snail://" + addr + "/tlsurl?window=1ms&tls_ca=" + url.QueryEscape(caFile)
	withCert := "&tls_cert=" + url.QueryEscape(certFile) + "&tls_key=" + url.QueryEscape(keyFile)
	for _, tc := range []struct {
		name, query, fails string // fails: what the error says, "" when delivered
	}{
		{"delivered", withCert + "&tls_server_name=collector.test", ""},
		{"name not checked", withCert, "127.0.0.1"},
		{"no client certificate", "&tls_server_name=collector.test", "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(base + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			addr, nopts, sopts, err := ParseNetURL(u)
			if err != nil {
				t.Fatal(err)
			}
			nopts = append(nopts, netlog.WithReportAfter(300*time.Millisecond), netlog.WithDrainTimeout(time.Second),
				netlog.WithErrorHandler(func(error) {}))
			w, err := Dial(addr, nopts, sopts...)
			if err != nil {
				t.Fatal(err)
			}
			w.Write([]byte(tc.name + "\n"))
			err = w.Sync()
			w.Close()
			if tc.fails == "" {
				if err != nil {
					t.Fatal(err)
				}
				if b, _ := os.ReadFile(filepath.Join(dir, "tlsurl.log")); string(b) != "delivered\n" {
					t.Fatalf("collector's file %q", b)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.fails) {
				t.Fatalf("Sync: %v, want an error about %q", err, tc.fails)
			}
		})
	}
}

// ClientTLS reads the client certificate again at each connection: a
// renewed one is presented from the next, and files that do not load leave
// the one before. Bad files are errors at once.
func TestClientTLS(t *testing.T) {
	tmp := t.TempDir()
	ca := testcert.NewCA(t)
	caFile, certFile, keyFile := filepath.Join(tmp, "ca.pem"), filepath.Join(tmp, "client.pem"), filepath.Join(tmp, "client.key")
	ca.WritePEM(t, caFile)
	first := ca.Issue(t, "app", x509.ExtKeyUsageClientAuth)
	testcert.WritePEM(t, first, certFile, keyFile)
	cfg, err := ClientTLS(caFile, certFile, keyFile, "collector.test")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "collector.test" || cfg.RootCAs == nil {
		t.Fatalf("config %+v", cfg)
	}
	presented := func() string {
		t.Helper()
		c, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber.String()
	}
	if got := presented(); got != first.Leaf.SerialNumber.String() {
		t.Fatalf("serial %s presented, want %s", got, first.Leaf.SerialNumber)
	}
	renewed := ca.Issue(t, "app", x509.ExtKeyUsageClientAuth)
	testcert.WritePEM(t, renewed, certFile, keyFile)
	if got := presented(); got != renewed.Leaf.SerialNumber.String() {
		t.Fatalf("serial %s presented after renewal, want %s", got, renewed.Leaf.SerialNumber)
	}
	os.WriteFile(certFile, []byte("half-written by a renewal"), 0o600)
	if got := presented(); got != renewed.Leaf.SerialNumber.String() {
		t.Fatalf("serial %s presented after a bad renewal, want %s still", got, renewed.Leaf.SerialNumber)
	}
	if cfg, err := ClientTLS("", "", "", ""); err != nil || cfg.RootCAs != nil {
		t.Fatalf("system roots: %+v, %v", cfg, err)
	}

	for name, files := range map[string][3]string{
		"missing CA":   {filepath.Join(tmp, "none.pem"), "", ""},
		"CA not PEM":   {keyFile + ".nope", "", ""},
		"cert alone":   {caFile, certFile, ""},
		"bad key pair": {caFile, caFile, keyFile},
	} {
		if name == "CA not PEM" {
			os.WriteFile(files[0], []byte("not PEM"), 0o600)
		}
		if _, err := ClientTLS(files[0], files[1], files[2], ""); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// Relative certificate files are taken from the working directory at
// ClientTLS: a renewal is still read after the program changes directory.
func TestClientTLSRelativeFiles(t *testing.T) {
	tmp := t.TempDir()
	ca := testcert.NewCA(t)
	testcert.WritePEM(t, ca.Issue(t, "app", x509.ExtKeyUsageClientAuth), filepath.Join(tmp, "client.pem"), filepath.Join(tmp, "client.key"))
	t.Chdir(tmp)
	cfg, err := ClientTLS("", "client.pem", "client.key", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	renewed := ca.Issue(t, "app", x509.ExtKeyUsageClientAuth)
	testcert.WritePEM(t, renewed, filepath.Join(tmp, "client.pem"), filepath.Join(tmp, "client.key"))
	c, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if leaf, err := x509.ParseCertificate(c.Certificate[0]); err != nil || leaf.SerialNumber.Cmp(renewed.Leaf.SerialNumber) != 0 {
		t.Fatalf("presented %v (%v), want the renewal's serial %s", leaf.SerialNumber, err, renewed.Leaf.SerialNumber)
	}
}
