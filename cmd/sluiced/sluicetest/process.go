package sluicetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binaries builds bin/sluiced and bin/sluice once per test binary and returns their paths.
func Binaries(t testing.TB) (sluiced, sluice string) {
	t.Helper()
	root := RepoRoot(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "sluicetest-bin-")
		if buildErr != nil {
			return
		}
		for _, b := range []string{"sluiced", "sluice"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, b), "./cmd/"+b)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %w\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "sluiced"), filepath.Join(buildDir, "sluice")
}

// CleanupBinaries removes what Binaries built; call it from TestMain after m.Run.
func CleanupBinaries() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}

// FreeAddr returns a loopback address for a process the test starts, with a port that is
// free now. The port is taken below the kernel's ephemeral range (ip_local_port_range), so that
// no outgoing connection of this or another program is given it before the process binds it
// (a port from ":0" is an ephemeral one, and was seen taken that way: "bind: address already in
// use"), and this test binary never hands out the same port twice.
func FreeAddr(t testing.TB) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	low, high := portRange()
	span := high - low
	start := mrand.IntN(span)
	for i := range span {
		port := low + (start+i)%span
		if portsGiven[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = ln.Close()
		portsGiven[port] = true
		return ln.Addr().String()
	}
	t.Fatalf("no free port in %d-%d", low, high)
	return ""
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// portRange is where FreeAddr looks: from 10000 up to the start of the ephemeral range (or
// 20000-30000 when the range cannot be read or leaves too little below it).
func portRange() (low, high int) {
	low, high = 20000, 30000
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return low, high
	}
	var eLow, eHigh int
	if _, err := fmt.Sscan(string(b), &eLow, &eHigh); err != nil || eLow < 12000 {
		return low, high
	}
	return 10000, eLow
}

// Process is a program started by a test, with its output in a log file.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Log  string
	done chan struct{}
	err  error
}

// StartProcess starts bin with args; the process is killed when the test ends if still running,
// and its log is printed if the test failed.
func StartProcess(t testing.TB, name, bin string, args ...string) *Process {
	t.Helper()
	return StartProcessEnv(t, name, nil, bin, args...)
}

// StartProcessEnv is StartProcess with "KEY=value" entries added to the test's environment.
func StartProcessEnv(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		// SLUICE_TEST_LOGDIR keeps every process's whole log (name-pid.log) there.
		if d := os.Getenv("SLUICE_TEST_LOGDIR"); d != "" {
			b, _ := os.ReadFile(logPath)
			_ = os.WriteFile(filepath.Join(d, fmt.Sprintf("%s-%d.log", name, cmd.Process.Pid)), b, 0o644)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", name, tail(string(b), 100))
		}
	})
	return p
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to end within timeout and returns its exit code.
func (p *Process) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s", p.Name, timeout)
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) { _ = p.Cmd.Process.Signal(sig) }

// Kill kills the process (SIGKILL) and waits for it.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Output returns the log so far.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// WaitServing polls the gRPC health of service ("" for the whole process) at addr.
func WaitServing(t testing.TB, addr, service string, timeout time.Duration, p *Process) {
	t.Helper()
	waitServing(t, addr, service, timeout, p, nil)
}

func waitServing(t testing.TB, addr, service string, timeout time.Duration, p *Process, tlsCfg *tls.Config) {
	t.Helper()
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cc.Close() }()
	hc := healthpb.NewHealthClient(cc)
	Eventually(t, timeout, fmt.Sprintf("%s serving at %s", p.Name, addr), func() bool {
		if p != nil && p.Exited() {
			t.Fatalf("%s exited: %v\n%s", p.Name, p.err, tail(p.Output(), 50))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
}

// NATSServer starts the nats-server program (Debian's package) with JetStream on a free port
// and returns its URL. With noJetStream the server runs without JetStream.
func NATSServer(t testing.TB, noJetStream bool) string {
	t.Helper()
	return StartNATSServer(t, NATSOptions{NoJetStream: noJetStream}).URL
}

// NATSOptions configure a nats-server process.
type NATSOptions struct {
	NoJetStream bool
	// User and Password, when set, are required of every client.
	User, Password string
	// PKI, when set, makes the server take TLS connections only (tls:// URL) with its server
	// certificate.
	PKI *PKI
}

// NATS is a running nats-server process, which the test may kill and start again on the same
// port and JetStream store: for NATS restarts.
type NATS struct {
	URL  string
	Proc *Process

	bin   string
	args  []string
	port  string
	copts []nats.Option
	mu    sync.Mutex
	count int
}

// StartNATS starts a nats-server with JetStream (unless noJetStream) on a free port.
func StartNATS(t testing.TB, noJetStream bool) *NATS {
	t.Helper()
	return StartNATSServer(t, NATSOptions{NoJetStream: noJetStream})
}

// StartNATSServer starts the nats-server program with o on a free loopback port.
func StartNATSServer(t testing.TB, o NATSOptions) *NATS {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatalf("nats-server is not installed: run `make deps` (apt-get install -y nats-server)")
	}
	addr := FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-a", host, "-p", port}
	if !o.NoJetStream {
		args = append(args, "-js", "-sd", t.TempDir())
	}
	if o.User != "" {
		args = append(args, "--user", o.User, "--pass", o.Password)
	}
	url := "nats://" + addr
	copts := []nats.Option{nats.Timeout(time.Second)}
	if o.User != "" {
		copts = append(copts, nats.UserInfo(o.User, o.Password))
	}
	if o.PKI != nil {
		args = append(args, "--tls", "--tlscert", o.PKI.ServerCert, "--tlskey", o.PKI.ServerKey)
		url = "tls://" + addr
		copts = append(copts, nats.RootCAs(o.PKI.CA))
	}
	n := &NATS{URL: url, bin: bin, args: args, port: port, copts: copts}
	n.Start(t)
	return n
}

// Kill kills the server (SIGKILL) and waits until it is gone.
func (n *NATS) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.Proc != nil {
		n.Proc.Kill()
		n.Proc = nil
	}
}

