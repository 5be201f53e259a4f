package sluicetest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// A network of hosts for a cluster on one machine. With network namespaces (root, and the ip
// tool of iproute2), every host is a namespace of its own with its own address on a bridge in a
// hub namespace, the test process reaching the bridge through one veth pair; hosts that need
// it get a second interface on a second bridge (NATS routes), which can be taken down to cut
// the host off from its peers while its clients still reach it. Without namespaces every host
// is this machine's loopback, told apart by port.
type network struct {
	// ns is false on loopback.
	ns     bool
	id     string
	hub    string
	prefix string // client network, a /24: prefix + ".N"
	root   string // the test process's address on it
	rootIf string
	mu     sync.Mutex
	hosts  []*host
}

// host is where processes run: a namespace with an address, or loopback.
type host struct {
	net  *network
	name string
	ns   string
	addr string // client network address
	// routeAddr and routeIf: the second interface (cluster routes), when asked for.
	routeAddr, routeIf string
}

// routePrefix is the route network inside the hub: not reachable from the machine, so every
// run can use the same addresses.
const routePrefix = "10.250.0"

// newNetwork makes the network: namespaces when this machine allows them, else loopback
// (logged with the reason).
func newNetwork(t testing.TB) *network {
	t.Helper()
	if reason := namespacesUnavailable(); reason != "" {
		t.Logf("cluster on loopback: network namespaces unavailable (%s)", reason)
		return &network{root: "127.0.0.1"}
	}
	sweepNetworks()
	n := &network{ns: true, id: strconv.Itoa(os.Getpid())}
	n.hub = "slc" + n.id + "-hub"
	n.rootIf = "slv" + n.id
	t.Cleanup(n.remove)
	prefix, err := freeSubnet()
	if err != nil {
		t.Fatalf("cluster network: %v", err)
	}
	n.prefix, n.root = prefix, prefix+".1"
	run(t, "ip", "netns", "add", n.hub)
	for _, br := range []string{"sluiceclient", "sluiceroute"} {
		run(t, "ip", "-n", n.hub, "link", "add", br, "type", "bridge")
		run(t, "ip", "-n", n.hub, "link", "set", "dev", br, "up")
	}
	run(t, "ip", "link", "add", n.rootIf, "type", "veth", "peer", "name", "uplink", "netns", n.hub)
	run(t, "ip", "-n", n.hub, "link", "set", "dev", "uplink", "master", "sluiceclient", "up")
	run(t, "ip", "addr", "add", n.root+"/24", "dev", n.rootIf)
	run(t, "ip", "link", "set", "dev", n.rootIf, "up")
	return n
}

// namespacesUnavailable says why namespaces cannot be used, or "".
func namespacesUnavailable() string {
	if os.Getenv("SLUICE_TEST_LOOPBACK") != "" {
		return "SLUICE_TEST_LOOPBACK is set"
	}
	if os.Geteuid() != 0 {
		return "not root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "no ip command (apt-get install -y iproute2)"
	}
	name := fmt.Sprintf("slc%d-probe", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return strings.TrimSpace(string(out))
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
	return ""
}

// sweepNetworks removes the namespaces and interfaces of runs whose process is gone (a test
// binary killed before its cleanup).
func sweepNetworks() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, "slc")
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
		_ = exec.Command("ip", "link", "del", "slv"+pid).Run()
	}
}

// freeSubnet picks a /24 of 100.64.0.0/10 (shared address space, never routed to the
// internet) that no route of this machine covers.
func freeSubnet() (string, error) {
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return "", err
	}
	var nets []*net.IPNet
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if dst == "local" || dst == "broadcast" || dst == "unreachable" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if _, n, err := net.ParseCIDR(dst); err == nil && !n.IP.Equal(net.IPv4zero) {
			nets = append(nets, n)
		}
	}
	for range 64 {
		prefix := fmt.Sprintf("100.%d.%d", 64+rand.N(64), rand.N(256))
		ip := net.ParseIP(prefix + ".1")
		taken := false
		for _, n := range nets {
			if n.Contains(ip) {
				taken = true
			}
		}
		if !taken {
			return prefix, nil
		}
	}
	return "", fmt.Errorf("no free /24 in 100.64.0.0/10")
}

// addHost makes a host; withRoutes gives it the second interface.
func (n *network) addHost(t testing.TB, name string, withRoutes bool) *host {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	h := &host{net: n, name: name, addr: "127.0.0.1"}
	if !n.ns {
		n.hosts = append(n.hosts, h)
		return h
	}
	idx := len(n.hosts) + 2
	h.ns = fmt.Sprintf("slc%s-%s", n.id, name)
	h.addr = fmt.Sprintf("%s.%d", n.prefix, idx)
	run(t, "ip", "netns", "add", h.ns)
	run(t, "ip", "-n", h.ns, "link", "set", "dev", "lo", "up")
	hubSide := fmt.Sprintf("c%d", idx)
	run(t, "ip", "-n", n.hub, "link", "add", hubSide, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
	run(t, "ip", "-n", n.hub, "link", "set", "dev", hubSide, "master", "sluiceclient", "up")
	run(t, "ip", "-n", h.ns, "addr", "add", h.addr+"/24", "dev", "eth0")
	run(t, "ip", "-n", h.ns, "link", "set", "dev", "eth0", "up")
	if withRoutes {
		h.routeAddr, h.routeIf = fmt.Sprintf("%s.%d", routePrefix, idx), "eth1"
		hubSide := fmt.Sprintf("r%d", idx)
		run(t, "ip", "-n", n.hub, "link", "add", hubSide, "type", "veth", "peer", "name", "eth1", "netns", h.ns)
		run(t, "ip", "-n", n.hub, "link", "set", "dev", hubSide, "master", "sluiceroute", "up")
		run(t, "ip", "-n", h.ns, "addr", "add", h.routeAddr+"/24", "dev", "eth1")
		run(t, "ip", "-n", h.ns, "link", "set", "dev", "eth1", "up")
	}
	n.hosts = append(n.hosts, h)
	return h
}

// command runs bin on the host.
func (h *host) command(bin string, args ...string) (string, []string) {
	if h.ns == "" {
		return bin, args
	}
	return "ip", append([]string{"netns", "exec", h.ns, bin}, args...)
}

// setRoutes takes the host's route interface down (cut off from its peers) or up.
func (h *host) setRoutes(t testing.TB, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	run(t, "ip", "-n", h.ns, "link", "set", "dev", h.routeIf, state)
}

// remove deletes the namespaces (their interfaces go with them) and the test's veth.
func (n *network) remove() {
	if !n.ns {
		return
	}
	for _, h := range n.hosts {
		_ = exec.Command("ip", "netns", "del", h.ns).Run()
	}
	_ = exec.Command("ip", "link", "del", n.rootIf).Run()
	_ = exec.Command("ip", "netns", "del", n.hub).Run()
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
