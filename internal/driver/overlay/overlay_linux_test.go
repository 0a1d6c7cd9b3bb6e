package overlay

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/testreq"
)

// testbed is an underlay: a switch namespace with a bridge and hosts
// connected to it by veths (eth0 192.0.2.<i>/24), one Driver per host.
// Every namespace is pinned under a temp dir and removed in t.Cleanup.
type testbed struct {
	t     *testing.T
	dir   string
	hosts []*testHost
}

type testHost struct {
	name    string
	ns      string
	vtep    netip.Addr
	execDir string
	d       *Driver
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randVNI() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return 4096 + binary.BigEndian.Uint32(b[:])%(1<<24-8192)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testreq.Skip(t, "needs root: creates network namespaces, veths, bridges and vxlan devices")
	}
	for _, tool := range []string{"nsenter", "ping", "bridge"} {
		if _, err := exec.LookPath(tool); err != nil {
			testreq.Skipf(t, "needs %s: %v", tool, err)
		}
	}
}

// newNS creates a pinned namespace removed at cleanup.
func (tb *testbed) newNS(name string) string {
	tb.t.Helper()
	path := filepath.Join(tb.dir, name)
	tb.t.Cleanup(func() {
		if err := netns.Delete(path); err != nil {
			tb.t.Errorf("cleanup: %v", err)
		}
	})
	if err := netns.Create(path); err != nil {
		tb.t.Fatal(err)
	}
	return path
}

func newTestbed(t *testing.T, nhosts int) *testbed {
	needRoot(t)
	tb := &testbed{t: t, dir: t.TempDir()}
	tok := randHex(3)
	sw := tb.newNS("switch-" + tok)
	swh, err := netns.Handle(sw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(swh.Close)
	brU := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-underlay", TxQLen: -1}}
	if err := swh.LinkAdd(brU); err != nil {
		t.Fatal(err)
	}
	if err := swh.LinkSetUp(brU); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= nhosts; i++ {
		h := &testHost{name: fmt.Sprintf("host%d", i), vtep: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})}
		h.ns = tb.newNS(fmt.Sprintf("%s-%s", h.name, tok))
		fd, err := nsFd(h.ns)
		if err != nil {
			t.Fatal(err)
		}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: fmt.Sprintf("to-h%d", i), MTU: 1500, TxQLen: -1},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(fd),
			PeerTxQLen:    -1,
		}
		err = swh.LinkAdd(veth)
		closeFd(fd)
		if err != nil {
			t.Fatal(err)
		}
		sl, err := swh.LinkByName(veth.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := swh.LinkSetMaster(sl, brU); err != nil {
			t.Fatal(err)
		}
		if err := swh.LinkSetUp(sl); err != nil {
			t.Fatal(err)
		}
		hh, err := netns.Handle(h.ns)
		if err != nil {
			t.Fatal(err)
		}
		el, err := hh.LinkByName("eth0")
		if err == nil {
			err = hh.AddrAdd(el, &netlink.Addr{IPNet: &net.IPNet{IP: h.vtep.AsSlice(), Mask: net.CIDRMask(24, 32)}})
		}
		if err == nil {
			err = hh.LinkSetUp(el)
		}
		hh.Close()
		if err != nil {
			t.Fatal(err)
		}
		h.execDir = t.TempDir()
		h.d = tb.newDriver(h)
		tb.hosts = append(tb.hosts, h)
	}
	// Whatever the test did, leave no overlay namespace mounted (the
	// drivers' own teardown is what the tests check; this is the safety net).
	t.Cleanup(func() {
		for _, h := range tb.hosts {
			paths, _ := filepath.Glob(filepath.Join(h.execDir, "netns", "ov-*"))
			for _, p := range paths {
				netns.Delete(p)
			}
		}
	})
	return tb
}

func (tb *testbed) newDriver(h *testHost) *Driver {
	tb.t.Helper()
	d, err := New(Options{HostNetns: h.ns, ExecRoot: h.execDir, VTEP: h.vtep})
	if err != nil {
		tb.t.Fatal(err)
	}
	return d
}

func closeFd(fd int) { os.NewFile(uintptr(fd), "ns").Close() }