// Start starts the server (again, after Kill: same port and store) and waits until it accepts
// connections.
func (n *NATS) Start(t testing.TB) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.Proc != nil {
		return
	}
	n.count++
	name := "nats-server-" + n.port
	if n.count > 1 {
		name += fmt.Sprintf("-%d", n.count)
	}
	p := StartProcess(t, name, n.bin, n.args...)
	n.Proc = p
	Eventually(t, 20*time.Second, "nats-server ready", func() bool {
		if p.Exited() {
			t.Fatalf("nats-server exited:\n%s", p.Output())
		}
		nc, err := nats.Connect(n.URL, n.copts...)
		if err != nil {
			return false
		}
		nc.Close()
		return true
	})
}

// Split is Sluice in split mode: one OS process per service.
type Split struct {
	NATSURL string
	// Addrs maps each service to its process's gRPC address.
	Addrs map[string]string
	Procs map[string]*Process
	// Executors are the executor processes: Procs["executor"], then those AddExecutor started.
	Executors []*Process
	// CLI is the path of the sluice binary.
	CLI string
	// Token is the operator token the catalog wrote on first start.
	Token string
	// PKI holds the certificates when the split runs with TLS; TLS is then the configuration
	// of a client of the services (it presents the client certificate).
	PKI *PKI
	TLS *tls.Config
	// EventsAddr is the ingest process's Events API address.
	EventsAddr string

	sluiced    string
	extra      []string
	catalogDir string
}

// SplitServices are the services StartSplit runs, one process each.
var SplitServices = []string{"catalog", "scheduler", "executor", "opslog", "ingest"}

// SplitOptions configure StartSplitWith.
type SplitOptions struct {
	// TLS runs every gRPC and HTTP listener with TLS and mutual TLS between the services
	// (certificates made for the test), and NATS over TLS.
	TLS bool
	// NATSAuth makes the nats-server require a user and password.
	NATSAuth bool
	// NATS is a nats-server the test controls (to kill and start again); nil starts one.
	NATS *NATS
	// Extra flags for every process.
	Extra []string
}

// StartSplit starts a nats-server process and the four services as separate sluiced processes;
// extra flags are passed to every process.
func StartSplit(t testing.TB, extra ...string) *Split {
	t.Helper()
	return StartSplitWith(t, SplitOptions{Extra: extra})
}

