package e2e

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/netns"
)

// ep6 is the IPv6 part of a container's endpoint on a network (inspect).
type ep6 struct {
	GlobalIPv6Address   string
	GlobalIPv6PrefixLen int
	IPv6Gateway         string
	IPAMConfig          *struct{ IPv6Address string }
}

func ipv6Of(t *testing.T, h *harness.Host, ctr, network string) ep6 {
	t.Helper()
	var v []struct {
		NetworkSettings struct{ Networks map[string]ep6 }
	}
	if err := json.Unmarshal([]byte(cli(t, h, "inspect", ctr)), &v); err != nil || len(v) != 1 {
		t.Fatalf("inspect %s: %v", ctr, err)
	}
	n, ok := v[0].NetworkSettings.Networks[network]
	if !ok {
		t.Fatalf("%s is not on %s", ctr, network)
	}
	return n
}

func ping6(t *testing.T, h *harness.Host, ctr, dst string) bool {
	t.Helper()
	return execCode(t, h, ctr, "ping", "-6", "-c1", "-W2", dst) == 0
}

// Dual-stack bridge networks: IPv6 addresses from the given subnet (static
// --ip6 honoured) and from the default ULA pool, the gateway and default
// route, AAAA answers, inspect as Docker shows it, and the refusals.
func TestBridgeIPv6(t *testing.T) {
	_, h := single(t)
	cli(t, h, "network", "create", "--ipv6", "--subnet", "10.78.0.0/24", "--subnet", "fd00:78::/64", "ds")
	cli(t, h, "run", "-d", "--name", "a", "--net", "ds", "--ip6", "fd00:78::a0", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "b", "--net", "ds", "busybox", "sleep", "1d")

	a, b := ipv6Of(t, h, "a", "ds"), ipv6Of(t, h, "b", "ds")
	if a.GlobalIPv6Address != "fd00:78::a0" || a.GlobalIPv6PrefixLen != 64 || a.IPv6Gateway != "fd00:78::1" ||
		a.IPAMConfig == nil || a.IPAMConfig.IPv6Address != "fd00:78::a0" {
		t.Errorf("a's IPv6 endpoint = %+v, want fd00:78::a0/64 via fd00:78::1, static", a)
	}
	bAddr, err := netip.ParseAddr(b.GlobalIPv6Address)
	if err != nil || !netip.MustParsePrefix("fd00:78::/64").Contains(bAddr) || b.IPv6Gateway != "fd00:78::1" {
		t.Errorf("b's IPv6 endpoint = %+v, want an address of fd00:78::/64", b)
	}
	if !ping6(t, h, "b", "fd00:78::a0") {
		t.Error("b cannot ping6 a's static address")
	}
	if !ping6(t, h, "a", b.GlobalIPv6Address) {
		t.Error("a cannot ping6 b")
	}
	// The name resolves to the IPv6 address too (AAAA from the embedded DNS).
	if !ping6(t, h, "b", "a") {
		t.Error("b cannot ping6 a by name")
	}
	if out := cli(t, h, "exec", "b", "nslookup", "-type=AAAA", "a", "127.0.0.11"); !strings.Contains(out, "fd00:78::a0") {
		t.Errorf("AAAA lookup of a:\n%s", out)
	}
	if out := cli(t, h, "exec", "b", "ip", "-6", "route", "show", "default"); !strings.Contains(out, "via fd00:78::1") {
		t.Errorf("b's IPv6 default route = %q, want via fd00:78::1", out)
	}
	if !ping6(t, h, "b", "fd00:78::1") {
		t.Error("b cannot ping6 its gateway")
	}

	// Network inspect: EnableIPv6 and both IPAM configs.
	var nets []struct {
		EnableIPv6 bool
		IPAM       struct {
			Config []struct{ Subnet, Gateway string }
		}
		Containers map[string]struct{ IPv6Address string }
	}
	if err := json.Unmarshal([]byte(cli(t, h, "network", "inspect", "ds")), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("network inspect: %v", err)
	}
	cfg := nets[0].IPAM.Config
	if !nets[0].EnableIPv6 || len(cfg) != 2 || cfg[1].Subnet != "fd00:78::/64" || cfg[1].Gateway != "fd00:78::1" {
		t.Errorf("network inspect: EnableIPv6 %v, IPAM %+v", nets[0].EnableIPv6, cfg)
	}
	found := false
	for _, c := range nets[0].Containers {
		found = found || c.IPv6Address == "fd00:78::a0/64"
	}
	if !found {
		t.Errorf("network inspect containers %+v lack fd00:78::a0/64", nets[0].Containers)
	}

	// Refusals: a taken --ip6, --ip6 on a network without IPv6, an IPv6
	// subnet without --ipv6, IPv6 on other drivers.
	if _, stderr, code := h.CLI("run", "-d", "--name", "dup", "--net", "ds", "--ip6", "fd00:78::a0", "busybox", "sleep", "1d"); code == 0 || !strings.Contains(stderr, "fd00:78::a0") {
		t.Errorf("taken --ip6: code %d, %s", code, stderr)
	}
	cli(t, h, "network", "create", "v4")
	if _, stderr, code := h.CLI("run", "-d", "--net", "v4", "--ip6", "fd00:78::b0", "busybox", "sleep", "1d"); code == 0 || !strings.Contains(stderr, "does not have IPv6 enabled") {
		t.Errorf("--ip6 on an IPv4 network: code %d, %s", code, stderr)
	}
	if _, stderr, code := h.CLI("network", "create", "--subnet", "fd00:79::/64", "x"); code == 0 || !strings.Contains(stderr, "needs --ipv6") {
		t.Errorf("IPv6 subnet without --ipv6: code %d, %s", code, stderr)
	}
	if _, stderr, code := h.CLI("network", "create", "--ipv6", "-d", "macvlan", "-o", "parent=lo", "x"); code == 0 || !strings.Contains(stderr, "vxnet does not support IPv6 on macvlan networks yet") {
		t.Errorf("IPv6 on macvlan: code %d, %s", code, stderr)
	}
	if out := cli(t, h, "network", "ls", "-q", "-f", "name=x"); out != "" {
		t.Errorf("refused networks were created: %s", out)
	}

	// Without --subnet: IPv4 from the default pools, IPv6 a ULA /64.
	cli(t, h, "network", "create", "--ipv6", "dflt")
	if err := json.Unmarshal([]byte(cli(t, h, "network", "inspect", "dflt")), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("network inspect: %v", err)
	}
	cfg = nets[0].IPAM.Config
	if len(cfg) != 2 {
		t.Fatalf("default dual-stack IPAM %+v", cfg)
	}
	sub6, err := netip.ParsePrefix(cfg[1].Subnet)
	if err != nil || sub6.Bits() != 64 || sub6.Addr().As16()[0] != 0xfd {
		t.Fatalf("default IPv6 subnet %q, want a ULA /64", cfg[1].Subnet)
	}
	cli(t, h, "run", "-d", "--name", "c", "--net", "dflt", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "d", "--net", "dflt", "busybox", "sleep", "1d")
	c6 := ipv6Of(t, h, "c", "dflt")
	if a, err := netip.ParseAddr(c6.GlobalIPv6Address); err != nil || !sub6.Contains(a) || c6.IPv6Gateway != cfg[1].Gateway {
		t.Errorf("c's IPv6 endpoint %+v, want an address of %s", c6, sub6)
	}
	if !ping6(t, h, "d", "c") {
		t.Error("d cannot ping6 c on the default-pool network")
	}
	// Isolation holds for IPv6: a on ds does not reach c on dflt.
	if ping6(t, h, "a", c6.GlobalIPv6Address) {
		t.Error("a (ds) reached c (dflt) over IPv6")
	}
	// rm frees the addresses: the static address can be taken again. The
	// new container has another MAC; its unsolicited neighbour
	// advertisement updates b's neighbour cache at once.
	cli(t, h, "rm", "-f", "a")
	cli(t, h, "run", "-d", "--name", "a2", "--net", "ds", "--ip6", "fd00:78::a0", "busybox", "sleep", "1d")
	// A daemon restart keeps the IPv6 addresses in use, the subnet's
	// allocation and the kernel state.
	h.Restart()
	if got := ipv6Of(t, h, "b", "ds"); got.GlobalIPv6Address != b.GlobalIPv6Address {
		t.Errorf("b's IPv6 address after restart = %s, want %s", got.GlobalIPv6Address, b.GlobalIPv6Address)
	}
	cli(t, h, "run", "-d", "--name", "e", "--net", "ds", "busybox", "sleep", "1d")
	if e6 := ipv6Of(t, h, "e", "ds").GlobalIPv6Address; e6 == "" || e6 == b.GlobalIPv6Address || e6 == "fd00:78::a0" {
		t.Errorf("e's IPv6 address after restart = %q, taken or missing", e6)
	}
	if !ping6(t, h, "b", "fd00:78::a0") {
		a2, _, _ := h.CLI("exec", "a2", "ip", "-6", "addr")
		nb, _, _ := h.CLI("exec", "b", "ip", "-6", "neigh")
		t.Errorf("b cannot ping6 a2 at the re-used static address; a2:\n%s\nb's neighbours:\n%s", a2, nb)
	}
}

