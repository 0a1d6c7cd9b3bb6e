package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// IPv6-only bridge networks (Docker 28's --ipv4=false --ipv6): containers
// get an IPv6 address and no IPv4 one, reach each other with ping6 by
// address and by name, and inspect shows EnableIPv4 false. The refusals:
// neither family, an IPv4 subnet, --ip on such a network.
func TestIPv6OnlyBridge(t *testing.T) {
	_, h := single(t)
	cli(t, h, "network", "create", "--ipv6", "--ipv4=false", "--subnet", "fd00:86::/64", "v6o")
	cli(t, h, "run", "-d", "--name", "a", "--net", "v6o", "--ip6", "fd00:86::a0", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "b", "--net", "v6o", "busybox", "sleep", "1d")
	if out := cli(t, h, "exec", "a", "ip", "-o", "-4", "addr", "show", "eth0"); out != "" {
		t.Errorf("a has IPv4 on an IPv6-only network: %q", out)
	}
	if ip := ipOf(t, h, "a", "v6o"); ip != "" {
		t.Errorf("inspect a: IPAddress %q on an IPv6-only network", ip)
	}
	if a6 := ipv6Of(t, h, "a", "v6o"); a6.GlobalIPv6Address != "fd00:86::a0" || a6.IPv6Gateway != "fd00:86::1" {
		t.Errorf("inspect a: %+v, want fd00:86::a0 via fd00:86::1", a6)
	}
	if !ping6(t, h, "b", "fd00:86::a0") || !ping6(t, h, "b", "a") {
		t.Error("b cannot ping6 a (by address and by name) on the IPv6-only network")
	}
	if !ping6(t, h, "a", "fd00:86::1") {
		t.Error("a cannot ping6 its gateway")
	}
	var nets []struct {
		EnableIPv4, EnableIPv6 bool
		IPAM                   struct{ Config []struct{ Subnet string } }
	}
	if err := json.Unmarshal([]byte(cli(t, h, "network", "inspect", "v6o")), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("network inspect: %v", err)
	}
	if n := nets[0]; n.EnableIPv4 || !n.EnableIPv6 || len(n.IPAM.Config) != 1 || n.IPAM.Config[0].Subnet != "fd00:86::/64" {
		t.Errorf("network inspect v6o: %+v, want IPv6 only with fd00:86::/64", n)
	}
	// A published port of an IPv6-only container: IPv6 only, on [::1]
	// through the userland proxy; an IPv4 host address is refused.
	cli(t, h, append([]string{"run", "-d", "--name", "web", "--net", "v6o", "-p", "8085:80", "busybox"}, httpdCmd("web6")...)...)
	wantAnswer(t, "host -> [::1]:8085 (IPv6-only container)", "hello from web6", func() string { return fetch6(h.NS(), "::1", "8085") })
	if _, stderr, code := h.CLI(append([]string{"run", "-d", "--net", "v6o", "-p", "127.0.0.1:8086:80", "busybox"}, httpdCmd("x")...)...); code == 0 || !strings.Contains(stderr, "has no IPv4 address") {
		t.Errorf("-p 127.0.0.1:8086:80 on an IPv6-only container: exit %d, %q", code, stderr)
	}
	// A restart keeps it as it was.
	h.Restart()
	if !ping6(t, h, "b", "a") {
		t.Error("b cannot ping6 a after a daemon restart")
	}
	wantAnswer(t, "host -> [::1]:8085 after a restart", "hello from web6", func() string { return fetch6(h.NS(), "::1", "8085") })
	for _, x := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "--ipv4=false", "none4"}, "IPv4 or IPv6 must be enabled"},
		{[]string{"network", "create", "--ipv6", "--ipv4=false", "--subnet", "10.86.0.0/24", "sub4"}, "IPv4 subnet needs IPv4 enabled"},
		{[]string{"network", "create", "--ipv6", "--ipv4=false", "-d", "macvlan", "-o", "parent=lo", "mv"}, "does not support IPv6 on macvlan"},
		{[]string{"run", "-d", "--net", "v6o", "--ip", "10.0.0.5", "busybox", "sleep", "1d"}, "does not have IPv4 enabled"},
	} {
		if _, stderr, code := h.CLI(x.args...); code == 0 || !strings.Contains(stderr, x.want) {
			t.Errorf("%v: exit %d, %q; want a refusal with %q", x.args, code, stderr, x.want)
		}
	}
}