func newNetwork(subnet string) model.Network {
	p := netip.MustParsePrefix(subnet)
	return model.Network{
		ID:     randHex(32),
		Name:   "ov-" + randHex(3),
		Driver: Type,
		Scope:  model.ScopeGlobal,
		VNI:    randVNI(),
		IPAM:   []model.IPAMConfig{{Subnet: p, Gateway: p.Addr().Next()}},
	}
}

// container is a sandbox namespace with one endpoint on a network.
type container struct {
	sb   model.Sandbox
	ep   model.Endpoint
	host *testHost
}

// join makes a sandbox on h and joins it to n with the given address.
func (tb *testbed) join(h *testHost, n model.Network, ip string) *container {
	tb.t.Helper()
	addr := netip.MustParseAddr(ip)
	id := randHex(32)
	sbPath := tb.newNS("sb-" + id[:8])
	c := &container{host: h, sb: model.Sandbox{ID: id, ContainerID: id, NetnsPath: sbPath}}
	mtu, err := h.d.MTU(n)
	if err != nil {
		tb.t.Fatal(err)
	}
	c.ep = model.Endpoint{
		ID:          randHex(32),
		NetworkID:   n.ID,
		ContainerID: id,
		Addr:        netip.PrefixFrom(addr, n.IPAM[0].Subnet.Bits()),
		Gateway:     n.IPAM[0].Gateway,
		MAC:         model.MACForIP(addr),
		IfName:      "eth0",
		MTU:         mtu,
	}
	if err := h.d.CreateNetwork(context.Background(), n); err != nil {
		tb.t.Fatal(err)
	}
	if err := h.d.Join(context.Background(), n, c.ep, driver.JoinInfo{Sandbox: c.sb, DefaultRoute: true}); err != nil {
		tb.t.Fatal(err)
	}
	// Answer broadcast pings (for the head-end replication test).
	if out, err := exec.Command("nsenter", "--net="+sbPath, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0").CombinedOutput(); err != nil {
		tb.t.Fatalf("sysctl: %v: %s", err, out)
	}
	return c
}

func (c *container) peer() Peer {
	return Peer{IP: c.ep.Addr.Addr(), MAC: c.ep.MAC, VTEP: c.host.vtep, NodeID: c.host.name}
}

func peersOf(cs ...*container) []Peer {
	var ps []Peer
	for _, c := range cs {
		ps = append(ps, c.peer())
	}
	return ps
}

// setPeers gives every host the same peer list (as the control plane would).
func (tb *testbed) setPeers(n model.Network, peers []Peer) {
	tb.t.Helper()
	for _, h := range tb.hosts {
		if err := h.d.SetPeers(context.Background(), n, peers); err != nil {
			tb.t.Fatalf("%s: SetPeers: %v", h.name, err)
		}
	}
}

func canPing(t *testing.T, from *container, to string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "nsenter", "--net="+from.sb.NetnsPath, "ping", "-n", "-q", "-c1", "-W1", to).Run() == nil
}

func mustPing(t *testing.T, from *container, to string) {
	t.Helper()
	// The first packet may race ARP; allow a couple of tries.
	for i := 0; i < 3; i++ {
		if canPing(t, from, to) {
			return
		}
	}
	t.Fatalf("ping %s -> %s failed", from.ep.Addr.Addr(), to)
}

func mustNotPing(t *testing.T, from *container, to string) {
	t.Helper()
	if canPing(t, from, to) {
		t.Fatalf("ping %s -> %s succeeded, want failure", from.ep.Addr.Addr(), to)
	}
}

func nsenter(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func linkMTU(t *testing.T, ns, name string) int {
	t.Helper()
	h, err := netns.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().MTU
}

// hostLinks lists the link names in a host namespace.
func hostLinks(t *testing.T, h *testHost) []string {
	t.Helper()
	nh, err := netns.Handle(h.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	links, err := nh.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name+"/"+l.Type())
	}
	return names
}

