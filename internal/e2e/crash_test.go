package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/harness"
)

// crashAt restarts h's daemon with one crash point armed, runs a command
// that must reach it (the daemon exits 137 there, as after kill -9), and
// starts the daemon again without it.
func crashAt(t *testing.T, h *harness.Host, point string, args ...string) {
	t.Helper()
	h.Kill()
	h.Env = []string{engine.CrashPointEnv + "=" + point}
	h.Start()
	h.Env = nil
	if _, _, code := h.CLI(args...); code == 0 {
		t.Fatalf("%s: %v succeeded: the crash point was not reached", point, args)
	}
	if !eventually(20*time.Second, func() bool { return !h.Running() }) {
		t.Fatalf("daemon did not exit at crash point %s", point)
	}
	if !strings.Contains(h.LogTail(20), "crash point reached") {
		t.Fatalf("daemon exited, but not at crash point %s:\n%s", point, h.LogTail(20))
	}
	h.Start()
}

// crashInvariants: every host-side veth vxnet marks belongs to an endpoint
// that exists (kernel objects without records are swept, records without
// kernel objects re-plumbed).
func crashInvariants(t *testing.T, h *harness.Host) {
	t.Helper()
	api := bnClient(h)
	var ctrs []struct {
		Names           []string
		NetworkSettings struct {
			Networks map[string]struct{ EndpointID string }
		}
	}
	api.must(t, "GET", "/containers/json?all=1", nil, &ctrs)
	eps := 0
	for _, c := range ctrs {
		eps += len(c.NetworkSettings.Networks)
	}
	out := h.MustExec(t, "ip", "-o", "link", "show", "type", "veth")
	veths := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, ": vxv") {
			veths++
		}
	}
	if veths != eps {
		t.Errorf("%d host veths for %d endpoints:\n%s", veths, eps, out)
	}
}

// Each window between the steps of run, rm and connect: the daemon dies
// there (a named crash point), restarts, and the host is consistent: a
// half-made container leaves no record, name, address, veth or namespace
// behind (the same name and --ip work again at once); a recorded one
// comes back whole; a half-removed one can be removed again; addresses are
// never handed out twice.
func TestCrashPoints(t *testing.T) {
	c := harness.New(t, harness.Options{Hosts: 1})
	h := c.Host(0)
	h.Start()
	cli(t, h, "network", "create", "--subnet", "10.88.0.0/24", "n")
	cli(t, h, "network", "create", "--subnet", "10.89.0.0/24", "n2")
	cli(t, h, "run", "-d", "--name", "peer", "--net", "n", "busybox", "sleep", "1d")
	run := func(name, ip string) []string {
		return []string{"run", "-d", "--name", name, "--net", "n", "--ip", ip, "busybox", "sleep", "1d"}
	}

	for _, point := range []string{engine.CrashCreateAfterJoin, engine.CrashCreateAfterRuntime} {
		crashAt(t, h, point, run("x", "10.88.0.50")...)
		cliFails(t, h, "No such object: x", "inspect", "x")
		crashInvariants(t, h)
		cli(t, h, run("x", "10.88.0.50")...)
		if !ping(t, h, "peer", "10.88.0.50") {
			t.Errorf("%s: the container made again after the crash is not reachable", point)
		}
		cli(t, h, "rm", "-f", "x")
	}

	// Recorded, not yet started: it comes back whole.
	crashAt(t, h, engine.CrashCreateAfterCommit, run("y", "10.88.0.52")...)
	cli(t, h, "start", "y")
	if !ping(t, h, "peer", "10.88.0.52") {
		t.Error("the container recorded before the crash is not reachable after start")
	}
	cliFails(t, h, "Address already in use", run("z", "10.88.0.52")...)
	crashInvariants(t, h)

	// Runtime container gone, records kept: rm again finishes the job.
	crashAt(t, h, engine.CrashRemoveAfterRuntime, "rm", "-f", "y")
	crashInvariants(t, h)
	cli(t, h, "rm", "-f", "y")
	cli(t, h, run("y2", "10.88.0.52")...)

	// Records deleted locally, the rest not done: nothing is left.
	crashAt(t, h, engine.CrashRemoveAfterLocal, "rm", "-f", "y2")
	cliFails(t, h, "No such object: y2", "inspect", "y2")
	crashInvariants(t, h)
	cli(t, h, run("y3", "10.88.0.52")...)
	if !ping(t, h, "peer", "10.88.0.52") {
		t.Error("the address freed by the crashed removal does not work for a new container")
	}

	// A connect's endpoint plumbed, not recorded.
	crashAt(t, h, engine.CrashConnectAfterJoin, "network", "connect", "--ip", "10.89.0.60", "n2", "peer")
	crashInvariants(t, h)
	cli(t, h, "network", "connect", "--ip", "10.89.0.60", "n2", "peer")
	if !ping(t, h, "peer", "10.89.0.60") {
		t.Error("the connect made again after the crash does not work")
	}
	crashInvariants(t, h)
}

// The same windows on an overlay network, where the address lives in the
// cluster store: an address allocated before the crash and never recorded,
// or unrecorded and not yet released, is released at the next start, so
// the same --ip works again at once (and no address is ever given twice).
func TestCrashPointsOverlay(t *testing.T) {
	c := ovCluster(t, 1)
	h := c.Host(0)
	cli(t, h, "network", "create", "-d", "overlay", "--subnet", "10.66.0.0/24", "ov")
	cli(t, h, "run", "-d", "--name", "peer", "--net", "ov", "busybox", "sleep", "1d")
	run := func(name string) []string {
		return []string{"run", "-d", "--name", name, "--net", "ov", "--ip", "10.66.0.50", "busybox", "sleep", "1d"}
	}
	crashAt(t, h, engine.CrashCreateAfterJoin, run("x")...)
	cli(t, h, run("x")...)
	cli(t, h, "rm", "-f", "x")
	cli(t, h, run("y")...)
	crashAt(t, h, engine.CrashRemoveAfterLocal, "rm", "-f", "y")
	cliFails(t, h, "No such object: y", "inspect", "y")
	cli(t, h, run("z")...)
	if !eventually(10*time.Second, func() bool { return ping(t, h, "peer", "10.66.0.50") }) {
		t.Error("the address released after the crashes does not work for a new container")
	}
}
