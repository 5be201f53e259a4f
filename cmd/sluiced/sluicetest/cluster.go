package sluicetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/natsx"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// ClusterOptions size a Cluster.
type ClusterOptions struct {
	NATSNodes                                int
	Catalogs, Schedulers, Executors, OpsLogs int
	// Extra flags for every sluiced process.
	Extra []string
}

// Cluster is Sluice as a cluster on this machine, every part its own process with its own
// address (network namespaces where the machine allows them, see network): a nats-server
// cluster with JetStream (streams and buckets with as many replicas as nodes, up to 3), a
// clickhouse-server, and sluiced processes of each service. The catalogs sit behind one
// address, as behind a Kubernetes Service.
type Cluster struct {
	// Namespaces reports whether hosts are network namespaces (else loopback).
	Namespaces bool
	NATS       []*NATSNode
	// NATSURL lists every node's client URL.
	NATSURL string
	// ClickHouse is how to reach the server from the test.
	ClickHouse warehouse.NativeConfig
	// CatalogAddr is the address in front of the catalogs.
	CatalogAddr string
	Services    []*Service
	// CLI is the path of the sluice binary.
	CLI string
	// Token is the operator token (the first catalog wrote it on its first start).
	Token string

	net     *network
	sluiced string
	extra   []string
}

// NATSNode is one nats-server of the cluster.
type NATSNode struct {
	Name      string
	ClientURL string
	Proc      *Process
	host      *host
	args      []string
}

// Service is one sluiced process.
type Service struct {
	// Name is target-n, for example scheduler-2.
	Name, Target string
	// Addr is its gRPC address.
	Addr    string
	Proc    *Process
	host    *host
	args    []string
	dataDir string
}

// PID is the process id (the same process runs inside its network namespace).
func (s *Service) PID() int { return s.Proc.Cmd.Process.Pid }

