package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/testreq"
)

// Real-kernel tests. Everything happens in namespaces pinned under
// t.TempDir(): a "host" namespace given to the driver as HostNetns and
// "sandbox" namespaces for containers. Deleting the namespaces removes
// every link the test made in them.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testreq.Skip(t, "needs root: creates network namespaces, bridges and veths")
	}
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func mounted(t *testing.T, p string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == p {
			return true
		}
	}
	return false
}

// newNS creates a pinned namespace that is deleted (and checked to be
// unmounted) when the test ends.
func newNS(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+"-"+randHex(t, 8))
	if err := netns.Create(p); err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(p); err != nil {
			t.Errorf("delete netns %s: %v", p, err)
		}
		if mounted(t, p) {
			t.Errorf("netns %s still mounted", p)
		}
	})
	return p
}

func handle(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	h, err := netns.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// linkNames lists the links in a namespace, sorted.
func linkNames(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

func wantLinks(t *testing.T, h *netlink.Handle, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := linkNames(t, h); !slices.Equal(got, want) {
		t.Errorf("links = %v, want %v", got, want)
	}
}

func inNS(ns string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = cancel // released when the command's context expires; commands are short
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + ns}, args...)...)
}

func ping(ns string, to netip.Addr) bool {
	return inNS(ns, "ping", "-c1", "-W1", to.String()).Run() == nil
}

func mustPing(t *testing.T, ns string, to netip.Addr) {
	t.Helper()
	// The first packet may wait for neighbour resolution; allow a retry.
	for i := 0; i < 3; i++ {
		if ping(ns, to) {
			return
		}
	}
	t.Errorf("ping %s from %s failed", to, filepath.Base(ns))
}

func mustNotPing(t *testing.T, ns string, to netip.Addr) {
	t.Helper()
	if ping(ns, to) {
		t.Errorf("ping %s from %s succeeded, want failure", to, filepath.Base(ns))
	}
}

