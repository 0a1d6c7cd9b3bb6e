package e2e

import (
	"regexp"
	"strconv"
	"testing"
	"time"
)

var pingReceived = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)

// A daemon restart (kill -9) reconciles the overlay in place: a ping flow
// running across hosts through the restarted host keeps going.
func TestOverlayRestartKeepsFlows(t *testing.T) {
	c := ovCluster(t, 2)
	h0, h1 := c.Host(0), c.Host(1)
	cli(t, h0, "network", "create", "-d", "overlay", "flow")
	cli(t, h0, "run", "-d", "--name", "vm3", "--net", "flow", "busybox", "sleep", "1d")
	cli(t, h1, "run", "-d", "--name", "vm33", "--net", "flow", "busybox", "sleep", "1d")
	if !eventually(5*time.Second, func() bool { return ping(t, h1, "vm33", "vm3") }) {
		t.Fatal("vm33 cannot reach vm3 before the restart")
	}
	type result struct {
		out  string
		code int
	}
	done := make(chan result, 1)
	go func() {
		out, _, code := h1.CLI("exec", "vm33", "ping", "-c", "30", "-i", "0.2", "-W", "1", "vm3")
		done <- result{out, code}
	}()
	time.Sleep(time.Second)
	h0.Kill()
	h0.Start()
	r := <-done
	m := pingReceived.FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("ping output: %q (exit %d)", r.out, r.code)
	}
	sent, _ := strconv.Atoi(m[1])
	got, _ := strconv.Atoi(m[2])
	if sent-got > 2 {
		t.Errorf("the flow lost %d of %d packets across the daemon restart", sent-got, sent)
	}
	if !ping(t, h0, "vm3", "vm33") {
		t.Error("vm3 cannot reach vm33 after the restart")
	}
}

// A clean leave removes the node from the cluster (its record and its etcd
// membership) and stops its daemon; the others keep writing; it can join
// again later with the same node ID.
func TestNodeLeave(t *testing.T) {
	c := ovCluster(t, 3)
	h0, h2 := c.Host(0), c.Host(2)
	if n := len(nodes(t, h0)); n != 3 {
		t.Fatalf("node ls shows %d nodes, want 3", n)
	}
	id2 := selfID(t, h2)
	cli(t, h2, "run", "-d", "--name", "blocker", "--net", "bridge", "busybox", "sleep", "1d")
	cli(t, h0, "network", "create", "-d", "overlay", "ov")
	cli(t, h2, "run", "-d", "--name", "ovc", "--net", "ov", "busybox", "sleep", "1d")
	cliFails(t, h2, "attached to global network ov", "node", "leave")
	cli(t, h2, "rm", "-f", "ovc")
	cli(t, h2, "node", "leave")
	if !eventually(20*time.Second, func() bool { return !h2.Running() }) {
		t.Fatal("daemon still running after a clean leave")
	}
	// h0 may answer from its last view (marked stale) for a moment while
	// etcd settles the membership change; the record must be gone soon.
	var ns map[string]node
	if !eventually(10*time.Second, func() bool {
		ns = nodes(t, h0)
		_, ok := ns[id2]
		return !ok && len(ns) == 2
	}) {
		t.Errorf("node ls after leave: %v", ns)
	}
	cli(t, h0, "network", "create", "-d", "overlay", "after-leave")
	// Rejoin: same node ID, up again, and it sees the network made meanwhile.
	h2.Start()
	if !eventually(20*time.Second, func() bool {
		n, ok := nodes(t, h0)[id2]
		return ok && n.State == "up"
	}) {
		t.Errorf("host 2 did not come back after rejoining: %v", nodes(t, h0))
	}
	if _, _, code := h2.CLI("network", "inspect", "after-leave"); code != 0 {
		t.Error("rejoined host does not see a network created while it was away")
	}
	if !ping(t, h2, "blocker", "127.0.0.1") {
		t.Error("bridge container did not survive the leave")
	}
}
