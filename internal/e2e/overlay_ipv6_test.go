package e2e

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
)

// nslookupAAAA returns the IPv6 addresses nslookup -type=AAAA NAME gives
// inside ctr.
func nslookupAAAA(h *harness.Host, ctr, name string) []string {
	out, _, _ := h.CLI("exec", ctr, "nslookup", "-type=AAAA", name)
	var res []string
	if i := strings.Index(out, "\n\n"); i >= 0 {
		out = out[i:]
	}
	for _, l := range strings.Split(out, "\n") {
		if a, ok := strings.CutPrefix(strings.TrimSpace(l), "Address: "); ok && strings.Contains(a, ":") {
			res = append(res, a)
		}
	}
	return res
}

// IPv6 on an overlay network over an IPv4 underlay: global IPAM gives
// each endpoint an IPv6 address (static --ip6 honoured), the advertisements
// carry it, and the overlay answers neighbour solicitations for remote
// endpoints by proxy, so containers on two hosts ping6 each other, by
// address and by name (AAAA from the advertisement). Containers on the
// other host resolve by their short ID too. A network without --subnet
// gets a ULA /64 of the cluster's /48, the same on both hosts.
func TestOverlayIPv6(t *testing.T) {
	c := ovCluster(t, 2)
	a, b := c.Host(0), c.Host(1)
	cli(t, a, "network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.84.0.0/24", "--subnet", "fd00:84::/64", "ov6")
	xID := cli(t, a, "run", "-d", "--name", "x", "--net", "ov6", "--ip6", "fd00:84::a0", "busybox", "sleep", "1d")
	ovRun(t, b, "y", "ov6")
	x6, y6 := ipv6Of(t, a, "x", "ov6"), ipv6Of(t, b, "y", "ov6")
	if x6.GlobalIPv6Address != "fd00:84::a0" || x6.GlobalIPv6PrefixLen != 64 || x6.IPv6Gateway != "fd00:84::1" ||
		x6.IPAMConfig == nil || x6.IPAMConfig.IPv6Address != "fd00:84::a0" {
		t.Errorf("x's IPv6 endpoint = %+v, want fd00:84::a0/64 via fd00:84::1, static", x6)
	}
	yAddr, err := netip.ParseAddr(y6.GlobalIPv6Address)
	if err != nil || !netip.MustParsePrefix("fd00:84::/64").Contains(yAddr) || yAddr == netip.MustParseAddr("fd00:84::a0") {
		t.Fatalf("y's IPv6 endpoint = %+v, want another address of fd00:84::/64", y6)
	}
	var nets []struct {
		EnableIPv6 bool
		IPAM       struct {
			Config []struct{ Subnet, Gateway string }
		}
	}
	if err := json.Unmarshal([]byte(cli(t, b, "network", "inspect", "ov6")), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("network inspect ov6: %v", err)
	}
	if cfg := nets[0].IPAM.Config; !nets[0].EnableIPv6 || len(cfg) != 2 || cfg[1].Subnet != "fd00:84::/64" || cfg[1].Gateway != "fd00:84::1" {
		t.Errorf("network inspect ov6 on host B: EnableIPv6 %v, IPAM %+v", nets[0].EnableIPv6, cfg)
	}
	if !eventually(20*time.Second, func() bool { return ping6(t, b, "y", "fd00:84::a0") }) {
		nv := ovInspect(t, b, "ov6")
		_, neigh := ovKernel(t, b, nv.VXNet.Namespace)
		t.Fatalf("y (host B) cannot ping6 x (host A) at fd00:84::a0; peers %+v, vxlan0 neighbours:\n%s", nv.VXNet.Peers, neigh)
	}
	if !eventually(10*time.Second, func() bool { return ping6(t, a, "x", y6.GlobalIPv6Address) }) {
		t.Errorf("x (host A) cannot ping6 y (host B) at %s", y6.GlobalIPv6Address)
	}
	// IPv4 keeps working beside it.
	if !ping(t, b, "y", ipOf(t, a, "x", "ov6")) {
		t.Error("y cannot ping x over IPv4 on the dual-stack overlay")
	}
	// Names of the other host: AAAA from its advertisement, ping6 by
	// name, and the short container ID.
	if got := nslookupAAAA(b, "y", "x"); len(got) != 1 || got[0] != "fd00:84::a0" {
		t.Errorf("y: nslookup -type=AAAA x = %v, want fd00:84::a0", got)
	}
	if !ping6(t, b, "y", "x") {
		t.Error("y cannot ping6 x by name")
	}
	xIP := ipOf(t, a, "x", "ov6")
	if got := nslookup(t, b, "y", xID[:12]); !same(got, xIP) {
		t.Errorf("y: nslookup %s (x's short ID, on host A) = %v, want %s", xID[:12], got, xIP)
	}

	// The default IPv6 subnet of an overlay: a ULA /64, the same seen
	// from both hosts.
	cli(t, b, "network", "create", "-d", "overlay", "--ipv6", "ov6d")
	sub := func(h *harness.Host) string {
		var v []struct {
			IPAM struct{ Config []struct{ Subnet string } }
		}
		if err := json.Unmarshal([]byte(cli(t, h, "network", "inspect", "ov6d")), &v); err != nil || len(v) != 1 || len(v[0].IPAM.Config) != 2 {
			t.Fatalf("network inspect ov6d on %s: %v %+v", h.Name, err, v)
		}
		return v[0].IPAM.Config[1].Subnet
	}
	p, err := netip.ParsePrefix(sub(b))
	if err != nil || p.Bits() != 64 || p.Addr().As16()[0] != 0xfd {
		t.Errorf("default IPv6 subnet of an overlay = %q, want a ULA /64", sub(b))
	}
	if !eventually(10*time.Second, func() bool { return sub(a) == p.String() }) {
		t.Errorf("host A sees ov6d's IPv6 subnet as %s, host B as %s", sub(a), p)
	}
}