// IPv6 egress from a dual-stack bridge network is masqueraded: the outside
// namespace (which has no route to the network's ULA subnet) sees the
// host's IPv6 address. A container on an --internal network does not get
// out. The test gives the underlay IPv6 addresses of its own.
func TestBridgeIPv6Egress(t *testing.T) {
	c, h := single(t)
	out := c.Outside()
	out.MustExec(t, "ip", "-6", "addr", "add", "2001:db8:ff::254/64", "dev", "eth0", "nodad")
	out.MustExec(t, "ip", "-6", "addr", "add", "2001:db8:ee::1/64", "dev", "eth0", "nodad")
	h.MustExec(t, "ip", "-6", "addr", "add", "2001:db8:ff::10/64", "dev", "eth0", "nodad")
	h.MustExec(t, "ip", "-6", "route", "add", "default", "via", "2001:db8:ff::254")

	sources := acceptSources(t, out.Path, "[2001:db8:ee::1]:8080")

	cli(t, h, "network", "create", "--ipv6", "--subnet", "fd00:79::/64", "eg")
	cli(t, h, "network", "create", "--ipv6", "--internal", "--subnet", "fd00:7a::/64", "priv")
	cli(t, h, "run", "-d", "--name", "a", "--net", "eg", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "p", "--net", "priv", "busybox", "sleep", "1d")
	if code := execCode(t, h, "a", "sh", "-c", "echo hi | nc -w 2 2001:db8:ee::1 8080"); code != 0 {
		t.Fatalf("a cannot reach [2001:db8:ee::1]:8080 (exit %d)", code)
	}
	select {
	case src := <-sources:
		if src != "2001:db8:ff::10" {
			t.Errorf("outside saw source %s, want the host's 2001:db8:ff::10 (masquerade)", src)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the outside accepted no connection")
	}
	if ping6(t, h, "p", "2001:db8:ee::1") {
		t.Error("container on an internal IPv6 network reached the outside")
	}
	execCode(t, h, "p", "sh", "-c", "echo x | nc -w 2 2001:db8:ee::1 8080")
	select {
	case src := <-sources:
		t.Errorf("internal container opened a connection to the outside (source %s)", src)
	default:
	}
}

// --default-address-pool replaces the default pools of its family: a
// network created without --subnet takes its IPv4 and IPv6 subnets from
// the given pools.
func TestDefaultAddressPool(t *testing.T) {
	c := harness.New(t, harness.Options{Hosts: 1})
	h := c.Host(0)
	h.Start("--default-address-pool", "base=10.99.0.0/16,size=24", "--default-address-pool", "base=fd12:3456::/48,size=64")
	cli(t, h, "network", "create", "--ipv6", "p")
	var nets []struct {
		IPAM struct{ Config []struct{ Subnet string } }
	}
	if err := json.Unmarshal([]byte(cli(t, h, "network", "inspect", "p")), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("network inspect: %v", err)
	}
	cfg := nets[0].IPAM.Config
	if len(cfg) != 2 || cfg[0].Subnet != "10.99.0.0/24" || cfg[1].Subnet != "fd12:3456::/64" {
		t.Errorf("subnets %+v, want 10.99.0.0/24 and fd12:3456::/64", cfg)
	}
}

// acceptSources listens on addr (TCP over IPv6) inside the namespace at
// nsPath until the test ends and sends the source address of every
// connection it accepts.
func acceptSources(t *testing.T, nsPath, addr string) <-chan string {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp6", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sources := make(chan string, 16)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			sources <- conn.RemoteAddr().(*net.TCPAddr).IP.String()
			conn.Close()
		}
	}()
	return sources
}