// assertClean checks that h holds nothing of the overlay driver: no
// overlay namespace file or mount under its exec root, and no links in the
// host namespace other than lo and the underlay eth0.
func assertClean(t *testing.T, h *testHost) {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(h.execDir, "netns", "ov-*"))
	if len(paths) != 0 {
		t.Errorf("%s: overlay namespaces left: %v", h.name, paths)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), h.execDir) {
		t.Errorf("%s: mounts left under %s", h.name, h.execDir)
	}
	for _, l := range hostLinks(t, h) {
		if l != "lo/device" && l != "eth0/veth" {
			t.Errorf("%s: unexpected link in host namespace: %s", h.name, l)
		}
	}
}

func TestOverlayTraffic(t *testing.T) {
	tb := newTestbed(t, 3)
	h1, h2, h3 := tb.hosts[0], tb.hosts[1], tb.hosts[2]
	ctx := context.Background()
	n := newNetwork("198.51.100.0/24")

	if mtu, err := h1.d.MTU(n); err != nil || mtu != 1450 {
		t.Fatalf("MTU = %d, %v; want 1450 on a 1500 underlay", mtu, err)
	}
	c1 := tb.join(h1, n, "198.51.100.11")
	c2 := tb.join(h2, n, "198.51.100.12")
	c3 := tb.join(h3, n, "198.51.100.13")
	if mtu := linkMTU(t, c1.sb.NetnsPath, "eth0"); mtu != 1450 {
		t.Errorf("container eth0 MTU = %d, want 1450", mtu)
	}

	t.Run("no traffic before peers are programmed", func(t *testing.T) {
		mustNotPing(t, c1, "198.51.100.12")
	})

	all := peersOf(c1, c2, c3)
	tb.setPeers(n, all)

	t.Run("unicast after SetPeers", func(t *testing.T) {
		mustPing(t, c1, "198.51.100.12")
		mustPing(t, c2, "198.51.100.13")
		mustPing(t, c3, "198.51.100.11")
		// The local gateway answers too.
		mustPing(t, c1, "198.51.100.1")
	})

	t.Run("programmed state and idempotence", func(t *testing.T) {
		st, err := h1.d.Programmed(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		want := desiredState(h1.vtep, all)
		if fmt.Sprint(st) != fmt.Sprint(want) {
			t.Fatalf("Programmed:\n got %v\nwant %v", st, want)
		}
		if len(st.FDB) != 4 || len(st.Neigh) != 2 {
			t.Errorf("want 2 unicast + 2 BUM FDB entries and 2 neighbours, got %v", st)
		}
		if err := h1.d.SetPeers(ctx, n, all); err != nil {
			t.Fatal(err)
		}
		st2, _ := h1.d.Programmed(ctx, n)
		if fmt.Sprint(st2) != fmt.Sprint(st) {
			t.Errorf("second SetPeers changed state:\n%v\n%v", st, st2)
		}
	})

	t.Run("broadcast is replicated to every remote host", func(t *testing.T) {
		out, _ := exec.Command("nsenter", "--net="+c1.sb.NetnsPath, "ping", "-n", "-b", "-c2", "-W2", "198.51.100.255").CombinedOutput()
		for _, ip := range []string{"198.51.100.12", "198.51.100.13"} {
			if !strings.Contains(string(out), "from "+ip+":") {
				t.Errorf("no broadcast reply from %s:\n%s", ip, out)
			}
		}
	})

	t.Run("drift is repaired by Resync", func(t *testing.T) {
		ovns := h1.d.NetnsPath(n)
		nsenter(t, ovns, "bridge", "fdb", "del", c2.ep.MAC.String(), "dev", "vxlan0", "dst", "192.0.2.2")
		nsenter(t, ovns, "bridge", "fdb", "del", "00:00:00:00:00:00", "dev", "vxlan0", "dst", "192.0.2.2")
		mustNotPing(t, c1, "198.51.100.12")
		if err := h1.d.Resync(ctx); err != nil {
			t.Fatal(err)
		}
		mustPing(t, c1, "198.51.100.12")
	})

	t.Run("removed peer is unprogrammed", func(t *testing.T) {
		tb.setPeers(n, peersOf(c1, c3))
		for _, h := range []*testHost{h1, h3} {
			st, err := h.d.Programmed(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			s := fmt.Sprint(st)
			if strings.Contains(s, c2.ep.MAC.String()) || strings.Contains(s, "198.51.100.12") || strings.Contains(s, "192.0.2.2") {
				t.Errorf("%s still holds entries of the removed peer: %v", h.name, st)
			}
		}
		mustNotPing(t, c1, "198.51.100.12")
		mustPing(t, c1, "198.51.100.13")
		tb.setPeers(n, all)
		mustPing(t, c1, "198.51.100.12")
	})

	t.Run("address moved to another host is reachable at once", func(t *testing.T) {
		if err := h2.d.Leave(ctx, n, c2.ep, c2.sb); err != nil {
			t.Fatal(err)
		}
		if netns.IsPinned(h2.d.NetnsPath(n)) {
			t.Fatal("Leave of the last container kept the overlay namespace")
		}
		assertClean(t, h2)
		c2moved := tb.join(h3, n, "198.51.100.12")
		tb.setPeers(n, peersOf(c1, c2moved, c3))
		// c1's ARP cache and br0 still hold the MAC; only the FDB entry
		// changes its VTEP (replace), so the first ping must pass.
		if !canPing(t, c1, "198.51.100.12") {
			t.Fatal("first ping to the moved address failed")
		}
		mustPing(t, c2moved, "198.51.100.13")
	})

	t.Run("Join again repairs a lost veth", func(t *testing.T) {
		nsenter(t, h3.d.NetnsPath(n), "ip", "link", "del", HostVethName(c3.ep))
		mustNotPing(t, c1, "198.51.100.13")
		if err := h3.d.Join(ctx, n, c3.ep, driver.JoinInfo{Sandbox: c3.sb, DefaultRoute: true}); err != nil {
			t.Fatal(err)
		}
		mustPing(t, c1, "198.51.100.13")
	})

	t.Run("daemon restart keeps flows", func(t *testing.T) {
		ovns := h1.d.NetnsPath(n)
		vxBefore := linkIndex(t, ovns, "vxlan0")
		ctxp, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		ping := exec.CommandContext(ctxp, "nsenter", "--net="+c1.sb.NetnsPath, "ping", "-n", "-q", "-i", "0.2", "-c", "20", "-W1", "198.51.100.13")
		var out strings.Builder
		ping.Stdout, ping.Stderr = &out, &out
		if err := ping.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); ping.Wait() })
		time.Sleep(500 * time.Millisecond)

		d := tb.newDriver(h1) // a restarted daemon: same dirs, no memory
		h1.d = d
		if err := d.CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := d.Join(ctx, n, c1.ep, driver.JoinInfo{Sandbox: c1.sb, DefaultRoute: true}); err != nil {
			t.Fatal(err)
		}
		if err := d.SetPeers(ctx, n, peersOf(c1, c3)); err != nil {
			t.Fatal(err)
		}
		ping.Wait()
		m := regexp.MustCompile(`(\d+) received`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("ping output: %s", out.String())
		}
		if got, _ := strconv.Atoi(m[1]); got < 18 {
			t.Errorf("ping across restart: %s received of 20, want >= 18\n%s", m[1], out.String())
		}
		if linkIndex(t, ovns, "vxlan0") != vxBefore {
			t.Error("restart recreated vxlan0")
		}
	})

	t.Run("last Leave and DeleteNetwork leave nothing", func(t *testing.T) {
		if err := h1.d.Leave(ctx, n, c1.ep, c1.sb); err != nil {
			t.Fatal(err)
		}
		assertClean(t, h1)
		if l, err := netns.Handle(c1.sb.NetnsPath); err == nil {
			if _, err := l.LinkByName("eth0"); err == nil {
				t.Error("container eth0 left after Leave")
			}
			l.Close()
		}
		// SetPeers without a local data plane is a no-op.
		if err := h1.d.SetPeers(ctx, n, peersOf(c3)); err != nil {
			t.Fatal(err)
		}
		assertClean(t, h1)
		if err := h3.d.DeleteNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
		assertClean(t, h3)
		if err := h3.d.DeleteNetwork(ctx, n); err != nil {
			t.Fatalf("second DeleteNetwork: %v", err)
		}
	})
}