// StartCluster starts the cluster and waits until every process serves; everything is
// stopped and removed when the test ends.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	sluiced, cli := Binaries(t)
	c := &Cluster{net: newNetwork(t), sluiced: sluiced, CLI: cli, extra: o.Extra}
	c.Namespaces = c.net.ns
	c.startNATS(t, o.NATSNodes)
	c.startClickHouse(t)
	var catalogs []string
	type planned struct{ target, name string }
	var plan []planned
	counts := map[string]int{"catalog": o.Catalogs, "scheduler": o.Schedulers, "executor": o.Executors, "opslog": o.OpsLogs}
	for _, target := range SplitServices {
		for i := 1; i <= counts[target]; i++ {
			plan = append(plan, planned{target, fmt.Sprintf("%s-%d", target, i)})
		}
	}
	for _, p := range plan {
		h := c.net.addHost(t, p.name, false)
		s := &Service{Name: p.name, Target: p.target, host: h, Addr: c.addr(t, h, 7181)}
		c.Services = append(c.Services, s)
		if p.target == "catalog" {
			catalogs = append(catalogs, s.Addr)
		}
	}
	lb := startBalancer(t, net.JoinHostPort(c.net.root, "0"), catalogs)
	c.CatalogAddr = lb.addr()
	replicas := min(len(c.NATS), 3)
	// Every process reads one service credential; clients use the operator token.
	serviceToken := filepath.Join(t.TempDir(), "service-token")
	if err := os.WriteFile(serviceToken, []byte(randomText(t)+randomText(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Services {
		s.dataDir = t.TempDir()
		s.args = []string{
			"-target", s.Target,
			"-grpc-addr", s.Addr,
			"-http-addr", c.addr(t, s.host, 7182),
			"-nats-url", c.NATSURL,
			"-nats-replicas", strconv.Itoa(replicas),
			"-clickhouse-addr", strings.Join(c.ClickHouse.Addrs, ","),
			"-catalog-addr", c.CatalogAddr,
			"-data-dir", s.dataDir,
			"-auth.service-token-file", serviceToken,
			"-log-level", "info",
		}
		s.args = append(s.args, c.extra...)
	}
	// The first catalog alone (it writes the operator token), then the other catalogs, then
	// the rest: they call the catalogs at start.
	first := c.Of("catalog")[0]
	c.start(t, first)
	WaitServing(t, first.Addr, "", 120*time.Second, first.Proc)
	c.Token = ReadOperatorToken(t, filepath.Join(first.dataDir, "token"), first.Proc)
	for _, catalogs := range []bool{true, false} {
		var started []*Service
		for _, s := range c.Services {
			if s != first && (s.Target == "catalog") == catalogs {
				c.start(t, s)
				started = append(started, s)
			}
		}
		for _, s := range started {
			WaitServing(t, s.Addr, "", 120*time.Second, s.Proc)
		}
	}
	return c
}

// CLIEnv is the environment that points the sluice CLI at the cluster with the operator token.
func (c *Cluster) CLIEnv() []string {
	return append(os.Environ(), "SLUICE_TOKEN="+c.Token, "SLUICE_ADDR="+c.AddrList())
}

// addr is the host's address with port: the well-known port in a namespace of its own, a free
// port on loopback.
func (c *Cluster) addr(t testing.TB, h *host, port int) string {
	if c.net.ns {
		return net.JoinHostPort(h.addr, strconv.Itoa(port))
	}
	return FreeAddr(t)
}

func (c *Cluster) start(t testing.TB, s *Service) {
	t.Helper()
	bin, args := s.host.command(c.sluiced, s.args...)
	s.Proc = StartProcess(t, s.Name, bin, args...)
}

// Of returns the services of a target.
func (c *Cluster) Of(target string) []*Service {
	var out []*Service
	for _, s := range c.Services {
		if s.Target == target {
			out = append(out, s)
		}
	}
	return out
}

// Kill kills a service's process (SIGKILL).
func (c *Cluster) Kill(s *Service) { s.Proc.Kill() }

// Restart starts a service again with the same flags and waits until it serves.
func (c *Cluster) Restart(t testing.TB, s *Service) {
	t.Helper()
	s.Proc.Kill()
	c.start(t, s)
	WaitServing(t, s.Addr, "", 120*time.Second, s.Proc)
}

// AddrList is a --addr value for the CLI: the catalogs' address and every other service.
func (c *Cluster) AddrList() string {
	addrs := []string{c.CatalogAddr}
	for _, s := range c.Services {
		if s.Target != "catalog" {
			addrs = append(addrs, s.Addr)
		}
	}
	return strings.Join(addrs, ",")
}

func (c *Cluster) startNATS(t testing.TB, n int) {
	t.Helper()
	bin := NATSServerBinary(t)
	var routes, clients []string
	for i := 1; i <= n; i++ {
		h := c.net.addHost(t, fmt.Sprintf("nats-%d", i), true)
		node := &NATSNode{Name: fmt.Sprintf("nats-%d", i), host: h}
		client := c.addr(t, h, 4222)
		route := net.JoinHostPort(h.routeAddr, "6222")
		if !c.net.ns {
			route = FreeAddr(t)
		}
		node.ClientURL = "nats://" + client
		clients = append(clients, node.ClientURL)
		routes = append(routes, "nats://"+route)
		chost, cport, _ := net.SplitHostPort(client)
		node.args = []string{"-n", node.Name, "-a", chost, "-p", cport, "-js", "-sd", t.TempDir()}
		if n > 1 {
			node.args = append(node.args, "--cluster_name", "sluice", "--cluster", "nats://"+route, "--cluster_advertise", route)
		}
		c.NATS = append(c.NATS, node)
	}
	for _, node := range c.NATS {
		// One node is a single server: JetStream in a cluster of one waits for routes forever.
		if n > 1 {
			node.args = append(node.args, "--routes", strings.Join(routes, ","))
		}
		c.runNATS(t, node, bin)
	}
	c.NATSURL = strings.Join(clients, ",")
	c.waitJetStream(t)
}

func (c *Cluster) runNATS(t testing.TB, node *NATSNode, bin string) {
	t.Helper()
	b, args := node.host.command(bin, node.args...)
	node.Proc = StartProcess(t, node.Name, b, args...)
}

// waitJetStream waits until the cluster answers JetStream requests (its meta leader elected).
func (c *Cluster) waitJetStream(t testing.TB) {
	t.Helper()
	nc, err := nats.Connect(c.NATSURL, nats.Timeout(2*time.Second), nats.MaxReconnects(-1))
	if err != nil {
		// The servers may not listen yet: poll the connection too.
		Eventually(t, 60*time.Second, "a nats-server accepting clients", func() bool {
			nc, err = nats.Connect(c.NATSURL, nats.Timeout(2*time.Second), nats.MaxReconnects(-1))
			return err == nil
		})
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 90*time.Second, "the NATS cluster's JetStream", func() bool {
		for _, node := range c.NATS {
			if node.Proc.Exited() {
				t.Fatalf("%s exited:\n%s", node.Name, tail(node.Proc.Output(), 30))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
}

// KillNATS kills a node (SIGKILL).
func (c *Cluster) KillNATS(i int) { c.NATS[i].Proc.Kill() }

// StartNATS starts a killed node again on its data.
func (c *Cluster) StartNATS(t testing.TB, i int) {
	t.Helper()
	c.runNATS(t, c.NATS[i], NATSServerBinary(t))
	c.waitNode(t, i)
}

var (
	natsBuildOnce sync.Once
	natsBin       string
	natsBuildErr  error
)

// NATSServerBinary builds, once per test binary, the nats-server program of the version Sluice
// embeds (the platform module's nats-server/v2), for clusters. Debian's nats-server (2.9.10)
// is not used for them: in a cluster it loses concurrent compare-and-set updates of a
// key-value bucket, which job records rely on (see platform/natsx).
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	natsBuildOnce.Do(func() {
		sluiced, _ := Binaries(t)
		natsBin = filepath.Join(filepath.Dir(sluiced), "nats-server")
		cmd := exec.Command("go", "build", "-o", natsBin, "github.com/nats-io/nats-server/v2")
		cmd.Dir = filepath.Join(RepoRoot(t), "platform")
		if out, err := cmd.CombinedOutput(); err != nil {
			natsBuildErr = fmt.Errorf("go build nats-server: %w\n%s", err, out)
		}
	})
	if natsBuildErr != nil {
		t.Fatal(natsBuildErr)
	}
	return natsBin
}

// CutOffNATS takes a node's route interface down: it loses its peers, its clients keep it.
// It needs network namespaces; it reports false without them.
func (c *Cluster) CutOffNATS(t testing.TB, i int) bool {
	t.Helper()
	if !c.net.ns {
		return false
	}
	c.NATS[i].host.setRoutes(t, false)
	return true
}

// ReconnectNATS brings a node's route interface back and waits until the node serves
// JetStream again.
func (c *Cluster) ReconnectNATS(t testing.TB, i int) {
	t.Helper()
	if c.net.ns {
		c.NATS[i].host.setRoutes(t, true)
		c.waitNode(t, i)
	}
}

// waitNode waits until a client of node i gets answers from JetStream (a node that rejoins
// answers "temporarily unavailable" until it has caught up).
func (c *Cluster) waitNode(t testing.TB, i int) {
	t.Helper()
	node := c.NATS[i]
	Eventually(t, 2*time.Minute, node.Name+" serving JetStream", func() bool {
		if node.Proc.Exited() {
			t.Fatalf("%s exited:\n%s", node.Name, tail(node.Proc.Output(), 30))
		}
		nc, err := nats.Connect(node.ClientURL, nats.Timeout(2*time.Second), nats.NoReconnect())
		if err != nil {
			return false
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err == nil
	})
}

func (c *Cluster) startClickHouse(t testing.TB) {
	t.Helper()
	bin := warehousetest.ServerBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("clickhouse-server not found (%s): run `make deps`", bin)
	}
	h := c.net.addHost(t, "clickhouse", false)
	dir := t.TempDir()
	ports := []int{9000, 8123, 9009}
	if !c.net.ns {
		ports = nil
		for range 3 {
			_, p, _ := net.SplitHostPort(FreeAddr(t))
			n, _ := strconv.Atoi(p)
			ports = append(ports, n)
		}
	}
	if err := warehousetest.WriteServerConfig(dir, h.addr, ports); err != nil {
		t.Fatal(err)
	}
	b, args := h.command(bin, "--config-file="+dir+"/config.xml")
	p := StartProcess(t, "clickhouse-server", b, args...)
	c.ClickHouse = warehouse.NativeConfig{Addrs: []string{net.JoinHostPort(h.addr, strconv.Itoa(ports[0]))}, Database: "default", Username: "default",
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Minute, MaxOpenConns: 4, MaxIdleConns: 4}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "log", "clickhouse-server.err.log"))
			t.Logf("clickhouse-server errors:\n%s", tail(string(b), 30))
		}
	})
	var last error
	deadline := time.Now().Add(60 * time.Second)
	for {
		if p.Exited() {
			t.Fatalf("clickhouse-server exited:\n%s", tail(p.Output(), 30))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := warehouse.OpenNative(ctx, c.ClickHouse)
		if err == nil {
			_, err = conn.Query(ctx, "SELECT 1")
			_ = conn.Close()
		}
		cancel()
		if err == nil {
			break
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("clickhouse-server at %s did not answer within 60s: %v", c.ClickHouse.Addrs[0], last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Warehouse connects the test to the cluster's ClickHouse.
func (c *Cluster) Warehouse(t testing.TB) warehouse.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := warehouse.OpenNative(ctx, c.ClickHouse)
	if err != nil {
		t.Fatalf("connect to the cluster's clickhouse-server: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// NATSConn connects the test to the NATS cluster (to read leases and job records).
func (c *Cluster) NATSConn(t testing.TB) *natsx.Conn {
	t.Helper()
	nc, err := natsx.Connect(context.Background(), natsx.Config{URL: c.NATSURL, Name: "cluster test"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// LeaseHolder returns the service whose process holds a lease (bucket, key): the value of a
// lease is the holder's host-pid-random instance name.
func (c *Cluster) LeaseHolder(ctx context.Context, nc *natsx.Conn, bucket, key string) (*Service, error) {
	kv, err := nc.JS.KeyValue(ctx, bucket)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(string(e.Value()), "-")
	if len(parts) < 3 {
		return nil, fmt.Errorf("lease %s/%s holds %q", bucket, key, e.Value())
	}
	pid, err := strconv.Atoi(parts[len(parts)-2])
	if err != nil {
		return nil, fmt.Errorf("lease %s/%s holds %q", bucket, key, e.Value())
	}
	for _, s := range c.Services {
		if s.Proc != nil && !s.Proc.Exited() && s.PID() == pid {
			return s, nil
		}
	}
	return nil, ErrNoHolder
}

// ErrNoHolder: the lease is held by no running service of the cluster (a killed one's lease
// has not expired yet).
var ErrNoHolder = errors.New("no running service holds the lease")
