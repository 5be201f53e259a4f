package warehousetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/warehouse"
)

// serverStartTimeout bounds the wait for a fresh server to answer.
const serverStartTimeout = 60 * time.Second

type server struct {
	dir    string
	cfg    warehouse.NativeConfig
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	stop   chan struct{} // closed to let the starting goroutine (and its thread) end
}

var (
	serverMu   sync.Mutex
	serverCur  *server
	serverErr  error
	serverGone bool
)

// ServerBinary is the clickhouse-server the tests start:
// $SLUICE_CLICKHOUSE_SERVER, else clickhouse-server on PATH or in
// /usr/sbin.
func ServerBinary() string {
	if p := os.Getenv("SLUICE_CLICKHOUSE_SERVER"); p != "" {
		return p
	}
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p
	}
	// Debian installs it in /usr/sbin, which is not on every user's PATH.
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "clickhouse-server"
}

// Server starts, once per test binary, a clickhouse-server with a private
// configuration, data and logs in a temporary directory and free loopback
// ports, and returns how to reach it. Its default profile enables
// LowCardinality (experimental on 18.16); its time zone is UTC.
func Server(t testing.TB) warehouse.NativeConfig {
	t.Helper()
	bin := serverInstalled(t)
	serverMu.Lock()
	defer serverMu.Unlock()
	if serverGone {
		t.Fatal("warehousetest: Server called after Shutdown")
	}
	if serverCur == nil && serverErr == nil {
		serverCur, serverErr = startServer(bin)
	}
	if serverErr != nil {
		t.Fatalf("warehousetest: start clickhouse-server: %v", serverErr)
	}
	select {
	case <-serverCur.exited:
		t.Fatalf("warehousetest: clickhouse-server exited; log tail:\n%s", serverCur.logTail())
	default:
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("clickhouse-server log tail (%s):\n%s", serverCur.dir, serverCur.logTail())
		}
	})
	return serverCur.cfg
}

// serverInstalled returns the server binary, or fails (or skips) the test naming what to
// install.
func serverInstalled(t testing.TB) string {
	t.Helper()
	bin := ServerBinary()
	if _, err := os.Stat(bin); err != nil {
		skipOrFail(t, []string{"SLUICE_SKIP_CLICKHOUSE_SERVER"},
			"clickhouse-server not found (%s): install it with `apt-get install -y clickhouse-server clickhouse-client` or set SLUICE_CLICKHOUSE_SERVER", bin)
	}
	for _, src := range []string{"/etc/clickhouse-server/config.xml", "/etc/clickhouse-server/users.xml"} {
		if _, err := os.Stat(src); err != nil {
			skipOrFail(t, []string{"SLUICE_SKIP_CLICKHOUSE_SERVER"},
				"%s not found: install clickhouse-server with `apt-get install -y clickhouse-server clickhouse-client`", src)
		}
	}
	return bin
}

// Native opens a connection to the shared server, closed when the test ends.
func Native(t testing.TB) warehouse.Conn {
	t.Helper()
	cfg := Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := warehouse.OpenNative(ctx, cfg)
	if err != nil {
		t.Fatalf("warehousetest: connect to clickhouse-server: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func startServer(bin string) (*server, error) {
	dir, err := newTempDir("server")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"data", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := writeServerConfig(dir, ports); err != nil {
		return nil, err
	}
	s := &server{
		dir:    dir,
		cfg:    warehouse.NativeConfig{Addrs: []string{fmt.Sprintf("127.0.0.1:%d", ports[0])}, Username: "default", DialTimeout: 5 * time.Second},
		exited: make(chan struct{}),
		stop:   make(chan struct{}),
	}
	if err := s.start(bin); err != nil {
		return nil, err
	}
	if err := s.waitReady(); err != nil {
		s.kill()
		return nil, fmt.Errorf("%w; log tail:\n%s", err, s.logTail())
	}
	return s, nil
}

// start runs the server from a goroutine locked to its OS thread for the
// server's whole life: Pdeathsig fires when the thread that started the
// child exits, so the server dies with the test binary, not before.
func (s *server) start(bin string) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		out, err := os.Create(filepath.Join(s.dir, "log", "stdout.log"))
		if err != nil {
			started <- err
			return
		}
		defer out.Close()
		cmd := exec.Command(bin, "--config-file="+filepath.Join(s.dir, "config.xml"))
		cmd.Dir = s.dir
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("run %s: %w", bin, err)
			return
		}
		s.cmd = cmd
		started <- nil
		_ = cmd.Wait()
		close(s.exited)
		<-s.stop
	}()
	return <-started
}

func (s *server) waitReady() error {
	deadline := time.Now().Add(serverStartTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return errors.New("clickhouse-server exited during start")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := warehouse.OpenNative(ctx, s.cfg)
		if err == nil {
			var res *warehouse.Result
			res, err = conn.Query(ctx, "SELECT 1")
			_ = conn.Close()
			if err == nil && len(res.Rows) == 1 {
				cancel()
				return nil
			}
		}
		cancel()
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("clickhouse-server did not answer within %s: %w", serverStartTimeout, last)
}

func (s *server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.exited
		}
	}
	close(s.stop)
}

func (s *server) logTail() string {
	var b strings.Builder
	for _, name := range []string{"clickhouse-server.err.log", "stdout.log"} {
		data, err := os.ReadFile(filepath.Join(s.dir, "log", name))
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(&b, "== %s\n%s\n", name, strings.Join(lines, "\n"))
	}
	return b.String()
}