func linkIndex(t *testing.T, ns, name string) int {
	t.Helper()
	h, err := netns.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

// TestOverlayIsolation puts two networks with the same subnet and different
// VNIs on the same hosts and points network A's FDB at network B's
// container: the frames reach host2 with A's VNI and must not be delivered
// into B.
func TestOverlayIsolation(t *testing.T) {
	tb := newTestbed(t, 2)
	h1, h2 := tb.hosts[0], tb.hosts[1]
	a := newNetwork("198.51.100.0/24")
	b := newNetwork("198.51.100.0/24")
	b.Options = map[string]string{model.OptMTU: "1400"}

	a1 := tb.join(h1, a, "198.51.100.11")
	a2 := tb.join(h2, a, "198.51.100.12")
	b1 := tb.join(h1, b, "198.51.100.21")
	b2 := tb.join(h2, b, "198.51.100.22")
	if mtu := linkMTU(t, b1.sb.NetnsPath, "eth0"); mtu != 1400 {
		t.Errorf("eth0 MTU with %s=1400 is %d", model.OptMTU, mtu)
	}
	tb.setPeers(b, peersOf(b1, b2))
	// Network A also claims B's container, on the right host.
	tb.setPeers(a, append(peersOf(a1, a2), b2.peer()))

	mustPing(t, a1, "198.51.100.12")
	mustPing(t, b1, "198.51.100.22")
	mustNotPing(t, a1, "198.51.100.22")
	mustNotPing(t, b1, "198.51.100.12")

	ctx := context.Background()
	for _, h := range tb.hosts {
		for _, n := range []model.Network{a, b} {
			if err := h.d.DeleteNetwork(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		assertClean(t, h)
	}
}

// TestOverlaySweep checks that a restarted driver removes leftovers of
// unknown networks and endpoints, and leaves unmarked devices alone.
func TestOverlaySweep(t *testing.T) {
	tb := newTestbed(t, 2)
	h1 := tb.hosts[0]
	ctx := context.Background()
	gone := newNetwork("198.51.100.0/24")
	kept := newNetwork("203.0.113.0/24")
	tb.join(h1, gone, "198.51.100.11")
	k1 := tb.join(h1, kept, "203.0.113.11")
	k2 := tb.join(h1, kept, "203.0.113.12")

	// A VXLAN device stranded in the host namespace by a crash (marked),
	// and one that is not ours (unmarked).
	hh, err := netns.Handle(h1.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer hh.Close()
	for i, alias := range []string{netAlias(gone.ID), ""} {
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("vxtest%d", i), TxQLen: -1}, VxlanId: int(randVNI()), Port: 4790 + i}
		if err := hh.LinkAdd(vx); err != nil {
			t.Fatal(err)
		}
		if alias != "" {
			if err := hh.LinkSetAlias(vx, alias); err != nil {
				t.Fatal(err)
			}
		}
	}

	d := tb.newDriver(h1)
	h1.d = d
	if err := d.Sweep(ctx, []model.Network{kept}, []model.Endpoint{k1.ep}); err != nil {
		t.Fatal(err)
	}
	if netns.IsPinned(d.NetnsPath(gone)) {
		t.Error("namespace of unknown network survived Sweep")
	}
	if _, err := hh.LinkByName("vxtest0"); err == nil {
		t.Error("marked stranded vxlan survived Sweep")
	}
	if _, err := hh.LinkByName("vxtest1"); err != nil {
		t.Errorf("unmarked vxlan was removed: %v", err)
	}
	if l, err := netns.Handle(k2.sb.NetnsPath); err == nil {
		if _, err := l.LinkByName("eth0"); err == nil {
			t.Error("veth of unknown endpoint survived Sweep")
		}
		l.Close()
	}
	if _, err := netns.Handle(k1.sb.NetnsPath); err == nil {
		if !canPing(t, k1, "203.0.113.1") {
			t.Error("known endpoint lost connectivity to its gateway after Sweep")
		}
	}
	if err := hh.LinkDel(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vxtest1"}}); err != nil {
		t.Fatal(err)
	}
	// Nothing known: everything goes.
	if err := d.Sweep(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	assertClean(t, h1)
}
