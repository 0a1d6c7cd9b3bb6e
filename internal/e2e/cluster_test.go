package e2e

import (
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
)

// The cluster issue's "Done when", with real daemons on three hosts. Hosts
// are numbered from 0 here (the host 1 is h0).

// Embedded etcd: global networks are shared, a name race has exactly one
// winner, node ls follows a host's death and return.
func TestClusterEmbedded(t *testing.T) {
	c := clusterEmbedded(t)
	clusterScenario(t, c, "voter")
}

// External etcd (a real etcd 3.4 process in host 0's namespace): the same
// scenarios.
func TestClusterExternal(t *testing.T) {
	c := clusterExternal(t)
	clusterScenario(t, c, "client")
}

// clusterScenario checks the shared behaviour of both cluster modes on a
// running three-host cluster; role is the etcd role node ls shows for
// every host.
func clusterScenario(t *testing.T, c *harness.Cluster, role string) {
	h0, h1, h2 := c.Host(0), c.Host(1), c.Host(2)

	// A global network created on one host is listed on the others with
	// the same ID; removed from a third it is gone everywhere.
	id := cli(t, h0, "network", "create", "-d", "overlay", "prod")
	if len(id) != 64 {
		t.Fatalf("network create printed %q, want a 64-character ID", id)
	}
	for _, h := range c.Hosts {
		var got string
		if !eventually(5*time.Second, func() bool { got = networkID(t, h, "prod"); return got == id }) {
			t.Errorf("%s lists prod with ID %q, want %s", h.Name, got, id)
		}
		if got := inspectNetwork(t, h, "prod"); got.ID != id || got.Driver != "overlay" || got.Scope != "global" {
			t.Errorf("%s: inspect prod = %+v, want ID %s, overlay, global", h.Name, got, id)
		}
	}
	cli(t, h2, "network", "rm", "prod")
	for _, h := range c.Hosts {
		if !eventually(5*time.Second, func() bool { return networkID(t, h, "prod") == "" }) {
			t.Errorf("%s still lists prod 5 s after it was removed on h2", h.Name)
		}
	}

	// The same name created on two hosts at the same moment: one wins.
	createRace(t, h0, h1, "race1")
	createRace(t, h1, h2, "race2")
	for _, name := range []string{"race1", "race2"} {
		ids := map[string]bool{}
		for _, h := range c.Hosts {
			eventually(5*time.Second, func() bool { return networkID(t, h, name) != "" })
			ids[networkID(t, h, name)] = true
		}
		if len(ids) != 1 || ids[""] {
			t.Errorf("%s after the race: IDs seen by the hosts %v, want one", name, ids)
		}
	}

	// node ls: three hosts up, each knowing which one it is.
	self := make([]string, 3)
	for i, h := range c.Hosts {
		self[i] = selfID(t, h)
		ns := nodes(t, h)
		if len(ns) != 3 {
			t.Errorf("node ls on %s: %d nodes, want 3: %v", h.Name, len(ns), ns)
		}
		for id, n := range ns {
			if n.State != "up" || n.Role != role {
				t.Errorf("node ls on %s: %s is %q %q, want up %s", h.Name, id, n.State, n.Role, role)
			}
		}
	}
	for i, h := range c.Hosts {
		n := nodes(t, h0)[self[i]]
		if n.Addr != h.Addr.String() {
			t.Errorf("node ls on h0: %s (%s) has address %q, want %s", self[i], h.Name, n.Addr, h.Addr)
		}
	}

	t.Logf("node ls on h0:\n%s", cli(t, h0, "node", "ls"))

	// kill -9 of host 2's daemon: down on the others within TTL + 2 s.
	h2.Kill()
	killed := time.Now()
	for _, h := range []*harness.Host{h0, h1} {
		var st string
		if !eventually(clusterTTL+2*time.Second-time.Since(killed), func() bool {
			st = nodes(t, h)[self[2]].State
			return st == "down"
		}) {
			t.Errorf("node ls on %s: h2 is %q %v after kill -9, want down within TTL + 2 s (%v)",
				h.Name, st, time.Since(killed).Round(100*time.Millisecond), clusterTTL+2*time.Second)
		}
	}
	t.Logf("h2 seen down %v after kill -9", time.Since(killed).Round(100*time.Millisecond))
	h2.Start()
	if id := selfID(t, h2); id != self[2] {
		t.Errorf("h2 restarted with node ID %s, was %s", id, self[2])
	}
	for _, h := range c.Hosts {
		var st string
		if !eventually(5*time.Second, func() bool { st = nodes(t, h)[self[2]].State; return st == "up" }) {
			t.Errorf("node ls on %s: restarted h2 is %q, want up", h.Name, st)
		}
		if n := len(nodes(t, h)); n != 3 {
			t.Errorf("node ls on %s after h2's restart: %d nodes, want 3", h.Name, n)
		}
	}
	// The restarted host still sees the global networks.
	if networkID(t, h2, "race1") == "" {
		t.Error("restarted h2 does not list race1")
	}
}
