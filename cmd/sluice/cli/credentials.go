package cli

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// Saved credentials live in the user's configuration directory (like the hosted CLI's `tb auth`,
// but per user rather than per folder, so a token never lands in a project's repository):
//
//	<config dir>/sluice/credentials.json   {"servers": {"host:port": {"token": "...", "tls_ca": "..."}}}  mode 0600
//	<config dir>/sluice/dev.json           {"host:port": "/abs/path/of/<data-dir>/token"}  written by `sluiced -dev`
//
// <config dir> is $XDG_CONFIG_HOME, or ~/.config.

type savedServer struct {
	Token string `json:"token"`
	TLS   bool   `json:"tls,omitempty"`
	TLSCA string `json:"tls_ca,omitempty"`
}

type savedCredentials struct {
	Servers map[string]savedServer `json:"servers"`
}

func configDir() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "sluice"), nil
}

// CredentialsPath is where `sluice auth` saves tokens.
func CredentialsPath() (string, error) {
	d, err := configDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "credentials.json"), nil
}

func loadCredentials() (savedCredentials, error) {
	c := savedCredentials{Servers: map[string]savedServer{}}
	p, err := CredentialsPath()
	if err != nil {
		return c, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, err
	}
	if c.Servers == nil {
		c.Servers = map[string]savedServer{}
	}
	return c, nil
}

func saveCredentials(c savedCredentials) (string, error) {
	p, err := CredentialsPath()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return "", err
	}
	return p, os.Rename(tmp, p)
}

// normalizeAddr makes the spellings of one address equal: localhost is 127.0.0.1.
func normalizeAddr(addr string) string {
	host, port, err := net.SplitHostPort(strings.TrimSpace(addr))
	if err != nil {
		return strings.ToLower(strings.TrimSpace(addr))
	}
	host = strings.ToLower(host)
	if host == "localhost" || host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// devToken finds the operator token of a `sluiced -dev` serving addr on this machine.
func devToken(addr string) (string, bool) {
	host, _, err := net.SplitHostPort(normalizeAddr(addr))
	if err != nil {
		return "", false
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", false
	}
	d, err := configDir()
	if err != nil {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(d, "dev.json"))
	if err != nil {
		return "", false
	}
	var m map[string]string
	if json.Unmarshal(b, &m) != nil {
		return "", false
	}
	path, ok := m[normalizeAddr(addr)]
	if !ok {
		return "", false
	}
	t, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	tok := strings.TrimSpace(string(t))
	return tok, tok != ""
}