// StartSplitWith starts split mode with o. Every process reads one service credential file.
func StartSplitWith(t testing.TB, o SplitOptions) *Split {
	t.Helper()
	sluiced, cli := Binaries(t)
	s := &Split{Addrs: map[string]string{}, Procs: map[string]*Process{}, CLI: cli, sluiced: sluiced}
	no := NATSOptions{}
	if o.NATSAuth {
		no.User, no.Password = "sluice", randomText(t)
	}
	if o.TLS {
		s.PKI = NewPKI(t)
		no.PKI = s.PKI
		s.TLS = s.PKI.ClientTLS(t)
	}
	if o.NATS != nil {
		s.NATSURL = o.NATS.URL
	} else {
		s.NATSURL = StartNATSServer(t, no).URL
	}
	serviceToken := filepath.Join(t.TempDir(), "service-token")
	if err := os.WriteFile(serviceToken, []byte(randomText(t)+randomText(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	s.extra = append(s.extra, "-auth.service-token-file", serviceToken)
	if o.NATSAuth {
		s.extra = append(s.extra, "-nats-user", no.User, "-nats-password", no.Password)
	}
	if o.TLS {
		s.extra = append(s.extra, "-tls-cert", s.PKI.ServerCert, "-tls-key", s.PKI.ServerKey,
			"-tls-client-ca", s.PKI.CA, "-tls-ca", s.PKI.CA, "-nats-tls-ca", s.PKI.CA)
	}
	s.extra = append(s.extra, o.Extra...)
	for _, svc := range SplitServices {
		s.Addrs[svc] = FreeAddr(t)
	}
	s.catalogDir = t.TempDir()
	s.EventsAddr = FreeAddr(t)
	for _, svc := range SplitServices {
		s.Procs[svc] = s.start(t, svc, "sluiced-"+svc, s.Addrs[svc])
	}
	for _, svc := range SplitServices {
		waitServing(t, s.Addrs[svc], "", 60*time.Second, s.Procs[svc], s.TLS)
	}
	s.Token = ReadOperatorToken(t, filepath.Join(s.catalogDir, "token"), s.Procs["catalog"])
	s.Executors = []*Process{s.Procs["executor"]}
	return s
}

// Clients returns clients of one service's process carrying the operator token.
func (s *Split) Clients(t testing.TB, svc string) *Clients {
	t.Helper()
	return newClients(t, s.Addrs[svc], s.Token, s.TLS)
}

// CLIEnv is the environment that points the sluice CLI at the split with the operator token
// (and the test certificates when it runs with TLS).
func (s *Split) CLIEnv() []string {
	env := append(os.Environ(), "SLUICE_TOKEN="+s.Token, "SLUICE_ADDR="+s.AddrList())
	if s.PKI != nil {
		env = append(env, "SLUICE_TLS_CA="+s.PKI.CA, "SLUICE_TLS_CERT="+s.PKI.ClientCert, "SLUICE_TLS_KEY="+s.PKI.ClientKey)
	}
	return env
}

func randomText(t testing.TB) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// AddExecutor starts one more executor process, with the same flags, and waits until it serves.
func (s *Split) AddExecutor(t testing.TB) *Process {
	t.Helper()
	addr := FreeAddr(t)
	p := s.start(t, "executor", fmt.Sprintf("sluiced-executor-%d", len(s.Executors)+1), addr)
	waitServing(t, addr, "", 60*time.Second, p, s.TLS)
	s.Executors = append(s.Executors, p)
	return p
}

func (s *Split) start(t testing.TB, svc, name, addr string) *Process {
	t.Helper()
	return s.startWithEvents(t, svc, name, addr, s.EventsAddr, nil)
}

func (s *Split) startWithEvents(t testing.TB, svc, name, addr, eventsAddr string, env []string) *Process {
	t.Helper()
	dataDir := t.TempDir()
	if svc == "catalog" && s.catalogDir != "" {
		dataDir = s.catalogDir
	}
	args := []string{
		"-target", svc,
		"-grpc-addr", addr,
		"-http-addr", "127.0.0.1:0", "-events-addr", "127.0.0.1:0",
		"-nats-url", s.NATSURL,
		"-data-dir", dataDir,
		"-catalog-addr", s.Addrs["catalog"],
		"-log-level", "debug",
	}
	if svc == "ingest" {
		args = append(args, "-events-addr", eventsAddr)
	}
	args = append(args, EmbeddedLibArgs()...)
	return StartProcessEnv(t, name, env, s.sluiced, append(args, s.extra...)...)
}

// IngestReplica is one more ingest process beside the split's own.
type IngestReplica struct {
	Proc       *Process
	Addr       string
	EventsAddr string
}

// AddIngest starts one more ingest process (its own gRPC and Events API addresses) and waits
// until it serves.
func (s *Split) AddIngest(t testing.TB, n int) *IngestReplica {
	t.Helper()
	r := &IngestReplica{Addr: FreeAddr(t), EventsAddr: FreeAddr(t)}
	r.Proc = s.startWithEvents(t, "ingest", fmt.Sprintf("sluiced-ingest-replica-%d", n), r.Addr, r.EventsAddr, nil)
	waitServing(t, r.Addr, "", 60*time.Second, r.Proc, s.TLS)
	return r
}

// RestartIngest kills a replica with SIGKILL and starts it again on the same addresses.
func (s *Split) RestartIngest(t testing.TB, r *IngestReplica, n int) {
	t.Helper()
	r.Proc.Kill()
	r.Proc = s.startWithEvents(t, "ingest", fmt.Sprintf("sluiced-ingest-replica-%d", n), r.Addr, r.EventsAddr, nil)
	waitServing(t, r.Addr, "", 60*time.Second, r.Proc, s.TLS)
}

// Restart kills a service's process with SIGKILL and starts it again with the same flags and
// addresses, then waits until it serves.
func (s *Split) Restart(t testing.TB, svc string, n int) *Process {
	t.Helper()
	s.Procs[svc].Kill()
	p := s.start(t, svc, fmt.Sprintf("sluiced-%s-%d", svc, n), s.Addrs[svc])
	s.Procs[svc] = p
	if svc == "executor" {
		s.Executors[0] = p
	}
	waitServing(t, s.Addrs[svc], "", 60*time.Second, p, s.TLS)
	return p
}

// AddrList is the --addr value that reaches every service.
func (s *Split) AddrList() string {
	out := ""
	for i, svc := range SplitServices {
		if i > 0 {
			out += ","
		}
		out += s.Addrs[svc]
	}
	return out
}

// Port returns the port of a host:port address.
func Port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
