package macvlan

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/testreq"
)

func newNS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testreq.Skip(t, "needs root: creates network namespaces and links")
	}
	b := make([]byte, 6)
	rand.Read(b)
	p := filepath.Join(t.TempDir(), "ns-"+hex.EncodeToString(b))
	if err := netns.Create(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(p); err != nil {
			t.Errorf("delete %s: %v", p, err)
		}
	})
	return p
}

// linkSegment joins the host namespace (handle hh) to the "segment"
// machine's namespace seg with a veth pair: up0 in the host, up, and eth0
// in seg.
func linkSegment(t *testing.T, hh *netlink.Handle, seg string) {
	t.Helper()
	segFd, err := netns.HandleFd(seg)
	if err != nil {
		t.Fatal(err)
	}
	defer segFd.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(segFd))}
	if err := hh.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	if err := hh.LinkSetUp(veth); err != nil {
		t.Fatal(err)
	}
}

func ping(ns string, to string) bool {
	return exec.Command("nsenter", "--net="+ns, "--", "ping", "-c1", "-W1", to).Run() == nil ||
		exec.Command("nsenter", "--net="+ns, "--", "ping", "-c1", "-W2", to).Run() == nil
}

func endpoint(n model.Network, id string, host byte, ifName string) model.Endpoint {
	a := n.IPAM[0].Subnet.Addr().As4()
	a[3] = host
	addr := netip.AddrFrom4(a)
	return model.Endpoint{ID: id, NetworkID: n.ID, Addr: netip.PrefixFrom(addr, n.IPAM[0].Subnet.Bits()),
		Gateway: n.IPAM[0].Gateway, MAC: model.MACForIP(addr), IfName: ifName}
}

