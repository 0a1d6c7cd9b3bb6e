package e2e

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
)

// ip6 is a Docker container's IPv6 address on a network (docker inspect).
func (d *dockerd) ip6(t *testing.T, ctr, network string) netip.Addr {
	t.Helper()
	out := d.must(t, "inspect", "-f", "{{json .NetworkSettings.Networks}}", ctr)
	var nets map[string]struct{ GlobalIPv6Address string }
	if err := json.Unmarshal([]byte(out), &nets); err != nil {
		t.Fatalf("inspect %s: %v: %s", ctr, err, out)
	}
	a, err := netip.ParseAddr(nets[network].GlobalIPv6Address)
	if err != nil {
		t.Fatalf("%s has no IPv6 address on %s: %s", ctr, network, out)
	}
	return a
}

// TestDockerPluginIPv6: docker network create --ipv6 on vxnet's Docker
// plugin (Debian's docker.io on two hosts of a vxnet cluster): the first
// create defines a dual-stack cluster network, the second joins it and
// sees its IPv6 subnet; containers run by dockerd get an IPv6 address from
// the cluster IPAM (a static --ip6 honoured) on their interface and ping6
// each other across the hosts, and by name; without an IPv6 --subnet the
// network gets a ULA /64 of the cluster's pool, with only an IPv6 one an
// IPv4 subnet of vxnet's pools; what is not supported is
// refused naming it; docker network rm leaves nothing.
func TestDockerPluginIPv6(t *testing.T) {
	needDocker(t)
	c := ovClusterWith(t, 2, func(h *harness.Host) []string {
		return []string{"--docker-plugin-dir", filepath.Join(h.Dir, "docker-plugins")}
	})
	a, b := c.Host(0), c.Host(1)
	da, db := startDockerd(t, a), startDockerd(t, b)
	da.importBusybox(t)
	db.importBusybox(t)

	create := []string{"network", "create", "-d", "vxnet", "--ipam-driver", "vxnet"}
	da.must(t, append(create, "--ipv6", "--subnet", "10.97.0.0/24", "--subnet", "fd00:97::/64", "ds")...)
	db.must(t, append(create, "--ipv6", "ds")...)
	if got := db.must(t, "network", "inspect", "-f", "{{.EnableIPv6}} {{range .IPAM.Config}}{{.Subnet}} {{end}}", "ds"); got != "true 10.97.0.0/24 fd00:97::/64" {
		t.Fatalf("ds on %s: %q, want IPv6 and host A's subnets", b.Name, got)
	}
	if v := ovInspect(t, a, "ds"); v.ID != ovInspect(t, b, "ds").ID {
		t.Fatalf("ds is not one cluster network")
	}
	// Refusals, each naming what vxnet does not take; nothing is left.
	da.must(t, append(create, "--subnet", "10.98.0.0/24", "v4only")...)
	db.fails(t, "--ipv6 conflicts", append(create, "--ipv6", "v4only")...)
	db.fails(t, "one --subnet per address family", append(create, "--ipv6", "--subnet", "fd00:98::/64", "--subnet", "fd00:99::/64", "two6")...)
	db.fails(t, "--ip-range", append(create, "--ipv6", "--subnet", "10.99.0.0/24", "--subnet", "fd00:99::/64", "--ip-range", "fd00:99::/80", "rng6")...)
	if out := db.must(t, "network", "ls", "--format", "{{.Name}}"); strings.Contains(out, "v4only") || strings.Contains(out, "two6") || strings.Contains(out, "rng6") {
		t.Errorf("refused creates left Docker networks on %s: %s", b.Name, out)
	}
	if out := cli(t, b, "network", "ls"); strings.Contains(out, " two6 ") || strings.Contains(out, " rng6 ") {
		t.Errorf("refused creates left vxnet networks: %s", out)
	}
	da.must(t, "network", "rm", "v4only")
	// --ipv6 without an IPv6 --subnet: a ULA /64 from the cluster's pool.
	da.must(t, append(create, "--ipv6", "ula")...)
	sub6 := da.must(t, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", "ula")
	f := strings.Fields(sub6)
	if len(f) != 2 || !strings.HasPrefix(f[1], "fd") || !strings.HasSuffix(f[1], "/64") {
		t.Errorf("ula subnets %q, want an IPv4 one and a ULA /64", sub6)
	}
	da.must(t, "network", "rm", "ula")
	// Only an IPv6 --subnet: the IPv4 subnet comes from vxnet's pools.
	da.must(t, append(create, "--ipv6", "--subnet", "fd00:9a::/64", "v6sub")...)
	if got := strings.Fields(da.must(t, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", "v6sub")); len(got) != 2 || got[1] != "fd00:9a::/64" || !strings.Contains(got[0], ".") {
		t.Errorf("v6sub subnets %q, want an IPv4 one and fd00:9a::/64", got)
	}
	da.must(t, "network", "rm", "v6sub")

	da.must(t, "run", "-d", "--name", "d6a", "--network", "ds", "--ip6", "fd00:97::a6", "busybox", "sleep", "1d")
	db.must(t, "run", "-d", "--name", "d6b", "--network", "ds", "busybox", "sleep", "1d")
	ip6a, ip6b := da.ip6(t, "d6a", "ds"), db.ip6(t, "d6b", "ds")
	if ip6a != netip.MustParseAddr("fd00:97::a6") || !netip.MustParsePrefix("fd00:97::/64").Contains(ip6b) {
		t.Fatalf("IPv6 addresses %s and %s, want fd00:97::a6 and one of fd00:97::/64", ip6a, ip6b)
	}
	if out := da.must(t, "exec", "d6a", "ip", "-o", "addr", "show", "eth0"); !strings.Contains(out, "fd00:97::a6/64") {
		t.Fatalf("d6a's eth0 lacks its IPv6 address: %s", out)
	}
	ping6 := func(d *dockerd, ctr, dst string) bool {
		_, _, code := d.docker("exec", ctr, "ping", "-6", "-c1", "-W2", dst)
		return code == 0
	}
	if !eventually(20*time.Second, func() bool { return ping6(da, "d6a", ip6b.String()) }) {
		t.Fatalf("d6a (host A) cannot ping6 d6b (%s, host B)", ip6b)
	}
	if !ping6(db, "d6b", ip6a.String()) {
		t.Fatalf("d6b (host B) cannot ping6 d6a (%s, host A)", ip6a)
	}
	// By name: Docker's resolver forwards to vxnet's, which has the AAAA
	// record of the other host's container from its advertisement.
	if !eventually(15*time.Second, func() bool { return ping6(db, "d6b", "d6a") }) {
		t.Errorf("d6b (host B) cannot ping6 d6a (host A) by name")
	}
	// IPv4 works beside it.
	if _, _, code := da.docker("exec", "d6a", "ping", "-c1", "-W2", db.ip(t, "d6b", "ds").String()); code != 0 {
		t.Errorf("d6a cannot ping d6b over IPv4")
	}

	da.must(t, "rm", "-f", "d6a")
	db.must(t, "rm", "-f", "d6b")
	// The static address went back to the cluster: another container gets it.
	db.must(t, "run", "-d", "--name", "d6c", "--network", "ds", "busybox", "sleep", "1d")
	da.must(t, "run", "-d", "--name", "d6d", "--network", "ds", "--ip6", "fd00:97::a6", "busybox", "sleep", "1d")
	if !eventually(20*time.Second, func() bool { return ping6(db, "d6c", "fd00:97::a6") }) {
		t.Errorf("d6c cannot ping6 the re-used fd00:97::a6")
	}
	da.must(t, "rm", "-f", "d6d")
	db.must(t, "rm", "-f", "d6c")
	da.must(t, "network", "rm", "ds")
	db.must(t, "network", "rm", "ds")
	for _, h := range []*harness.Host{a, b} {
		if out := cli(t, h, "network", "ls"); strings.Contains(out, " ds ") {
			t.Errorf("%s: vxnet network ds left: %s", h.Name, out)
		}
		if got := externals(t, h); len(got) != 0 {
			t.Errorf("%s: attachments left: %+v", h.Name, got)
		}
	}
}
