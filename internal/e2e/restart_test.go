package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
)

// kernelObjects counts what the daemon made in the host namespace: veths
// and bridges by name, and nft tables.
func kernelObjects(t *testing.T, h *harness.Host) map[string]int {
	t.Helper()
	out := map[string]int{}
	links, _ := h.Exec("ip", "-o", "link")
	for _, l := range strings.Split(links, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
		out["link "+name]++
	}
	tables, _ := h.Exec("nft", "list", "tables")
	for _, tb := range strings.Split(strings.TrimSpace(tables), "\n") {
		if tb != "" {
			out[tb]++
		}
	}
	return out
}

// normalisedInspect returns inspect output without the fields that are
// expected to change across a daemon restart (none for stopped state;
// Pid and StartedAt stay since the containers keep running).
func inspectJSON(t *testing.T, h *harness.Host, refs ...string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(cli(t, h, append([]string{"inspect"}, refs...)...)), &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(v, "", " ")
	return string(b)
}

// kill -9 of the daemon and a new start: containers still reach each
// other, inspect output is unchanged, a new container gets an unused
// address and no kernel object is duplicated.
func TestKillAndRestart(t *testing.T) {
	_, h := single(t)
	cli(t, h, "network", "create", "--subnet", "10.66.0.0/24", "n1")
	cli(t, h, "network", "create", "n2")
	for i := 0; i < 3; i++ {
		cli(t, h, "run", "-d", "--name", fmt.Sprintf("c%d", i), "--net", "n1", "busybox", "sleep", "1d")
	}
	cli(t, h, "network", "connect", "n2", "c2")
	cli(t, h, "run", "-d", "--name", "gone", "--net", "n1", "busybox", "sleep", "1d")
	freed := ipOf(t, h, "gone", "n1")
	cli(t, h, "rm", "-f", "gone")
	before := inspectJSON(t, h, "c0", "c1", "c2", "n1", "n2")
	objs := kernelObjects(t, h)

	h.Kill()
	h.Start()

	if after := inspectJSON(t, h, "c0", "c1", "c2", "n1", "n2"); after != before {
		t.Errorf("inspect changed across kill -9 and restart:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if !ping(t, h, "c0", "c1") || !ping(t, h, "c1", "c2.n1") {
		t.Error("containers cannot reach each other after the restart")
	}
	if got := kernelObjects(t, h); fmt.Sprint(got) != fmt.Sprint(objs) {
		t.Errorf("kernel objects changed across restart:\nbefore %v\nafter  %v", objs, got)
	}
	cli(t, h, "run", "-d", "--name", "c3", "--net", "n1", "busybox", "sleep", "1d")
	ip := ipOf(t, h, "c3", "n1")
	var used []string
	for i := 0; i < 3; i++ {
		used = append(used, ipOf(t, h, fmt.Sprintf("c%d", i), "n1"))
	}
	used = append(used, freed, "10.66.0.1")
	sort.Strings(used)
	for _, u := range used {
		if ip == u {
			t.Errorf("new container got %s, which is in use or was just freed (%v)", ip, used)
		}
	}
	if !ping(t, h, "c3", "c0") {
		t.Error("new container cannot reach an old one")
	}
	// A clean stop (SIGTERM) keeps containers running too.
	h.Stop()
	h.Start()
	if !ping(t, h, "c3", "c1") {
		t.Error("containers do not survive a clean daemon stop")
	}
}

// 50 run/rm cycles leave no vxnet-made veth, netns mount, runc container or
// process behind, and addresses are never handed out twice meanwhile.
func TestRunRmCyclesLeaveNothing(t *testing.T) {
	_, h := single(t)
	cli(t, h, "network", "create", "--subnet", "10.55.0.0/24", "n1")
	base := kernelObjects(t, h)
	for i := 0; i < 50; i++ {
		name := fmt.Sprintf("cyc%d", i)
		cli(t, h, "run", "-d", "--name", name, "--net", "n1", "busybox", "sleep", "1d")
		cli(t, h, "rm", "-f", name)
	}
	if got := kernelObjects(t, h); fmt.Sprint(got) != fmt.Sprint(base) {
		t.Errorf("kernel objects after 50 cycles:\nbefore %v\nafter  %v", base, got)
	}
	if out := cli(t, h, "ps", "-aq"); out != "" {
		t.Errorf("containers left: %s", out)
	}
	if out, _ := h.Exec("runc", "--root", h.ExecRoot+"/runc", "list", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("runc containers left: %s", out)
	}
	if out, _ := h.Exec("sh", "-c", "ls "+h.ExecRoot+"/netns; grep -c "+h.ExecRoot+"/netns /proc/self/mountinfo"); strings.TrimSpace(out) != "0" {
		t.Errorf("sandbox namespaces left: %q", out)
	}
	if out, _ := h.Exec("sh", "-c", "pgrep -f '"+h.DataRoot+"/container[s]' || true"); strings.TrimSpace(out) != "" {
		t.Errorf("shim processes left: %s", out)
	}
}

// The container's output reaches its log across a kill -9 of the daemon:
// the new daemon reopens the task's FIFOs in containerd. Its task is
// containerd's (the shared containerd of the harness, the host's namespace).
func TestLogsAcrossKill(t *testing.T) {
	_, h := single(t)
	cli(t, h, "run", "-d", "--name", "talk", "busybox", "sh", "-c",
		"echo one; while [ ! -e /go ]; do sleep 0.1; done; echo two; sleep 1d")
	if !eventually(20*time.Second, func() bool { return cli(t, h, "logs", "talk") == "one" }) {
		t.Fatalf("logs before the kill: %q", cli(t, h, "logs", "talk"))
	}
	h.Kill()
	h.Start()
	cli(t, h, "exec", "talk", "touch", "/go")
	if !eventually(20*time.Second, func() bool { return cli(t, h, "logs", "talk") == "one\ntwo" }) {
		t.Errorf("logs after the restart: %q, want one and two", cli(t, h, "logs", "talk"))
	}
	cli(t, h, "rm", "-f", "talk")
}
