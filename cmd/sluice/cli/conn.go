package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// addrs splits the --addr list.
func (g Globals) addrs() []string {
	var out []string
	for _, a := range strings.Split(g.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// bearer is per-call credentials sending the token.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: sluiced on loopback serves plaintext; `sluice status` says
// when a connection is not encrypted.
func (b bearer) RequireTransportSecurity() bool { return false }

// connSettings are what a connection to one address uses.
type connSettings struct {
	token    string
	tokenSrc string
	tls      bool
	tlsCA    string
	tlsCert  string
	tlsKey   string
}

// settingsFor resolves the token and TLS for addr: flags and environment first, then what
// `sluice auth` saved for the address, then (loopback only) the operator token of a
// `sluiced -dev` running on this machine.
func (e *Env) settingsFor(addr string) connSettings {
	g := e.Globals
	cs := connSettings{token: g.Token, tokenSrc: "--token", tls: g.TLS || g.TLSCA != "" || g.TLSCert != "", tlsCA: g.TLSCA, tlsCert: g.TLSCert, tlsKey: g.TLSKey}
	saved, _ := loadCredentials()
	if s, ok := saved.Servers[normalizeAddr(addr)]; ok {
		if cs.token == "" {
			cs.token, cs.tokenSrc = s.Token, "sluice auth"
		}
		if !cs.tls && (s.TLS || s.TLSCA != "") {
			cs.tls, cs.tlsCA = true, s.TLSCA
		}
	}
	if cs.token == "" {
		if t, ok := devToken(addr); ok {
			cs.token, cs.tokenSrc = t, "sluiced -dev"
		}
	}
	return cs
}

func (cs connSettings) transport() (credentials.TransportCredentials, error) {
	if !cs.tls {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cs.tlsCA != "" {
		b, err := os.ReadFile(cs.tlsCA)
		if err != nil {
			return nil, usageError("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, usageError("--tls-ca %s: no PEM certificate found", cs.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if cs.tlsCert != "" {
		pair, err := tls.LoadX509KeyPair(cs.tlsCert, cs.tlsKey)
		if err != nil {
			return nil, usageError("--tls-cert/--tls-key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}

func (e *Env) dial(addr string) (*grpc.ClientConn, error) {
	cs := e.settingsFor(addr)
	creds, err := cs.transport()
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if cs.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(cs.token)))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to sluiced at %s: %w", addr, err)
	}
	return cc, nil
}

// serviceConn connects to the address that serves the gRPC service named service: the only
// one, or in split mode one whose health service says SERVING. Replicas come and go (one is
// killed, another waits a moment for NATS or ClickHouse), so when none serves it asks them
// all again, with a backoff, until --timeout has passed; then it names what each one said.
// healthCheckTimeout bounds one replica's answer to a health check.
const healthCheckTimeout = 5 * time.Second

func serviceConn(ctx context.Context, env *Env, service string) (*grpc.ClientConn, error) {
	addrs := env.Globals.addrs()
	if len(addrs) == 0 {
		return nil, usageError("--addr: no address")
	}
	if len(addrs) == 1 {
		return env.dial(addrs[0])
	}
	conns := make([]*grpc.ClientConn, len(addrs))
	defer func() {
		for _, cc := range conns {
			if cc != nil {
				_ = cc.Close()
			}
		}
	}()
	for i, addr := range addrs {
		cc, err := env.dial(addr)
		if err != nil {
			return nil, err
		}
		conns[i] = cc
	}
	wctx, cancel := context.WithTimeout(ctx, env.Globals.Timeout)
	defer cancel()
	said := make([]string, len(addrs))
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		for i, cc := range conns {
			// One replica that does not answer does not hold up asking the others.
			cctx, ccancel := context.WithTimeout(wctx, healthCheckTimeout)
			resp, err := healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{Service: service})
			ccancel()
			switch {
			case err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING:
				conns[i] = nil // the caller's now
				return cc, nil
			case err == nil:
				said[i] = addrs[i] + ": " + resp.GetStatus().String()
			case wctx.Err() == nil || said[i] == "":
				said[i] = addrs[i] + ": " + status.Convert(err).Message()
			}
		}
		select {
		case <-wctx.Done():
			return nil, fmt.Errorf("no address in --addr serves %s within --timeout %s (%s)", service, env.Globals.Timeout, strings.Join(said, "; "))
		case <-time.After(wait):
		}
	}
}

// callError turns a gRPC error into the CLI's message: the server's text, which already says
// what is wrong and what to do, with a hint for the mistakes of connecting.
func callError(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		return &ExitError{Code: 1, Err: fmt.Errorf("sluiced is not reachable: %s%s", msg, tlsHint(msg))}
	case codes.Unauthenticated:
		msg += " (give a token with --token or SLUICE_TOKEN, or save one with `sluice auth`)"
	}
	return &ExitError{Code: 1, Err: fmt.Errorf("%s", msg)}
}

// tlsHint recognises the errors of a plaintext client talking to a TLS server and the reverse.
func tlsHint(msg string) string {
	switch {
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return " (the server speaks plaintext: drop --tls)"
	case strings.Contains(msg, "connection closed before server preface received"), strings.Contains(msg, "tls: "):
		return " (if the server uses TLS, connect with --tls or --tls-ca)"
	}
	return ""
}
