package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// serverTLS is the collector's TLS configuration, loaded from its files
// at start and again at each SIGHUP, so that a certificate renewed on disk
// (cert-manager, certbot) is served to new connections without a restart.
// Connections already open keep the certificate they were made with.
type serverTLS struct {
	certFile, keyFile, caFile string
	cur                       atomic.Pointer[tls.Config]
}

func newServerTLS(certFile, keyFile, caFile string) (*serverTLS, error) {
	s := &serverTLS{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if _, err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// config is the tls.Config to serve with: each handshake takes the one
// loaded last.
func (s *serverTLS) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load(), nil
		},
	}
}

// reload reads the files again and, if they make a valid configuration,
// serves it from now on; otherwise the one before stays. It returns the
// new certificate's expiry.
func (s *serverTLS) reload() (notAfter time.Time, err error) {
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return time.Time{}, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if s.caFile != "" {
		pool, err := loadPool(s.caFile)
		if err != nil {
			return time.Time{}, fmt.Errorf("--tls-client-ca: %w", err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	s.cur.Store(cfg)
	if cert.Leaf == nil { // GODEBUG=x509keypairleaf=0
		return time.Time{}, nil
	}
	return cert.Leaf.NotAfter, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}