// addVeth makes an unmarked veth pair in h's namespace and returns the
// first end.
func addVeth(t *testing.T, h *netlink.Handle, name, peer string) netlink.Link {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func testNetwork(t *testing.T, subnet string, opts map[string]string) model.Network {
	p := netip.MustParsePrefix(subnet)
	return model.Network{
		ID:      randHex(t, 64),
		Name:    "test",
		Driver:  Type,
		Scope:   model.ScopeLocal,
		IPAM:    []model.IPAMConfig{{Subnet: p, Gateway: p.Addr().Next()}},
		Options: opts,
	}
}

func testEndpoint(t *testing.T, n model.Network, host byte, ifName string) model.Endpoint {
	sub := n.IPAM[0].Subnet
	b := sub.Addr().As4()
	b[3] = host
	a := netip.AddrFrom4(b)
	return model.Endpoint{
		ID:        randHex(t, 64),
		NetworkID: n.ID,
		Addr:      netip.PrefixFrom(a, sub.Bits()),
		Gateway:   n.IPAM[0].Gateway,
		MAC:       model.MACForIP(a),
		IfName:    ifName,
	}
}

func sandbox(ns string) driver.JoinInfo {
	return driver.JoinInfo{
		Sandbox:      model.Sandbox{ID: filepath.Base(ns), NetnsPath: ns},
		DefaultRoute: true,
	}
}

func readForward(t *testing.T, ns string) string {
	t.Helper()
	var out []byte
	var err error
	if ns == "" {
		out, err = os.ReadFile(ipForwardPath)
	} else {
		out, err = inNS(ns, "cat", ipForwardPath).Output()
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func TestBridgeEndToEnd(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	hostNS := newNS(t, "host")
	sbA, sbB := newNS(t, "sba"), newNS(t, "sbb")
	hh := handle(t, hostNS)
	ha, hb := handle(t, sbA), handle(t, sbB)
	d := New(Options{HostNetns: hostNS})

	rootForward := readForward(t, "")
	n1 := testNetwork(t, "198.51.100.0/24", map[string]string{model.OptMTU: "1400"})
	if err := d.CreateNetwork(ctx, n1); err != nil {
		t.Fatalf("CreateNetwork: %v", err)
	}
	if err := d.CreateNetwork(ctx, n1); err != nil {
		t.Fatalf("CreateNetwork again: %v", err)
	}
	br1 := BridgeName(n1)
	wantLinks(t, hh, "lo", br1)
	if got := readForward(t, hostNS); got != "1" {
		t.Errorf("ip_forward in host netns = %s, want 1", got)
	}
	if got := readForward(t, ""); got != rootForward {
		t.Errorf("ip_forward in the machine's namespace changed from %s to %s", rootForward, got)
	}
	if fresh := newNS(t, "fresh"); readForward(t, fresh) != "0" {
		t.Log("fresh namespaces start with ip_forward=1 here; the check above proves less")
	}

	epA := testEndpoint(t, n1, 2, "eth0")
	epB := testEndpoint(t, n1, 3, "eth0")
	if err := d.Join(ctx, n1, epA, sandbox(sbA)); err != nil {
		t.Fatalf("Join A: %v", err)
	}
	if err := d.Join(ctx, n1, epB, sandbox(sbB)); err != nil {
		t.Fatalf("Join B: %v", err)
	}
	gw1 := n1.IPAM[0].Gateway

	t.Run("traffic", func(t *testing.T) {
		mustPing(t, sbA, epB.Addr.Addr())
		mustPing(t, sbB, epA.Addr.Addr())
		mustPing(t, sbA, gw1)
		mustPing(t, sbB, gw1)
	})

	t.Run("interface", func(t *testing.T) {
		for _, c := range []struct {
			h  *netlink.Handle
			ep model.Endpoint
		}{{ha, epA}, {hb, epB}} {
			l, err := c.h.LinkByName("eth0")
			if err != nil {
				t.Fatalf("eth0 in sandbox: %v", err)
			}
			if got := l.Attrs().HardwareAddr.String(); got != c.ep.MAC.String() {
				t.Errorf("MAC = %s, want %s", got, c.ep.MAC)
			}
			if got := l.Attrs().MTU; got != 1400 {
				t.Errorf("MTU = %d, want 1400", got)
			}
			routes, err := c.h.RouteList(l, netlink.FAMILY_V4)
			if err != nil {
				t.Fatal(err)
			}
			var def bool
			for _, r := range routes {
				if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(gw1.AsSlice()) {
					def = true
				}
			}
			if !def {
				t.Errorf("no default route via %s in %v", gw1, routes)
			}
		}
		// Only the two veth host ends and the bridge in the host netns.
		wantLinks(t, hh, "lo", br1, HostVethName(epA.ID), HostVethName(epB.ID))
		wantLinks(t, ha, "lo", "eth0")
	})

	t.Run("join again is harmless", func(t *testing.T) {
		before, _ := hh.LinkByName(HostVethName(epA.ID))
		if err := d.Join(ctx, n1, epA, sandbox(sbA)); err != nil {
			t.Fatalf("Join again: %v", err)
		}
		after, _ := hh.LinkByName(HostVethName(epA.ID))
		if before.Attrs().Index != after.Attrs().Index {
			t.Error("Join again replaced an intact veth")
		}
		mustPing(t, sbA, epB.Addr.Addr())
		wantLinks(t, ha, "lo", "eth0")
	})

	t.Run("join repairs a stale half", func(t *testing.T) {
		// The sandbox end got renamed (a crash between create and rename
		// looks the same): Join replaces the pair.
		l, err := ha.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if err := ha.LinkSetDown(l); err != nil {
			t.Fatal(err)
		}
		if err := ha.LinkSetName(l, "stale0"); err != nil {
			t.Fatal(err)
		}
		if err := d.Join(ctx, n1, epA, sandbox(sbA)); err != nil {
			t.Fatalf("Join repair: %v", err)
		}
		wantLinks(t, ha, "lo", "eth0")
		mustPing(t, sbA, epB.Addr.Addr())
	})

	t.Run("second network as eth1", func(t *testing.T) {
		n2 := testNetwork(t, "203.0.113.0/24", nil)
		if err := d.CreateNetwork(ctx, n2); err != nil {
			t.Fatalf("CreateNetwork 2: %v", err)
		}
		ep := testEndpoint(t, n2, 2, "eth1")
		ji := sandbox(sbA)
		ji.DefaultRoute = false
		if err := d.Join(ctx, n2, ep, ji); err != nil {
			t.Fatalf("Join eth1: %v", err)
		}
		l, err := ha.LinkByName("eth1")
		if err != nil {
			t.Fatalf("eth1: %v", err)
		}
		if l.Attrs().MTU != DefaultMTU {
			t.Errorf("eth1 MTU = %d, want %d", l.Attrs().MTU, DefaultMTU)
		}
		mustPing(t, sbA, n2.IPAM[0].Gateway)
		mustPing(t, sbA, epB.Addr.Addr()) // eth0 still works
		if err := d.Leave(ctx, n2, ep, ji.Sandbox); err != nil {
			t.Fatalf("Leave eth1: %v", err)
		}
		if err := d.DeleteNetwork(ctx, n2); err != nil {
			t.Fatalf("DeleteNetwork 2: %v", err)
		}
		wantLinks(t, ha, "lo", "eth0")
		wantLinks(t, hh, "lo", br1, HostVethName(epA.ID), HostVethName(epB.ID))
	})

	t.Run("failed join leaves nothing", func(t *testing.T) {
		sbC := newNS(t, "sbc")
		hc := handle(t, sbC)
		ep := testEndpoint(t, n1, 4, "eth0")
		ep.Gateway = netip.MustParseAddr("192.0.2.1") // not on link: the route fails
		if err := d.Join(ctx, n1, ep, sandbox(sbC)); err == nil {
			t.Fatal("Join with an unreachable gateway succeeded")
		}
		wantLinks(t, hc, "lo")
		wantLinks(t, hh, "lo", br1, HostVethName(epA.ID), HostVethName(epB.ID))

		// An interface of that name that is not ours: error, nothing left.
		addVeth(t, hc, "eth0", "peer0")
		ep = testEndpoint(t, n1, 4, "eth0")
		if err := d.Join(ctx, n1, ep, sandbox(sbC)); err == nil {
			t.Fatal("Join over a foreign eth0 succeeded")
		}
		wantLinks(t, hc, "lo", "eth0", "peer0")
		wantLinks(t, hh, "lo", br1, HostVethName(epA.ID), HostVethName(epB.ID))
	})

	t.Run("leave", func(t *testing.T) {
		if err := d.Leave(ctx, n1, epB, model.Sandbox{NetnsPath: sbB}); err != nil {
			t.Fatalf("Leave: %v", err)
		}
		if err := d.Leave(ctx, n1, epB, model.Sandbox{NetnsPath: sbB}); err != nil {
			t.Fatalf("Leave again: %v", err)
		}
		wantLinks(t, hb, "lo")
		wantLinks(t, hh, "lo", br1, HostVethName(epA.ID))
		mustNotPing(t, sbA, epB.Addr.Addr())
		mustPing(t, sbA, gw1)
	})

	t.Run("delete network", func(t *testing.T) {
		if err := d.Leave(ctx, n1, epA, model.Sandbox{NetnsPath: sbA}); err != nil {
			t.Fatalf("Leave A: %v", err)
		}
		if err := d.DeleteNetwork(ctx, n1); err != nil {
			t.Fatalf("DeleteNetwork: %v", err)
		}
		if err := d.DeleteNetwork(ctx, n1); err != nil {
			t.Fatalf("DeleteNetwork again: %v", err)
		}
		wantLinks(t, hh, "lo")
		wantLinks(t, ha, "lo")
	})
}

func TestCreateNetworkConflicts(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	hostNS := newNS(t, "host")
	hh := handle(t, hostNS)
	d := New(Options{HostNetns: hostNS})

	// A non-bridge link with the bridge's name.
	n := testNetwork(t, "198.51.100.0/24", nil)
	addVeth(t, hh, BridgeName(n), "peer0")
	if err := d.CreateNetwork(ctx, n); err == nil {
		t.Error("CreateNetwork over a veth link succeeded")
	}
	if err := d.DeleteNetwork(ctx, n); err != nil {
		t.Errorf("DeleteNetwork: %v", err)
	}
	wantLinks(t, hh, "lo", BridgeName(n), "peer0") // not ours: kept

	// Another network's bridge, named by option.
	opts := map[string]string{model.OptBridgeName: "vxtest" + randHex(t, 6)}
	a := testNetwork(t, "198.51.100.0/24", opts)
	b := testNetwork(t, "203.0.113.0/24", opts)
	if err := d.CreateNetwork(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := d.CreateNetwork(ctx, b); err == nil {
		t.Error("CreateNetwork on another network's bridge succeeded")
	}
	if err := d.DeleteNetwork(ctx, b); err != nil {
		t.Errorf("DeleteNetwork b: %v", err)
	}
	if _, err := hh.LinkByName(opts[model.OptBridgeName]); err != nil {
		t.Errorf("DeleteNetwork of b removed a's bridge: %v", err)
	}
	if err := d.DeleteNetwork(ctx, a); err != nil {
		t.Errorf("DeleteNetwork a: %v", err)
	}

	// A user's unmarked bridge is used and never deleted.
	user := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "userbr" + randHex(t, 6)}}
	if err := hh.LinkAdd(user); err != nil {
		t.Fatal(err)
	}
	u := testNetwork(t, "198.51.100.0/24", map[string]string{model.OptBridgeName: user.Name})
	if err := d.CreateNetwork(ctx, u); err != nil {
		t.Fatalf("CreateNetwork on a user bridge: %v", err)
	}
	sb := newNS(t, "sb")
	ep := testEndpoint(t, u, 2, "eth0")
	if err := d.Join(ctx, u, ep, sandbox(sb)); err != nil {
		t.Fatalf("Join on a user bridge: %v", err)
	}
	mustPing(t, sb, u.IPAM[0].Gateway)
	if err := d.Leave(ctx, u, ep, model.Sandbox{NetnsPath: sb}); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNetwork(ctx, u); err != nil {
		t.Fatal(err)
	}
	wantLinks(t, hh, "lo", BridgeName(n), "peer0", user.Name)
}

func TestSweep(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	hostNS := newNS(t, "host")
	sb := newNS(t, "sb")
	hh := handle(t, hostNS)
	hs := handle(t, sb)
	d := New(Options{HostNetns: hostNS})

	keep := testNetwork(t, "198.51.100.0/24", nil)
	orphan := testNetwork(t, "203.0.113.0/24", nil)
	for _, n := range []model.Network{keep, orphan} {
		if err := d.CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	epKeep := testEndpoint(t, keep, 2, "eth0")
	epOrphan := testEndpoint(t, keep, 3, "eth1")
	for _, ep := range []model.Endpoint{epKeep, epOrphan} {
		ji := sandbox(sb)
		ji.DefaultRoute = ep.IfName == "eth0"
		if err := d.Join(ctx, keep, ep, ji); err != nil {
			t.Fatal(err)
		}
	}
	// Unmarked links, one with a name in our style: never touched.
	if err := hh.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vx-" + randHex(t, 12)}}); err != nil {
		t.Fatal(err)
	}
	addVeth(t, hh, "vxv"+randHex(t, 12), "other0")
	// A veth marked by somebody else's tool with a non-vxnet alias.
	foreign := addVeth(t, hh, "other1", "other2")
	if err := hh.LinkSetAlias(foreign, "ep:"+epOrphan.ID); err != nil {
		t.Fatal(err)
	}
	before := linkNames(t, hh)

	if err := d.Sweep(ctx, []model.Network{keep}, []model.Endpoint{epKeep}); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	var want []string
	for _, name := range before {
		if name != BridgeName(orphan) && name != HostVethName(epOrphan.ID) {
			want = append(want, name)
		}
	}
	wantLinks(t, hh, want...)
	wantLinks(t, hs, "lo", "eth0")
	mustPing(t, sb, keep.IPAM[0].Gateway)

	// Sweeping again changes nothing.
	if err := d.Sweep(ctx, []model.Network{keep}, []model.Endpoint{epKeep}); err != nil {
		t.Fatalf("Sweep again: %v", err)
	}
	wantLinks(t, hh, want...)
}

func TestJoinNeedsOwnNamespace(t *testing.T) {
	d := New(Options{HostNetns: "/nonexistent"})
	n := model.Network{ID: "n1"}
	ep := model.Endpoint{ID: "e1", IfName: "eth0", Addr: netip.MustParsePrefix("198.51.100.2/24"),
		MAC: model.MACForIP(netip.MustParseAddr("198.51.100.2"))}
	err := d.Join(context.Background(), n, ep, driver.JoinInfo{Sandbox: model.Sandbox{HostNetwork: true}})
	if !errors.Is(err, driver.ErrInvalid) {
		t.Fatalf("Join into a host-network sandbox = %v, want ErrInvalid", err)
	}
}

// An endpoint joined again with an IPv6 address gains it and the IPv6
// default route in place (the gateway bridge interface of a container
// connected to its first overlay network with IPv6), and joined again
// without one loses both, its IPv4 side untouched.
func TestJoinIPv6InPlace(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	hostNS, sb := newNS(t, "host"), newNS(t, "sb6")
	hh, sh := handle(t, hostNS), handle(t, sb)
	d := New(Options{HostNetns: hostNS})
	n := testNetwork(t, "198.51.100.0/24", nil)
	n.EnableIPv6 = true
	n.IPAM = append(n.IPAM, model.IPAMConfig{Subnet: netip.MustParsePrefix("fd00:77::/64"), Gateway: netip.MustParseAddr("fd00:77::1")})
	if err := d.CreateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	// An address of the host outside the subnet: reached only through
	// the default route.
	far := netip.MustParseAddr("2001:db8:77::1")
	lo, err := hh.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := hh.AddrAdd(lo, &netlink.Addr{IPNet: netlink.NewIPNet(far.AsSlice())}); err != nil {
		t.Fatal(err)
	}
	v4 := testEndpoint(t, n, 2, "eth0")
	if err := d.Join(ctx, n, v4, sandbox(sb)); err != nil {
		t.Fatal(err)
	}
	mustNotPing(t, sb, far)
	dual := v4
	dual.Addr6, dual.Gateway6 = netip.MustParsePrefix("fd00:77::2/64"), netip.MustParseAddr("fd00:77::1")
	if err := d.Join(ctx, n, dual, sandbox(sb)); err != nil {
		t.Fatal(err)
	}
	mustPing(t, sb, far)
	mustPing(t, sb, n.IPAM[0].Gateway)
	if err := d.Join(ctx, n, v4, sandbox(sb)); err != nil {
		t.Fatal(err)
	}
	mustNotPing(t, sb, far)
	mustNotPing(t, sb, dual.Gateway6)
	mustPing(t, sb, n.IPAM[0].Gateway)
	l, err := sh.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := sh.AddrList(l, netlink.FAMILY_V6)
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			t.Errorf("eth0 keeps %s after the join without IPv6", a.IPNet)
		}
	}
	routes, _ := sh.RouteList(l, netlink.FAMILY_V6)
	for _, r := range routes {
		if r.Gw != nil {
			t.Errorf("eth0 keeps the IPv6 route %s via %s", r.Dst, r.Gw)
		}
	}
}

