package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/pki"
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
// gets a ULA /64 of the cluster's /48, the same on both hosts. An
// IPv6-only overlay (--ipv4=false) works across the hosts too.
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
	// A static IPv6 address re-used on host A by a new container (another
	// IPv4 address, so another MAC): its unsolicited neighbour
	// advertisement reaches y's neighbour cache across the tunnel, so y
	// reaches it at once rather than after its stale entry fails a probe.
	ovRun(t, a, "r", "ov6", "--ip6", "fd00:84::b0")
	if !eventually(20*time.Second, func() bool { return ping6(t, b, "y", "fd00:84::b0") }) {
		t.Fatal("y cannot ping6 r at fd00:84::b0")
	}
	cli(t, a, "rm", "-f", "r")
	ovRun(t, a, "r2", "ov6", "--ip6", "fd00:84::b0")
	if !ping6(t, b, "y", "fd00:84::b0") {
		nb, _, _ := b.CLI("exec", "y", "ip", "-6", "neigh")
		t.Errorf("y cannot ping6 r2 at the re-used fd00:84::b0 at once; y's neighbours:\n%s", nb)
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

	// An IPv6-only overlay: advertisements with an IPv6 address and no
	// IPv4 one, ping6 across hosts by address and by name.
	cli(t, a, "network", "create", "-d", "overlay", "--ipv6", "--ipv4=false", "--subnet", "fd00:87::/64", "o6o")
	ovRun(t, a, "p", "o6o")
	ovRun(t, b, "q", "o6o")
	if out := cli(t, b, "exec", "q", "ip", "-o", "-4", "addr", "show", "eth0"); out != "" {
		t.Errorf("q has IPv4 on an IPv6-only overlay: %q", out)
	}
	p6 := ipv6Of(t, a, "p", "o6o").GlobalIPv6Address
	if !eventually(20*time.Second, func() bool { return ping6(t, b, "q", p6) }) {
		t.Fatalf("q (host B) cannot ping6 p (host A) at %s on the IPv6-only overlay", p6)
	}
	if !ping6(t, b, "q", "p") || !ping6(t, a, "p", "q") {
		t.Error("p and q cannot ping6 each other by name on the IPv6-only overlay")
	}
}