// Two sandboxes on a macvlan network over a veth parent reach a machine on
// the parent's segment and each other; joining again changes nothing;
// Leave removes the interface; an isolated network's parent bridge comes
// and goes with the network, and Sweep removes one whose network is gone.
func TestKernelJoinLeaveSweep(t *testing.T) {
	ctx := context.Background()
	host, seg, sb1, sb2 := newNS(t), newNS(t), newNS(t), newNS(t)
	hh, err := netns.Handle(host)
	if err != nil {
		t.Fatal(err)
	}
	defer hh.Close()
	// host:up0 <-> seg:eth0 (198.51.100.254), the "segment" machine.
	linkSegment(t, hh, seg)
	for _, args := range [][]string{{"addr", "add", "198.51.100.254/24", "dev", "eth0"}, {"link", "set", "eth0", "up"}} {
		if out, err := exec.Command("nsenter", append([]string{"--net=" + seg, "--", "ip"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}

	d := New(Options{HostNetns: host})
	n := model.Network{ID: "net1", Driver: Type, Options: map[string]string{OptParent: "up0"},
		IPAM: []model.IPAMConfig{{Subnet: netip.MustParsePrefix("198.51.100.0/24"), Gateway: netip.MustParseAddr("198.51.100.254")}}}
	if err := d.CreateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	ep1, ep2 := endpoint(n, "ep1", 10, "eth0"), endpoint(n, "ep2", 11, "eth0")
	for _, j := range []struct {
		ep model.Endpoint
		sb string
	}{{ep1, sb1}, {ep2, sb2}, {ep1, sb1}} { // ep1 twice: idempotent
		ji := driver.JoinInfo{Sandbox: model.Sandbox{ID: j.ep.ID, NetnsPath: j.sb}, DefaultRoute: true}
		if err := d.Join(ctx, n, j.ep, ji); err != nil {
			t.Fatalf("join %s: %v", j.ep.ID, err)
		}
	}
	if !ping(sb1, "198.51.100.254") || !ping(seg, "198.51.100.11") || !ping(sb1, "198.51.100.11") {
		t.Fatal("macvlan sandboxes do not reach the segment and each other")
	}
	if err := d.Leave(ctx, n, ep2, model.Sandbox{NetnsPath: sb2}); err != nil {
		t.Fatal(err)
	}
	if ping(seg, "198.51.100.11") {
		t.Error("ep2 answers after Leave")
	}
	if err := d.Leave(ctx, n, ep2, model.Sandbox{NetnsPath: sb2}); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if err := d.DeleteNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	if _, err := hh.LinkByName("up0"); err != nil {
		t.Errorf("the user's parent up0 was removed with the network: %v", err)
	}

	// Isolated networks: the parent bridge follows the network; Sweep
	// removes the one of an unknown network and keeps the known one.
	iso := func(id string) model.Network {
		return model.Network{ID: id, Driver: Type, Internal: true,
			IPAM: []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.9.0.0/24")}}}
	}
	keep, gone := iso("keep"), iso("gone")
	for _, x := range []model.Network{keep, gone} {
		if err := d.CreateNetwork(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Sweep(ctx, []model.Network{keep, n}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := hh.LinkByName(IsolatedParentName("keep")); err != nil {
		t.Errorf("sweep removed a known network's parent: %v", err)
	}
	if _, err := hh.LinkByName(IsolatedParentName("gone")); err == nil {
		t.Error("sweep left an unknown network's parent")
	}
	if err := d.DeleteNetwork(ctx, keep); err != nil {
		t.Fatal(err)
	}
	if _, err := hh.LinkByName(IsolatedParentName("keep")); err == nil {
		t.Error("isolated parent left after DeleteNetwork")
	}
}

// A network with parent up0.10 makes the 802.1q sub-interface up0.10 of up0
// (VLAN 10), its containers reach a machine on VLAN 10 of the segment, and
// the sub-interface goes with the network; one that existed before is used
// and kept. On a kernel without 802.1q support (no 8021q module) the same
// CreateNetwork must fail with the one-line error naming the module and
// leave no link behind; the traffic half then cannot run here, and the test
// says so in its log.
func TestKernelVLANParent(t *testing.T) {
	ctx := context.Background()
	host, seg, sb := newNS(t), newNS(t), newNS(t)
	hh, err := netns.Handle(host)
	if err != nil {
		t.Fatal(err)
	}
	defer hh.Close()
	linkSegment(t, hh, seg)
	d := New(Options{HostNetns: host})
	n := model.Network{ID: "vlan10", Driver: Type, Options: map[string]string{OptParent: "up0.10"},
		IPAM: []model.IPAMConfig{{Subnet: netip.MustParsePrefix("198.51.100.0/24"), Gateway: netip.MustParseAddr("198.51.100.254")}}}

	// The segment machine: eth0.10 on VLAN 10. Its creation doubles as the
	// probe of the kernel's 802.1q support.
	segVLAN := exec.Command("nsenter", "--net="+seg, "--", "ip", "link", "add", "link", "eth0", "name", "eth0.10", "type", "vlan", "id", "10")
	if out, err := segVLAN.CombinedOutput(); err != nil {
		if !strings.Contains(string(out), "Unknown device type") && !strings.Contains(string(out), "not supported") {
			t.Fatalf("ip link add eth0.10: %v %s", err, out)
		}
		err := d.CreateNetwork(ctx, n)
		if err == nil || !errors.Is(err, driver.ErrInvalid) || !strings.Contains(err.Error(), "no 802.1q VLAN support (module 8021q)") {
			t.Fatalf("CreateNetwork on a kernel without 802.1q: got %v, want the error naming module 8021q", err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
		if l, lerr := hh.LinkByName("up0.10"); lerr == nil {
			t.Errorf("a failed CreateNetwork left %s behind", l.Attrs().Name)
		}
		t.Log("this kernel has no 802.1q support: the refusal is checked; sub-interface creation, traffic on VLAN 10 and removal need a kernel with 8021q")
		return
	}
	for _, args := range [][]string{{"addr", "add", "198.51.100.254/24", "dev", "eth0.10"}, {"link", "set", "eth0", "up"}, {"link", "set", "eth0.10", "up"}} {
		if out, err := exec.Command("nsenter", append([]string{"--net=" + seg, "--", "ip"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}

	if err := d.CreateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	sub, err := hh.LinkByName("up0.10")
	if err != nil {
		t.Fatalf("CreateNetwork made no up0.10: %v", err)
	}
	if v, ok := sub.(*netlink.Vlan); !ok || v.VlanId != 10 {
		t.Fatalf("up0.10 is %T, want an 802.1q link with VLAN ID 10", sub)
	}
	ep := endpoint(n, "ep1", 10, "eth0")
	if err := d.Join(ctx, n, ep, driver.JoinInfo{Sandbox: model.Sandbox{ID: ep.ID, NetnsPath: sb}, DefaultRoute: true}); err != nil {
		t.Fatal(err)
	}
	if !ping(sb, "198.51.100.254") || !ping(seg, "198.51.100.10") {
		t.Fatal("the container does not reach the segment's VLAN 10")
	}
	if err := d.Leave(ctx, n, ep, model.Sandbox{NetnsPath: sb}); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	if _, err := hh.LinkByName("up0.10"); err == nil {
		t.Error("up0.10 left after DeleteNetwork")
	}
	if _, err := hh.LinkByName("up0"); err != nil {
		t.Errorf("the user's up0 was removed with the network: %v", err)
	}

	// A sub-interface the user made is used and kept.
	own := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "up0.10", ParentIndex: sub.Attrs().ParentIndex}, VlanId: 10}
	if err := hh.LinkAdd(own); err != nil {
		t.Fatal(err)
	}
	if err := hh.LinkSetUp(own); err != nil {
		t.Fatal(err)
	}
	if err := d.CreateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	if _, err := hh.LinkByName("up0.10"); err != nil {
		t.Errorf("the user's own up0.10 was deleted with the network: %v", err)
	}
}
