package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/driver/macvlan"
	"github.com/vxnet/vxnet/internal/harness"
)

// kernelHasVLAN reports whether 802.1q links can be made (module 8021q).
func kernelHasVLAN(t *testing.T, h *harness.Host) bool {
	t.Helper()
	_, code := h.Exec("ip", "link", "add", "link", "eth0", "name", "vxprobe.7", "type", "vlan", "id", "7")
	if code == 0 {
		h.MustExec(t, "ip", "link", "del", "vxprobe.7")
	}
	return code == 0
}

// A container on a macvlan network over the host's eth0 has an address of
// the underlay segment: the outside namespace reaches it over the underlay
// (and it reaches the outside through the segment's gateway); an
// --internal network without parent connects its containers and nothing
// else; the 802.1q parent is created and removed with its network (or
// refused by name on a kernel without 802.1q); ipvlan and published ports
// are refused with a reason.
func TestMacvlan(t *testing.T) {
	c := harness.New(t, harness.Options{Hosts: 1})
	h := c.Host(0)
	h.Start()
	cli(t, h, "network", "create", "-d", "macvlan", "--subnet", "192.0.2.0/24", "--gateway", c.GatewayAddr().String(),
		"--ip-range", "192.0.2.128/26", "-o", "parent=eth0", "mv")
	cli(t, h, "run", "-d", "--name", "m1", "--net", "mv", "busybox", "sleep", "1d")
	ip := ipOf(t, h, "m1", "mv")
	if !strings.HasPrefix(ip, "192.0.2.1") {
		t.Fatalf("m1's address %s is not from the ip range", ip)
	}
	if !eventually(10*time.Second, func() bool { _, code := c.Outside().Exec("ping", "-c1", "-W1", ip); return code == 0 }) {
		t.Errorf("outside cannot ping m1 (%s) over the underlay", ip)
	}
	if !eventually(10*time.Second, func() bool { return ping(t, h, "m1", c.OutsideAddr().String()) }) {
		t.Errorf("m1 cannot reach %s through the segment's gateway", c.OutsideAddr())
	}
	// m1's own MAC is what the outside sees.
	mac := cli(t, h, "exec", "m1", "cat", "/sys/class/net/eth0/address")
	if neigh, _ := c.Outside().Exec("ip", "neigh", "show", ip); !strings.Contains(neigh, mac) {
		t.Errorf("outside's neighbour entry for %s is %q, want MAC %s", ip, neigh, mac)
	}
	cliFails(t, h, "not supported on macvlan network mv", "run", "-d", "--net", "mv", "-p", "8080:80", "busybox", "sleep", "1d")
	// kill -9 and restart: the container keeps its interface and address.
	h.Restart()
	if !eventually(10*time.Second, func() bool { _, code := c.Outside().Exec("ping", "-c1", "-W1", ip); return code == 0 }) {
		t.Errorf("outside cannot ping m1 (%s) after a daemon restart", ip)
	}
	if got := cli(t, h, "exec", "m1", "cat", "/sys/class/net/eth0/address"); got != mac {
		t.Errorf("m1's MAC after restart = %s, want %s", got, mac)
	}

	// Internal, no parent: the containers reach each other only.
	cli(t, h, "network", "create", "-d", "macvlan", "--internal", "--subnet", "10.93.0.0/24", "iso")
	cli(t, h, "run", "-d", "--name", "i1", "--net", "iso", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "i2", "--net", "iso", "busybox", "sleep", "1d")
	i2 := ipOf(t, h, "i2", "iso")
	if !eventually(10*time.Second, func() bool { return ping(t, h, "i1", i2) }) {
		t.Error("i1 cannot ping i2 on the internal macvlan network")
	}
	if ping(t, h, "i1", c.GatewayAddr().String()) {
		t.Error("i1 on an internal network reached the underlay gateway")
	}
	isoID := networkID(t, h, "iso")
	parent := macvlan.IsolatedParentName(isoID)
	if _, code := h.Exec("ip", "link", "show", parent); code != 0 {
		t.Errorf("isolated parent %s missing", parent)
	}
	cli(t, h, "rm", "-f", "i1", "i2")
	cli(t, h, "network", "rm", "iso")
	if _, code := h.Exec("ip", "link", "show", parent); code == 0 {
		t.Errorf("isolated parent %s left after network rm", parent)
	}
	cliFails(t, h, "-o parent=INTERFACE is required", "network", "create", "-d", "macvlan", "noparent")

	// 802.1q parent: made with the network, removed with it.
	if kernelHasVLAN(t, h) {
		cli(t, h, "network", "create", "-d", "macvlan", "--subnet", "10.94.0.0/24", "-o", "parent=eth0.42", "vl")
		out := h.MustExec(t, "ip", "-d", "link", "show", "eth0.42")
		if !strings.Contains(out, "vlan protocol 802.1Q id 42") {
			t.Errorf("eth0.42 is not VLAN 42 of eth0:\n%s", out)
		}
		cli(t, h, "run", "-d", "--name", "v1", "--net", "vl", "busybox", "sleep", "1d")
		cli(t, h, "rm", "-f", "v1")
		cli(t, h, "network", "rm", "vl")
		if _, code := h.Exec("ip", "link", "show", "eth0.42"); code == 0 {
			t.Error("eth0.42 left after network rm")
		}
	} else {
		t.Log("kernel without 802.1q: checking the refusal instead of the sub-interface")
		cliFails(t, h, "the kernel has no 802.1q VLAN support (module 8021q)",
			"network", "create", "-d", "macvlan", "-o", "parent=eth0.42", "vl")
		if _, code := h.Exec("ip", "link", "show", "eth0.42"); code == 0 {
			t.Error("a refused network left eth0.42")
		}
		if out := cli(t, h, "network", "ls"); strings.Contains(out, " vl ") {
			t.Errorf("a refused network is listed:\n%s", out)
		}
	}
	cliFails(t, h, "ipvlan", "network", "create", "-d", "ipvlan", "-o", "parent=eth0", "ipv")
}