// An IPv6 underlay: each host advertises an IPv6 address (the embedded
// etcd and the join service are reached at bracketed IPv6 URLs), the VXLAN
// devices have an IPv6 local address and IPv6 FDB destinations, and the
// VXLAN filter admits the IPv6 VTEPs of members: containers on a
// dual-stack overlay ping and ping6 each other across the two hosts. The
// overlay MTU leaves room for the 70-byte VXLAN-over-IPv6 overhead. A
// third host advertising an IPv4 address is refused at join with one line
// naming the cause, and nothing is added to the cluster.
func TestOverlayIPv6Underlay(t *testing.T) {
	under := func(i int) string {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x00, 0xfe, 15: byte(i + 1)}).String()
	}
	c := harness.New(t, harness.Options{Hosts: 3, DaemonArgs: func(i int, h *harness.Host) []string {
		args := []string{"--advertise-addr", under(i), "--node-ttl", "2s", "--resync-interval", "2s"}
		if i == 0 {
			return append(args, "--cluster-init")
		}
		join := h.JoinArgs(0)
		join[1] = "[" + under(0) + "]"
		return append(args, join...)
	}})
	for i, h := range c.Hosts {
		h.MustExec(t, "ip", "-6", "addr", "add", under(i)+"/64", "dev", "eth0", "nodad")
	}
	a, b := c.Host(0), c.Host(1)
	a.Start()
	b.Start()
	if !eventually(20*time.Second, func() bool { return len(nodes(t, b)) == 2 }) {
		t.Fatalf("host B does not list both nodes: %+v", nodes(t, b))
	}
	for _, n := range nodes(t, b) {
		if n.Addr != under(0) && n.Addr != under(1) {
			t.Errorf("node %s address %q is not its advertised IPv6 address", n.ID, n.Addr)
		}
	}
	cli(t, a, "network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.85.0.0/24", "--subnet", "fd00:85::/64", "u6")
	ovRun(t, a, "x", "u6")
	ovRun(t, b, "y", "u6")
	x4, x6 := ipOf(t, a, "x", "u6"), ipv6Of(t, a, "x", "u6").GlobalIPv6Address
	y4, y6 := ipOf(t, b, "y", "u6"), ipv6Of(t, b, "y", "u6").GlobalIPv6Address
	if !eventually(20*time.Second, func() bool { return ping(t, b, "y", x4) }) {
		nv := ovInspect(t, b, "u6")
		fdb, _ := ovKernel(t, b, nv.VXNet.Namespace)
		t.Fatalf("y (host B) cannot ping x (host A) at %s over the IPv6 underlay; peers %+v, fdb:\n%s", x4, nv.VXNet.Peers, fdb)
	}
	if !ping6(t, b, "y", x6) {
		t.Errorf("y cannot ping6 x at %s over the IPv6 underlay", x6)
	}
	if !ping(t, a, "x", y4) || !ping6(t, a, "x", y6) {
		t.Errorf("x cannot reach y (%s, %s) over the IPv6 underlay", y4, y6)
	}
	nv := ovInspect(t, a, "u6")
	for _, p := range nv.VXNet.Peers {
		if p.VTEP != under(0) && p.VTEP != under(1) {
			t.Errorf("peer %+v: VTEP is not a host's IPv6 address", p)
		}
	}
	fdb, _ := ovKernel(t, a, nv.VXNet.Namespace)
	if !strings.Contains(fdb, "dst "+under(1)) {
		t.Errorf("host A's vxlan0 FDB has no entry to host B's IPv6 VTEP %s:\n%s", under(1), fdb)
	}
	link, _ := a.Exec("nsenter", "--net="+nv.VXNet.Namespace, "ip", "-d", "link", "show", "vxlan0")
	if !strings.Contains(link, "local "+under(0)) {
		t.Errorf("vxlan0 on host A does not use the IPv6 VTEP %s as local address:\n%s", under(0), link)
	}
	if mtu := cli(t, a, "exec", "x", "cat", "/sys/class/net/eth0/mtu"); mtu != "1430" {
		t.Errorf("x eth0 MTU = %s, want 1430 on a 1500 IPv6 underlay", mtu)
	}

	// Host C advertises an IPv4 address (a VXLAN device has one local
	// address family): refused at join, nothing added (node records, etcd
	// members and users as before).
	ca, err := pki.Dir(filepath.Join(a.DataRoot, "cluster")).LoadCA()
	if err != nil {
		t.Fatal(err)
	}
	rootCert, err := ca.Leaf(pki.RootUser, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	admin := secEtcd(t, a, "["+under(0)+"]:2379", ca, &rootCert)
	counts := func() (members, users int) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ml, err := admin.MemberList(ctx)
		if err != nil {
			t.Fatalf("etcd member list: %v", err)
		}
		ul, err := admin.UserList(ctx)
		if err != nil {
			t.Fatalf("etcd user list: %v", err)
		}
		return len(ml.Members), len(ul.Users)
	}
	members, users := counts()
	hc := c.Host(2)
	out, code := hc.RunDaemonToExit(60*time.Second, "--advertise-addr", hc.Addr.String())
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := "advertise address " + hc.Addr.String() + " is IPv4, but this cluster's hosts advertise IPv6 addresses"
	if last := lines[len(lines)-1]; code <= 0 || !strings.Contains(last, want) {
		t.Errorf("host C (IPv4) joining the IPv6 cluster: exit %d, last line %q, want non-zero and %q; output:\n%s", code, last, want, out)
	}
	if n := len(nodes(t, a)); n != 2 {
		t.Errorf("after the refused join host A lists %d nodes, want 2", n)
	}
	if m, u := counts(); m != members || u != users {
		t.Errorf("after the refused join: %d etcd members and %d users, want %d and %d", m, u, members, users)
	}
}
