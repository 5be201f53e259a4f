// Package tlsx builds the TLS configurations of a sluiced process: its gRPC and HTTP
// listeners (-tls-cert, -tls-key, optionally -tls-client-ca for mutual TLS) and its calls to
// other Sluice services (-tls-ca). Certificates are read again when their files change, so a
// rotated certificate (a renewed Kubernetes Secret) is picked up without a restart.
package tlsx

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"
)

// Config names the certificate files.
type Config struct {
	// CertFile and KeyFile are the process's certificate chain and key (PEM). Setting them
	// turns TLS on for the gRPC and HTTP listeners and is the client certificate the process
	// presents to other services when they ask for one.
	CertFile string `yaml:"cert"`
	KeyFile  string `yaml:"key"`
	// ClientCAFile, when set, makes the gRPC listener require client certificates signed by
	// these CAs (mutual TLS); the HTTP listener verifies one when given (probes send none).
	ClientCAFile string `yaml:"client_ca"`
	// CAFile verifies the services this process calls (default: the system's roots).
	CAFile string `yaml:"ca"`
}

// RegisterFlags registers the TLS flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.CertFile, "tls-cert", "", "certificate chain (PEM) of the gRPC and HTTP listeners; turns TLS on")
	fs.StringVar(&c.KeyFile, "tls-key", "", "private key (PEM) of -tls-cert")
	fs.StringVar(&c.ClientCAFile, "tls-client-ca", "", "CA certificates (PEM) that sign client certificates: the gRPC listener requires one (mutual TLS)")
	fs.StringVar(&c.CAFile, "tls-ca", "", "CA certificates (PEM) that verify the services this process calls (default: system roots)")
}

// Enabled reports whether the listeners use TLS.
func (c Config) Enabled() bool { return c.CertFile != "" }

// Validate checks that the files are given together and can be read.
func (c Config) Validate() error {
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("tls: -tls-cert and -tls-key go together"))
	}
	if c.ClientCAFile != "" && c.CertFile == "" {
		errs = append(errs, errors.New("tls_client_ca: needs -tls-cert and -tls-key (mutual TLS is TLS)"))
	}
	if c.CertFile != "" && c.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("tls: %s / %s: %w", c.CertFile, c.KeyFile, err))
		}
	}
	for key, f := range map[string]string{"tls_client_ca": c.ClientCAFile, "tls_ca": c.CAFile} {
		if f != "" {
			if _, err := loadPool(f); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
			}
		}
	}
	return errors.Join(errs...)
}

func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return pool, nil
}

// keyPair serves the certificate, read again when its files change.
type keyPair struct {
	cert, key string
	mu        sync.Mutex
	checked   time.Time
	mod       [2]time.Time
	pair      *tls.Certificate
}

func newKeyPair(cert, key string) (*keyPair, error) {
	k := &keyPair{cert: cert, key: key}
	if _, err := k.get(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pair != nil && time.Since(k.checked) < time.Second {
		return k.pair, nil
	}
	k.checked = time.Now()
	ci, err1 := os.Stat(k.cert)
	ki, err2 := os.Stat(k.key)
	if err := errors.Join(err1, err2); err != nil {
		if k.pair != nil {
			return k.pair, nil // keep serving what was loaded
		}
		return nil, err
	}
	mod := [2]time.Time{ci.ModTime(), ki.ModTime()}
	if k.pair != nil && mod == k.mod {
		return k.pair, nil
	}
	pair, err := tls.LoadX509KeyPair(k.cert, k.key)
	if err != nil {
		if k.pair != nil {
			return k.pair, nil // a half-written renewal: keep the old one until it is whole
		}
		return nil, err
	}
	if pair.Leaf == nil && len(pair.Certificate) > 0 {
		pair.Leaf, _ = x509.ParseCertificate(pair.Certificate[0])
	}
	k.pair, k.mod = &pair, mod
	return k.pair, nil
}

// Server is the configuration of a listener; requireClientCert asks for a client certificate
// signed by ClientCAFile (otherwise one is verified when given).
func (c Config) Server(requireClientCert bool) (*tls.Config, error) {
	if !c.Enabled() {
		return nil, nil
	}
	kp, err := newKeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
	}
	if c.ClientCAFile != "" {
		pool, err := loadPool(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls_client_ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if requireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

// Client is the configuration for calling other Sluice services: their certificates verified
// with CAFile (or the system roots), this process's certificate presented when asked.
func (c Config) Client() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls_ca: %w", err)
		}
		cfg.RootCAs = pool
	}
	if c.Enabled() {
		kp, err := newKeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }
	}
	return cfg, nil
}

// Loopback is the configuration for a process calling its own listener: the server must
// present exactly the certificate this process serves (pinned), whatever names it holds.
func (c Config) Loopback() (*tls.Config, error) {
	cfg, err := c.Client()
	if err != nil {
		return nil, err
	}
	kp, err := newKeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	cfg.RootCAs = nil
	// Verification is the pin below: the leaf must be this process's own certificate.
	cfg.InsecureSkipVerify = true //nolint:gosec // replaced by VerifyPeerCertificate's pin
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		own, err := kp.get()
		if err != nil {
			return err
		}
		if len(raw) == 0 || len(own.Certificate) == 0 || !bytes.Equal(raw[0], own.Certificate[0]) {
			return errors.New("tls: the local server did not present this process's certificate")
		}
		return nil
	}
	return cfg, nil
}
