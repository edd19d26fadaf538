package snail

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
)

// ClientTLS returns the TLS configuration of a collector's client. It
// verifies the collector against the PEM CA file caFile (the system's
// roots when empty) under the name serverName (the host dialed when empty:
// set it when dialing an IP address the certificate does not name). With
// certFile it presents that client certificate, with the key in keyFile,
// to a collector that requires one (snail collector --tls-client-ca). The
// certificate files are read again at each connection, so that a
// certificate renewed on disk (cert-manager, certbot) is presented from
// the next connection without a restart (relative names are taken from the
// working directory at ClientTLS); files that do not load then leave the
// one before in use.
func ClientTLS(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("snail: TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("snail: TLS CA: no PEM certificate in %s", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("snail: TLS: a client certificate goes with its key file, and a key with its certificate")
	}
	if certFile != "" {
		// Read again later: from the directory of now, not the one the
		// program may move to.
		for _, p := range []*string{&certFile, &keyFile} {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return nil, fmt.Errorf("snail: TLS client certificate: %w", err)
			}
			*p = abs
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("snail: TLS client certificate: %w", err)
		}
		last := new(atomic.Pointer[tls.Certificate])
		last.Store(&cert)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
				last.Store(&c)
			}
			return last.Load(), nil
		}
	}
	return cfg, nil
}