func stopServer() {
	serverMu.Lock()
	defer serverMu.Unlock()
	serverGone = true
	if serverCur != nil {
		serverCur.kill()
		_ = os.RemoveAll(serverCur.dir)
		serverCur = nil
	}
}

func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeServerConfig copies the packaged configuration with paths moved
// into dir, ports replaced, IPv6 loopback dropped (not every machine has
// it) and the time zone set, and the users file with LowCardinality enabled.
func writeServerConfig(dir string, ports []int) error {
	return WriteServerConfig(dir, "127.0.0.1", ports)
}

// WriteServerConfig writes into dir the configuration of a private
// clickhouse-server listening on listenHost with ports (native, HTTP,
// interserver), its data and logs under dir: the packaged configuration with
// those replaced, the time zone UTC, and LowCardinality enabled. Run it with
// ServerBinary() --config-file=<dir>/config.xml (from dir).
func WriteServerConfig(dir, listenHost string, ports []int) error {
	for _, d := range []string{"data", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	cfg, err := os.ReadFile("/etc/clickhouse-server/config.xml")
	if err != nil {
		return err
	}
	c := string(cfg)
	c = strings.ReplaceAll(c, "/var/lib/clickhouse/", filepath.Join(dir, "data")+"/")
	c = strings.ReplaceAll(c, "/var/log/clickhouse-server/", filepath.Join(dir, "log")+"/")
	// The packaged file lists no listen_host outside comments (the default is localhost, IPv6
	// included, which not every machine has): name the one address.
	c = strings.Replace(c, "<tcp_port>", "<listen_host>"+listenHost+"</listen_host>\n    <tcp_port>", 1)
	c = regexp.MustCompile(`<tcp_port>\d+</tcp_port>`).ReplaceAllString(c, fmt.Sprintf("<tcp_port>%d</tcp_port>", ports[0]))
	c = regexp.MustCompile(`<http_port>\d+</http_port>`).ReplaceAllString(c, fmt.Sprintf("<http_port>%d</http_port>", ports[1]))
	c = regexp.MustCompile(`<interserver_http_port>\d+</interserver_http_port>`).ReplaceAllString(c, fmt.Sprintf("<interserver_http_port>%d</interserver_http_port>", ports[2]))
	c = regexp.MustCompile(`<level>\w+</level>`).ReplaceAllString(c, "<level>information</level>")
	if !strings.Contains(c, "<timezone>UTC</timezone>") {
		c = strings.Replace(c, "<path>", "<timezone>UTC</timezone>\n    <path>", 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(c), 0o644); err != nil {
		return err
	}
	users, err := os.ReadFile("/etc/clickhouse-server/users.xml")
	if err != nil {
		return err
	}
	u := strings.Replace(string(users), "<default>",
		"<default>\n            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>", 1)
	u = strings.Replace(u, "</users>", restrictedUsersXML+workspaceUsersXML()+"</users>", 1)
	return os.WriteFile(filepath.Join(dir, "users.xml"), []byte(u), 0o644)
}

// Restricted users of the private server, as docs/security.md describes them: RestrictedUser
// may only use RestrictedDatabases (users.xml allow_databases; ClickHouse 18.16 has no SQL
// RBAC), ReaderUser only reads them (profile readonly).
const (
	RestrictedUser     = "sluice_app"
	RestrictedPassword = "sluice-app-password"
	ReaderUser         = "sluice_reader"
	ReaderPassword     = "sluice-reader-password"
)

// RestrictedDatabases are the databases RestrictedUser and ReaderUser may use.
var RestrictedDatabases = []string{"sluice_app_own", "sluice_app_ws"}

// Workspace users of the private server, as docs/security.md describes them: the user of
// workspace w is WorkspaceUser with {workspace} replaced by w, with WorkspacePassword, and
// may only use the database ws_w and WorkspaceUsersOwnDatabase, Sluice's own database (where
// the ops log is, read by each workspace's datasources_ops_log view with the reader's rights).
// They exist for the workspaces WorkspaceUserWorkspaces.
const (
	WorkspaceUser             = "sluice_ws_{workspace}"
	WorkspacePassword         = "sluice-ws-password"
	WorkspaceUsersOwnDatabase = "sluice_wsu_own"
)

// WorkspaceUserWorkspaces are the workspaces that have a WorkspaceUser on the private server.
var WorkspaceUserWorkspaces = []string{"wsu_app", "wsu_victim"}

func workspaceUsersXML() string {
	var b strings.Builder
	for _, ws := range WorkspaceUserWorkspaces {
		user := strings.ReplaceAll(WorkspaceUser, "{workspace}", ws)
		fmt.Fprintf(&b, `    <%s>
            <password>%s</password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
            <allow_databases><database>ws_%s</database><database>%s</database></allow_databases>
        </%s>
    `, user, WorkspacePassword, ws, WorkspaceUsersOwnDatabase, user)
	}
	return b.String()
}

const restrictedUsersXML = `    <sluice_app>
            <password>sluice-app-password</password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
            <allow_databases>
                <database>sluice_app_own</database>
                <database>sluice_app_ws</database>
            </allow_databases>
        </sluice_app>
        <sluice_reader>
            <password>sluice-reader-password</password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>readonly</profile>
            <quota>default</quota>
            <allow_databases>
                <database>sluice_app_ws</database>
            </allow_databases>
        </sluice_reader>
    `

// ServerAs is Server with the credentials of one of the restricted users.
func ServerAs(t testing.TB, user, password string) warehouse.NativeConfig {
	t.Helper()
	cfg := Server(t)
	cfg.Addrs = append([]string(nil), cfg.Addrs...)
	cfg.Username, cfg.Password = user, password
	return cfg
}
