package e2e

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxnet/vxnet/internal/netns"
)

// cniAddrs splits a CNI result's IPs by family (address, gateway).
func cniAddrs(t *testing.T, r *current.Result) (v4, v6 []netip.Prefix, gw4, gw6 []netip.Addr) {
	t.Helper()
	for _, ipc := range r.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			t.Fatalf("bad address in result: %+v", ipc)
		}
		a = a.Unmap()
		bits, _ := ipc.Address.Mask.Size()
		g, _ := netip.AddrFromSlice(ipc.Gateway)
		g = g.Unmap()
		if a.Is4() {
			v4, gw4 = append(v4, netip.PrefixFrom(a, bits)), append(gw4, g)
		} else {
			v6, gw6 = append(v6, netip.PrefixFrom(a, bits)), append(gw6, g)
		}
	}
	return
}

// cniDefaults lists the result's default routes as "dst via gw".
func cniDefaults(r *current.Result) []string {
	var out []string
	for _, rt := range r.Routes {
		if ones, _ := rt.Dst.Mask.Size(); ones == 0 {
			out = append(out, rt.Dst.String()+" via "+rt.GW.String())
		}
	}
	return out
}

// TestCNIIPv6: the CNI plugin on networks with IPv6. On a dual-stack
// overlay across two hosts, ADD's result carries both addresses with their
// gateways (and no default route, as the interface has none); a namespace
// pings6 one on the other host and a vxnet container on its own host, and
// the container reaches it by name over IPv6; CHECK verifies both
// addresses (a lost IPv6 address fails it, ADD again repairs it, a
// daemon restart brings back a lost interface with both); DEL releases both (a vxnet
// container then gets them as static --ip/--ip6). On a dual-stack bridge
// the result has a default route per family, as the namespace has; on an
// IPv6-only bridge only the IPv6 address and route.
func TestCNIIPv6(t *testing.T) {
	c := ovCluster(t, 2)
	a, b := c.Host(0), c.Host(1)
	cli(t, a, "network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.84.0.0/24", "--subnet", "fd00:84::/64", "c6")
	bin := cniBuild(t)
	ha, hb := newCNIHost(t, c, a, bin, cniConf("c6", a.Socket)), newCNIHost(t, c, b, bin, cniConf("c6", b.Socket))
	nsA, nsB := cniNetns(t, c, "v6a"), cniNetns(t, c, "v6b")
	ra, err := ha.add("v6a", nsA)
	if err != nil {
		t.Fatalf("ADD on %s: %v", a.Name, err)
	}
	rb, err := hb.add("v6b", nsB)
	if err != nil {
		t.Fatalf("ADD on %s: %v", b.Name, err)
	}
	v4a, v6a, gw4, gw6 := cniAddrs(t, ra)
	if len(v4a) != 1 || len(v6a) != 1 || !netip.MustParsePrefix("10.84.0.0/24").Contains(v4a[0].Addr()) || v4a[0].Bits() != 24 ||
		!netip.MustParsePrefix("fd00:84::/64").Contains(v6a[0].Addr()) || v6a[0].Bits() != 64 ||
		gw4[0] != netip.MustParseAddr("10.84.0.1") || gw6[0] != netip.MustParseAddr("fd00:84::1") {
		t.Fatalf("ADD result on the dual-stack overlay: %+v", ra)
	}
	if d := cniDefaults(ra); len(d) != 0 {
		t.Errorf("overlay result has default routes %v; the interface has none", d)
	}
	_, v6b, _, _ := cniAddrs(t, rb)
	if len(v6b) != 1 {
		t.Fatalf("ADD result on %s has no IPv6 address: %+v", b.Name, rb)
	}
	// The result's addresses are the interface's.
	if out := (&cniNS{nsA}).mustExec(t, "ip", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, v4a[0].String()) || !strings.Contains(out, v6a[0].String()) {
		t.Fatalf("eth0 of the namespace lacks %s or %s: %s", v4a[0], v6a[0], out)
	}
	ping6ns := func(ns string, dst netip.Addr) bool {
		_, code := (&cniNS{ns}).exec("ping", "-6", "-c1", "-W2", dst.String())
		return code == 0
	}
	if !eventually(20*time.Second, func() bool { return ping6ns(nsA, v6b[0].Addr()) }) {
		t.Fatalf("namespace on %s cannot ping6 the one on %s (%s)", a.Name, b.Name, v6b[0])
	}
	if !ping6ns(nsB, v6a[0].Addr()) {
		t.Fatalf("namespace on %s cannot ping6 the one on %s (%s)", b.Name, a.Name, v6a[0])
	}
	ovRun(t, a, "vc6", "c6")
	vc6 := netip.MustParseAddr(ipv6Of(t, a, "vc6", "c6").GlobalIPv6Address)
	if !eventually(10*time.Second, func() bool { return ping6ns(nsA, vc6) }) {
		t.Fatalf("namespace on %s cannot ping6 the vxnet container vc6 (%s) on its host", a.Name, vc6)
	}
	if !eventually(15*time.Second, func() bool { return ping6(t, a, "vc6", "cni-v6b") }) {
		t.Fatalf("vc6 cannot ping6 cni-v6b (host %s) by name", b.Name)
	}

	// CHECK verifies both addresses.
	if err := ha.check("v6a", nsA); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	(&cniNS{nsA}).mustExec(t, "ip", "addr", "del", v6a[0].String(), "dev", "eth0")
	err = ha.check("v6a", nsA)
	var te *types.Error
	if !errors.As(err, &te) || !strings.Contains(te.Msg, v6a[0].String()) {
		t.Fatalf("CHECK after the IPv6 address was removed: %v, want an error naming %s", err, v6a[0])
	}

	// ADD again repairs it; after the interface is lost, a daemon restart
	// brings it back with both addresses.
	if _, err := ha.add("v6a", nsA); err != nil {
		t.Fatalf("ADD again: %v", err)
	}
	if err := ha.check("v6a", nsA); err != nil {
		t.Fatalf("CHECK after ADD again: %v", err)
	}
	(&cniNS{nsA}).mustExec(t, "ip", "link", "del", "eth0")
	a.Restart()
	if err := ha.check("v6a", nsA); err != nil {
		t.Fatalf("CHECK after the daemon restart: %v", err)
	}
	if !eventually(20*time.Second, func() bool { return ping6ns(nsA, v6b[0].Addr()) }) {
		t.Fatalf("after the restart the namespace on %s cannot ping6 the one on %s", a.Name, b.Name)
	}

	// DEL releases both addresses: a container takes them as static ones.
	if err := ha.del("v6a", nsA); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	cli(t, a, "run", "-d", "--name", "reuse", "--net", "c6", "--ip", v4a[0].Addr().String(), "--ip6", v6a[0].Addr().String(), "busybox", "sleep", "1d")
	if err := hb.del("v6b", nsB); err != nil {
		t.Fatalf("DEL on %s: %v", b.Name, err)
	}
	cli(t, a, "rm", "-f", "vc6", "reuse")

	// Bridge networks: a default route per family, in the result and in
	// the namespace.
	cli(t, a, "network", "create", "--ipv6", "--subnet", "10.86.0.0/24", "--subnet", "fd00:86::/64", "b46")
	cli(t, a, "network", "create", "--ipv6", "--ipv4=false", "--subnet", "fd00:87::/64", "b6")
	// The IPv6-only case speaks CNI 0.4.0: the result is converted.
	for _, tc := range []struct {
		net, gw6, version string
		v4                bool
	}{{"b46", "fd00:86::1", "1.1.0", true}, {"b6", "fd00:87::1", "0.4.0", false}} {
		ch := newCNIHost(t, c, a, bin, strings.Replace(cniConf(tc.net, a.Socket), "1.1.0", tc.version, 1))
		ns := cniNetns(t, c, "ns-"+tc.net)
		r, err := ch.add("x"+tc.net, ns)
		if err != nil {
			t.Fatalf("ADD on %s: %v", tc.net, err)
		}
		v4, v6, _, g6 := cniAddrs(t, r)
		want := []string{"::/0 via " + tc.gw6}
		if tc.v4 {
			want = []string{"0.0.0.0/0 via 10.86.0.1", "::/0 via " + tc.gw6}
		}
		if (len(v4) == 1) != tc.v4 || len(v6) != 1 || g6[0].String() != tc.gw6 || strings.Join(cniDefaults(r), ",") != strings.Join(want, ",") {
			t.Fatalf("ADD result on %s: IPs %+v routes %v, want IPv4=%v, IPv6 via %s, routes %v", tc.net, r.IPs, cniDefaults(r), tc.v4, tc.gw6, want)
		}
		if out := (&cniNS{ns}).mustExec(t, "ip", "-6", "route", "show", "default"); !strings.Contains(out, "via "+tc.gw6) {
			t.Errorf("namespace on %s: IPv6 default route %q, want via %s", tc.net, out, tc.gw6)
		}
		out := (&cniNS{ns}).mustExec(t, "ip", "-4", "route", "show", "default")
		if strings.Contains(out, "via") != tc.v4 {
			t.Errorf("namespace on %s: IPv4 default route %q (want one: %v)", tc.net, out, tc.v4)
		}
		if !eventually(10*time.Second, func() bool { return ping6ns(ns, netip.MustParseAddr(tc.gw6)) }) {
			t.Errorf("namespace on %s cannot ping6 its gateway %s", tc.net, tc.gw6)
		}
		if err := ch.check("x"+tc.net, ns); err != nil {
			t.Errorf("CHECK on %s: %v", tc.net, err)
		}
		if err := ch.del("x"+tc.net, ns); err != nil {
			t.Errorf("DEL on %s: %v", tc.net, err)
		}
		netns.Delete(ns)
	}
	if got := externals(t, a); len(got) != 0 {
		t.Errorf("attachments left: %+v", got)
	}
	netns.Delete(nsA)
	netns.Delete(nsB)
}
