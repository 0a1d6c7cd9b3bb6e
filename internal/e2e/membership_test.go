package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
)

// The seed's two-host walk-through (init on h1, join on h2): h2 is a
// learner, not a second voter. kill -9 of h2's daemon and its containers
// (its underlay cut): h1 purges h2's entries within TTL + 2 s. Then the
// single voter's daemon dies: h2's data plane stays as it is, global writes
// are refused clearly, node ls answers from the last view marked stale,
// inspect -v marks the remote peer unverified, /info warns; when h1 returns
// everything reconverges.
func TestMembershipTwoHostWalkthrough(t *testing.T) {
	t0 := time.Now()
	step := func(msg string) { t.Logf("%5.1fs %s", time.Since(t0).Seconds(), msg) }
	c := ovCluster(t, 2)
	h1, h2 := c.Host(0), c.Host(1)
	waitRoles(t, h1, 1, 1)
	cli(t, h1, "network", "create", "-d", "overlay", "--subnet", "10.98.0.0/24", "prod")
	ovRun(t, h1, "a", "prod")
	ovRun(t, h2, "b", "prod")
	aIP, bIP := ipOf(t, h1, "a", "prod"), ipOf(t, h2, "b", "prod")
	if !eventually(5*time.Second, func() bool { return ping(t, h1, "a", "b") }) {
		t.Fatal("a cannot ping b")
	}

	// The learner's host dies with its containers.
	step("kill -9 h2 and cut it off")
	h2.Kill()
	h2.Cut()
	killed := time.Now()
	ns1 := ovInspect(t, h1, "prod").VXNet.Namespace
	if !eventually(clusterTTL+2*time.Second, func() bool {
		fdb, neigh := ovKernel(t, h1, ns1)
		return !strings.Contains(fdb, h2.Addr.String()) && !strings.Contains(neigh, bIP+" ")
	}) {
		fdb, neigh := ovKernel(t, h1, ns1)
		t.Fatalf("h1 still holds h2's entries %v after the kill:\n%s%s", time.Since(killed).Round(100*time.Millisecond), fdb, neigh)
	}
	step("h2's entries purged on h1")
	cli(t, h1, "network", "create", "-d", "overlay", "after-learner")

	step("h2 back")
	h2.Heal()
	h2.Start()
	if !eventually(10*time.Second, func() bool { return ping(t, h1, "a", "b") && ping(t, h2, "b", "a") }) {
		t.Fatal("a and b cannot reach each other after h2's restart")
	}

	// The voter's daemon dies (its containers live on).
	step("kill -9 h1 (the single voter)")
	h1.Kill()
	if !ping(t, h2, "b", "a") {
		t.Error("b cannot ping a right after the voter's daemon died")
	}
	code := cliFails(t, h2, "cluster store unreachable", "network", "create", "-d", "overlay", "refused")
	if code != 1 {
		t.Errorf("global create without the voter: exit %d, want 1", code)
	}
	var peers []ovPeer
	if !eventually(10*time.Second, func() bool {
		peers = ovInspect(t, h2, "prod").VXNet.Peers
		for _, p := range peers {
			if p.Node != "" && p.IP == aIP {
				return strings.HasPrefix(p.Status, "unverified since ")
			}
		}
		return false
	}) {
		t.Errorf("inspect -v on h2 without the store: peers %+v, want a's row unverified", peers)
	}
	out, errOut, code := h2.CLI("node", "ls")
	if code != 0 || !strings.Contains(errOut, "cluster store unreachable") || !strings.Contains(out, "(stale)") {
		t.Errorf("node ls without the store: exit %d, out %q, err %q; want the last view marked stale", code, out, errOut)
	}
	resp, err := apiClient(h2).Get("http://vxnet/info")
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ Warnings []string }
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if len(info.Warnings) == 0 || !strings.Contains(strings.Join(info.Warnings, " "), "cluster store unreachable") {
		t.Errorf("/info warnings without the store: %q", info.Warnings)
	}
	if !ping(t, h2, "b", "a") {
		t.Error("b cannot ping a while the voter's daemon is down")
	}

	step("h1 back")
	h1.Start()
	back := time.Now()
	if !eventually(20*time.Second, func() bool {
		_, _, code := h2.CLI("network", "create", "-d", "overlay", "after-voter")
		return code == 0
	}) {
		t.Fatal("h2 cannot create a global network 20 s after the voter's return")
	}
	t.Logf("global writes from h2 work %v after the voter's restart", time.Since(back).Round(100*time.Millisecond))
	if !eventually(10*time.Second, func() bool {
		for _, p := range ovInspect(t, h2, "prod").VXNet.Peers {
			if p.Status != "programmed" && p.Status != "local" {
				return false
			}
		}
		out, errOut, _ := h2.CLI("node", "ls")
		return !strings.Contains(out, "stale") && errOut == ""
	}) {
		t.Error("h2 still reports stale or unverified state after the voter's return")
	}
	for _, h := range []*harness.Host{h1, h2} {
		if networkID(t, h, "refused") != "" {
			t.Errorf("%s lists the network whose create was refused", h.Name)
		}
	}
}