// A bridge keeps its MAC address as ports come and go, so containers keep
// reaching the gateway through the neighbour entry they have cached. The
// kernel gives a bridge made without an address the lowest MAC of its
// ports: a port with a lower one (set by hand here, as a joining veth may
// get one by chance) would move the gateway to another address, and A,
// whose cached entry stays "reachable" for up to a minute, would send to
// the old one and be dropped. The same for a bridge an older vxnet made
// without an address: CreateNetwork pins it.
func TestBridgeMACStable(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	for _, older := range []bool{false, true} {
		hostNS := newNS(t, "host")
		hh := handle(t, hostNS)
		d := New(Options{HostNetns: hostNS})
		n := testNetwork(t, "198.51.100.0/24", nil)
		if older {
			old := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName(n), TxQLen: -1}}
			if err := hh.LinkAdd(old); err != nil {
				t.Fatal(err)
			}
			if err := hh.LinkSetAlias(old, netMark(n.ID)); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
		gw := n.IPAM[0].Gateway
		// join adds a container and gives its host veth the MAC low.
		join := func(host, low byte) string {
			sb := newNS(t, "sb")
			ep := testEndpoint(t, n, host, "eth0")
			if err := d.Join(ctx, n, ep, sandbox(sb)); err != nil {
				t.Fatal(err)
			}
			if low != 0 {
				hv, err := hh.LinkByName(HostVethName(ep.ID))
				if err != nil {
					t.Fatal(err)
				}
				if err := hh.LinkSetHardwareAddr(hv, net.HardwareAddr{0, 0, 0, 0, 0, low}); err != nil {
					t.Fatal(err)
				}
			}
			return sb
		}
		bridgeMAC := func() string {
			br, err := hh.LinkByName(BridgeName(n))
			if err != nil {
				t.Fatal(err)
			}
			return br.Attrs().HardwareAddr.String()
		}
		join(2, 5)
		a := join(3, 0)
		mustPing(t, a, gw) // A caches the gateway's MAC
		before := bridgeMAC()
		b := join(4, 1)
		if !ping(a, gw) && !ping(a, gw) {
			t.Errorf("older bridge %v: A lost its gateway when another port got a lower MAC", older)
		}
		if got := bridgeMAC(); got != before {
			t.Errorf("older bridge %v: bridge MAC moved from %s to %s", older, before, got)
		}
		mustPing(t, b, gw)
	}
}
