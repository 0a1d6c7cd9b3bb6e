package e2e

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// host6 is the host's IPv6 underlay address in gateway6Topology, out6 an
// address of the outside namespace that has no route to any ULA (a reply
// comes back only to a masqueraded source).
const host6, out6 = "2001:db8:ff::10", "2001:db8:ee::1"

// gateway6Topology gives host 0 of c and the outside namespace IPv6
// addresses (documentation prefixes, in the test's namespaces only): the
// host's default IPv6 route leads to the outside, which has no route back
// to the host's ULA subnets.
func gateway6Topology(t *testing.T, c *harness.Cluster) (*harness.Host, *harness.NS) {
	h, out := c.Host(0), c.Outside()
	out.MustExec(t, "ip", "-6", "addr", "add", "2001:db8:ff::254/64", "dev", "eth0", "nodad")
	out.MustExec(t, "ip", "-6", "addr", "add", out6+"/64", "dev", "eth0", "nodad")
	h.MustExec(t, "ip", "-6", "addr", "add", host6+"/64", "dev", "eth0", "nodad")
	h.MustExec(t, "ip", "-6", "route", "add", "default", "via", "2001:db8:ff::254")
	return h, out
}

// Overlay containers get out over IPv6 through the gateway bridge: it was
// IPv4 only (made for an IPv4 overlay container first) and gains an IPv6
// subnet when a container of a dual-stack overlay arrives. That container
// reaches a TCP listener in the outside namespace (which has no route to
// any ULA) with the host's IPv6 address as source (masquerade), and its
// published port answers on the host's IPv6 address from the outside. An
// IPv6-only overlay container pings the outside; the IPv4 overlay
// container keeps no IPv6 way out. A restart keeps the gateway's IPv6.
func TestOverlayIPv6Gateway(t *testing.T) {
	c := ovCluster(t, 1)
	h, out := gateway6Topology(t, c)

	sources := acceptSources(t, out.Path, "[2001:db8:ee::1]:8080")

	// An IPv4 overlay container first: the gateway bridge is IPv4 only.
	cli(t, h, "network", "create", "-d", "overlay", "--subnet", "10.91.0.0/24", "v4")
	cli(t, h, "run", "-d", "--name", "a4", "--net", "v4", "busybox", "sleep", "1d")
	if got := h.MustExec(t, "ip", "-6", "addr", "show", "dev", "vxnet_gwbridge", "scope", "global"); strings.Contains(got, "inet6") {
		t.Errorf("gateway bridge has IPv6 before any IPv6 overlay container:\n%s", got)
	}

	cli(t, h, "network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.92.0.0/24", "--subnet", "fd00:92::/64", "ds")
	cli(t, h, append([]string{"run", "-d", "--name", "web", "--net", "ds", "-p", "8081:80", "busybox"}, httpdCmd("web")...)...)
	if code := execCode(t, h, "web", "sh", "-c", "echo hi | nc -w 2 2001:db8:ee::1 8080"); code != 0 {
		t.Fatalf("overlay container cannot reach [2001:db8:ee::1]:8080 (exit %d)", code)
	}
	select {
	case src := <-sources:
		if src != host6 {
			t.Errorf("outside saw source %s, want the host's %s (masquerade)", src, host6)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the outside accepted no connection")
	}
	wantAnswer(t, "outside -> [host IPv6]:8081 (overlay container)", "hello from web", func() string { return fetch6(out, host6, "8081") })
	wantAnswer(t, "outside -> host IPv4:8081 (overlay container)", "hello from web", func() string { return fetch(out, h.Addr.String()+":8081") })

	// kill -9 and restart: the gateway's IPv6 subnet and addresses are
	// kept (a second container gets another address: both ports answer).
	h.Kill()
	h.Start()
	cli(t, h, append([]string{"run", "-d", "--name", "web2", "--net", "ds", "-p", "8082:80", "busybox"}, httpdCmd("web2")...)...)
	wantAnswer(t, "after restart: outside -> [host IPv6]:8081", "hello from web", func() string { return fetch6(out, host6, "8081") })
	wantAnswer(t, "after restart: outside -> [host IPv6]:8082", "hello from web2", func() string { return fetch6(out, host6, "8082") })

	// IPv6-only overlay: out over IPv6 through the gateway bridge.
	cli(t, h, "network", "create", "-d", "overlay", "--ipv6", "--ipv4=false", "--subnet", "fd00:93::/64", "o6")
	cli(t, h, "run", "-d", "--name", "b6", "--net", "o6", "busybox", "sleep", "1d")
	if !ping6(t, h, "b6", "2001:db8:ee::1") {
		t.Error("container on an IPv6-only overlay cannot ping6 the outside")
	}

	// The IPv4 overlay container got no IPv6 on the gateway bridge.
	if ping6(t, h, "a4", "2001:db8:ee::1") {
		t.Error("container on an IPv4 overlay reached the outside over IPv6")
	}
	select {
	case src := <-sources:
		t.Errorf("unexpected connection from %s", src)
	default:
	}

	// The port and the way out go with the container.
	cli(t, h, "rm", "-f", "web")
	if got := fetch6(out, host6, "8081"); got != "" {
		t.Errorf("port answers on IPv6 after rm: %q", got)
	}
	cli(t, h, "rm", "-f", "b6", "a4", "web2")
	cli(t, h, "network", "rm", "ds", "o6", "v4")
}

// A container's gateway bridge interface follows the families of its
// overlay networks: a container of an IPv4 overlay `network connect`ed to
// a dual-stack one gets IPv6 there (address, default route, masquerade)
// and pings6 the outside namespace, which has no route to the gateway's
// ULA subnet; its published port answers on the host's IPv6 address.
// The change survives kill -9 and a restart, and a gateway record without
// IPv6 is set right by the restore. After the disconnect it has
// no IPv6 way out again (and IPv4 still). The reverse order (dual-stack
// first, IPv4 connected, dual-stack disconnected) ends without IPv6 too,
// and a container created on both overlays at once (the IPv4 one first)
// gets both families.
func TestOverlayIPv6GatewayConnect(t *testing.T) {
	c := ovCluster(t, 1)
	h, out := gateway6Topology(t, c)
	outside4 := c.OutsideAddr().String()
	cli(t, h, "network", "create", "-d", "overlay", "--subnet", "10.94.0.0/24", "v4")
	cli(t, h, "network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.95.0.0/24", "--subnet", "fd00:95::/64", "ds")
	gw6 := func(ctr string) string {
		return cli(t, h, "exec", ctr, "sh", "-c", "ip -6 -o addr show scope global; ip -6 route show default")
	}

	// IPv4 overlay first: no IPv6 way out.
	cli(t, h, append([]string{"run", "-d", "--name", "a", "--net", "v4", "-p", "8091:80", "busybox"}, httpdCmd("a")...)...)
	if !ping(t, h, "a", outside4) {
		t.Fatal("a (IPv4 overlay) cannot ping the outside over IPv4")
	}
	if ping6(t, h, "a", out6) {
		t.Fatalf("a reaches the outside over IPv6 before any IPv6 overlay network:\n%s", gw6("a"))
	}
	wantAnswer(t, "outside -> host IPv4:8091", "hello from a", func() string { return fetch(out, h.Addr.String()+":8091") })

	// connect to the dual-stack overlay: IPv6 out through the gateway.
	cli(t, h, "network", "connect", "ds", "a")
	if !eventually(10*time.Second, func() bool { return ping6(t, h, "a", out6) }) {
		t.Fatalf("a cannot ping6 the outside after network connect ds:\n%s", gw6("a"))
	}
	wantAnswer(t, "after connect: outside -> [host IPv6]:8091", "hello from a", func() string { return fetch6(out, host6, "8091") })
	if ports := cli(t, h, "port", "a"); !strings.Contains(ports, "[::]:8091") {
		t.Errorf("docker port after connect shows no IPv6 binding:\n%s", ports)
	}
	// The change is recorded: kill -9 and a restart keep it. r's gateway
	// interface record is made to lack IPv6 meanwhile (as one written
	// before the interface followed its networks): the restore sets it
	// right.
	cli(t, h, "run", "-d", "--name", "r", "--net", "v4", "busybox", "sleep", "1d")
	cli(t, h, "network", "connect", "ds", "r")
	rID := strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{.Id}}", "r"))
	h.Kill()
	dropGatewayIPv6(t, h, rID)
	h.Start()
	if !eventually(10*time.Second, func() bool { return ping6(t, h, "a", out6) }) {
		t.Fatalf("after kill -9 and restart a cannot ping6 the outside:\n%s", gw6("a"))
	}
	if !ping6(t, h, "r", out6) {
		t.Errorf("r (gateway record without IPv6) cannot ping6 the outside after the restart:\n%s", gw6("r"))
	}
	cli(t, h, "rm", "-f", "r")

	// disconnect: the gateway interface loses IPv6, keeps IPv4.
	cli(t, h, "network", "disconnect", "ds", "a")
	if ping6(t, h, "a", out6) {
		t.Errorf("a still pings6 the outside after network disconnect ds:\n%s", gw6("a"))
	}
	if got := gw6("a"); strings.Contains(got, "inet6") || strings.Contains(got, "default") {
		t.Errorf("a keeps IPv6 on its gateway interface after the disconnect:\n%s", got)
	}
	if got := fetch6(out, host6, "8091"); got != "" {
		t.Errorf("a's port answers on the host's IPv6 address after the disconnect: %q", got)
	}
	if !ping(t, h, "a", outside4) {
		t.Error("a lost its IPv4 way out with the disconnect")
	}
	wantAnswer(t, "after disconnect: outside -> host IPv4:8091", "hello from a", func() string { return fetch(out, h.Addr.String()+":8091") })

	// The reverse order: dual-stack first (a port on the host's IPv6
	// addresses only), IPv4 connected, dual-stack disconnected.
	cli(t, h, append([]string{"run", "-d", "--name", "b", "--net", "ds", "-p", "[::]:8092:80", "busybox"}, httpdCmd("b")...)...)
	if !ping6(t, h, "b", out6) {
		t.Fatalf("b (dual-stack overlay) cannot ping6 the outside:\n%s", gw6("b"))
	}
	wantAnswer(t, "outside -> [host IPv6]:8092", "hello from b", func() string { return fetch6(out, host6, "8092") })
	cli(t, h, "network", "connect", "v4", "b")
	if !ping6(t, h, "b", out6) {
		t.Errorf("b lost IPv6 by joining an IPv4 overlay too:\n%s", gw6("b"))
	}
	cli(t, h, "network", "disconnect", "ds", "b")
	if ping6(t, h, "b", out6) {
		t.Errorf("b still pings6 the outside after leaving its last IPv6 overlay network:\n%s", gw6("b"))
	}
	if !ping(t, h, "b", outside4) {
		t.Error("b (IPv4 overlay left) cannot ping the outside over IPv4")
	}
	// Its IPv6-only binding is not served now; the rest of the firewall is.
	if got := fetch6(out, host6, "8092"); got != "" {
		t.Errorf("b's [::] port answers after b lost IPv6: %q", got)
	}
	wantAnswer(t, "outside -> host IPv4:8091 after b's disconnect", "hello from a", func() string { return fetch(out, h.Addr.String()+":8091") })

	// Created on both at once, the IPv4 overlay first.
	h.MustDocker(t, "run", "-d", "--name", "m", "--network", "v4", "--network", "ds", "busybox", "sleep", "1d")
	if !ping6(t, h, "m", out6) {
		t.Errorf("m (created on v4 and ds) cannot ping6 the outside:\n%s", gw6("m"))
	}
	if !ping(t, h, "m", outside4) {
		t.Error("m (created on v4 and ds) cannot ping the outside over IPv4")
	}
	cli(t, h, "rm", "-f", "a", "b", "m")
	cli(t, h, "network", "rm", "v4", "ds")
}

// dropGatewayIPv6 rewrites, in the store of h's stopped daemon, the
// gateway bridge endpoint of container id without its IPv6 address.
func dropGatewayIPv6(t *testing.T, h *harness.Host, id string) {
	t.Helper()
	st, err := store.Open(filepath.Join(h.DataRoot, "vxnet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	nets, err := store.List[model.Network](st, store.Networks)
	if err != nil {
		t.Fatal(err)
	}
	eps, err := store.List[model.Endpoint](st, store.Endpoints)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		for _, ep := range eps {
			if n.Name == "vxnet_gwbridge" && ep.NetworkID == n.ID && ep.ContainerID == id {
				if !ep.Addr6.IsValid() {
					t.Fatalf("the gateway endpoint of %s has no IPv6 address to drop", id)
				}
				ep.Addr6, ep.Gateway6 = netip.Prefix{}, netip.Addr{}
				if err := st.Put(store.Endpoints, ep.ID, ep); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
	}
	t.Fatalf("no gateway endpoint of %s in the store", id)
}