// Global addresses belong to the host that took them: after `node rm` of a
// dead host that held 50 of them, the elected garbage collector returns them
// to the pool within its period, and the other host can use them.
func TestIPAMNodeRemoval(t *testing.T) {
	c := harness.New(t, harness.Options{Hosts: 2, DaemonArgs: func(i int, h *harness.Host) []string {
		args := []string{"--advertise-addr", h.Addr.String(), "--node-ttl", "2s", "--cluster-ipam-gc-interval", "2s"}
		if i == 0 {
			return append(args, "--cluster-init")
		}
		return append(args, h.JoinArgs(0)...)
	}})
	for _, h := range c.Hosts {
		h.Start()
	}
	h1, h2 := c.Host(0), c.Host(1)
	// 61 usable addresses (a /26 without network, broadcast and gateway),
	// in /28 blocks.
	cli(t, h1, "network", "create", "-d", "overlay", "--subnet", "10.97.0.0/26", "-o", "com.vxnet.ipam.block-size=28", "gnet")
	if !eventually(5*time.Second, func() bool { return networkID(t, h2, "gnet") != "" }) {
		t.Fatal("gnet not on h2")
	}
	api1, api2 := apiClient(h1), apiClient(h2)
	for i := range 50 {
		if err := apiCreate(api2, fmt.Sprintf("b%d", i), "gnet"); err != nil {
			t.Fatalf("h2: %v", err)
		}
	}
	made := 0
	for i := range 12 {
		err := apiCreate(api1, fmt.Sprintf("a%d", i), "gnet")
		if err != nil {
			if !strings.Contains(err.Error(), "no available addresses") {
				t.Fatalf("h1 create a%d: %v, want no available addresses", i, err)
			}
			break
		}
		made++
	}
	if made != 11 {
		t.Fatalf("h1 created %d containers before the pool ran out, want 11", made)
	}
	id2 := selfID(t, h2)
	h2.Kill()
	h2.Cut()
	if !eventually(10*time.Second, func() bool { return nodes(t, h1)[id2].State == "down" }) {
		t.Fatal("h2 not down")
	}
	cli(t, h1, "node", "rm", id2)
	removed := time.Now()
	// The collector runs every 2 s: the 50 addresses come back.
	for i := range 50 {
		var err error
		if !eventually(10*time.Second, func() bool {
			err = apiCreate(api1, fmt.Sprintf("c%d", i), "gnet")
			return err == nil
		}) {
			t.Fatalf("h1 create c%d %v after node rm: %v", i, time.Since(removed).Round(100*time.Millisecond), err)
		}
		if i == 0 {
			t.Logf("first address of the removed host back %v after node rm", time.Since(removed).Round(100*time.Millisecond))
		}
	}
	t.Logf("50 addresses of the removed host reused within %v of node rm", time.Since(removed).Round(100*time.Millisecond))
	addrs := endpointAddrs(t, h1, "gnet")
	seen := map[string]string{}
	for name, a := range addrs {
		if o, dup := seen[a]; dup {
			t.Errorf("%s and %s share %s", o, name, a)
		}
		seen[a] = name
	}
	if len(addrs) != 61 {
		t.Errorf("h1 holds %d endpoints on gnet, want 61", len(addrs))
	}
}
