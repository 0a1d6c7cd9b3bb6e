package e2e

import (
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
)

// kill -9 of the daemon while containers run with TTYs, restart policies
// and a named volume, and some of their processes die while it is down:
// after the restart every container runs or was restarted as its policy
// says, the ones left running are the same processes, attach reaches the
// TTY again, the volume's data is there, and containerd holds exactly the
// daemon's containers (no orphaned container, task or snapshot), also
// after they are removed.
func TestDaemonKillWithRestartPolicies(t *testing.T) {
	needDockerCLI(t)
	_, h := single(t)
	run := func(args ...string) {
		h.MustDocker(t, append([]string{"run", "-d"}, args...)...)
	}
	run("-it", "--name", "tty", "--restart", "always", "busybox", "sh")
	run("--name", "vol", "--restart", "unless-stopped", "-v", "kvol:/data", "busybox", "sh", "-c", "echo kept > /data/f; sleep 1d")
	run("--name", "us", "--restart", "unless-stopped", "busybox", "sleep", "1d")
	run("--name", "us-stopped", "--restart", "unless-stopped", "busybox", "sleep", "1d")
	run("--name", "al-stopped", "--restart", "always", "busybox", "sleep", "1d")
	run("--name", "al-dies", "--restart", "always", "busybox", "sleep", "1d")
	run("--name", "of-dies", "--restart", "on-failure:3", "busybox", "sleep", "1d")
	run("--name", "no-dies", "busybox", "sleep", "1d")
	h.MustDocker(t, "stop", "-t", "1", "us-stopped", "al-stopped")
	pid := func(ref string) int {
		n, _ := strconv.Atoi(strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{.State.Pid}}", ref)))
		return n
	}
	if !eventually(20*time.Second, func() bool { out, _, _ := h.Docker("exec", "vol", "cat", "/data/f"); return out == "kept\n" }) {
		t.Fatal("vol did not write its volume")
	}
	before := map[string]int{}
	for _, c := range []string{"tty", "vol", "us", "al-dies", "of-dies", "no-dies"} {
		before[c] = pid(c)
	}

	h.Kill()
	for _, c := range []string{"al-dies", "of-dies", "no-dies"} {
		if err := syscall.Kill(before[c], syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s's process: %v", c, err)
		}
	}
	h.Start()

	status := func(ref string) string {
		return strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", ref))
	}
	want := map[string]string{
		"tty": "running 0", "vol": "running 0", "us": "running 0", // kept running
		"al-stopped": "running 0", "al-dies": "running 0", "of-dies": "running 0", // restarted at daemon start
		"us-stopped": "exited 137", "no-dies": "exited 137", // left down
	}
	for c, w := range want {
		if !eventually(20*time.Second, func() bool { return status(c) == w }) {
			t.Errorf("%s after the daemon's kill -9 and restart: %q, want %q", c, status(c), w)
		}
	}
	for _, c := range []string{"tty", "vol", "us"} {
		if p := pid(c); p != before[c] {
			t.Errorf("%s was restarted (pid %d, was %d); it should have kept running", c, p, before[c])
		}
	}
	for _, c := range []string{"al-dies", "of-dies"} {
		if out, _, code := h.Docker("exec", c, "echo", "alive"); code != 0 || out != "alive\n" {
			t.Errorf("exec in restarted %s: %d %q", c, code, out)
		}
	}
	if out, _, _ := h.Docker("exec", "vol", "cat", "/data/f"); out != "kept\n" {
		t.Errorf("the named volume after the restart: %q", out)
	}
	// The TTY container answers an attach again; its shell's exit is
	// restarted by its policy.
	if out, _, code := dockerIn(t, h, "echo back-$((40+2)); exit 0\n", true, "attach", "tty"); code != 0 || !strings.Contains(out, "back-42") {
		t.Errorf("docker attach tty after the restart: exit %d, %q", code, out)
	}
	if !eventually(20*time.Second, func() bool { return status("tty") == "running 0" && pid("tty") != before["tty"] }) {
		t.Errorf("tty after its shell exited: %q, want restarted by its policy", status("tty"))
	}
	checkContainerd(t, h)

	// A second kill -9 with nothing dying meanwhile changes nothing.
	h.Kill()
	h.Start()
	for c, w := range want {
		if st := status(c); st != w {
			t.Errorf("%s after a second kill -9: %q, want %q", c, st, w)
		}
	}
	checkContainerd(t, h)
	h.MustDocker(t, "rm", "-f", "tty", "vol", "us", "us-stopped", "al-stopped", "al-dies", "of-dies", "no-dies")
	if tasks, snaps := h.ContainerdObjects(t); len(tasks) != 0 || len(snaps) != 0 {
		t.Errorf("containerd after removing every container: containers %v, snapshots %v", tasks, snaps)
	}
}

// checkContainerd: containerd has one container (and snapshot) per daemon
// container, a running task for each running one and none running for the
// others.
func checkContainerd(t *testing.T, h *harness.Host) {
	t.Helper()
	out := h.MustDocker(t, "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.State}}")
	states := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		id, st, _ := strings.Cut(line, " ")
		states[id] = st
	}
	tasks, snaps := h.ContainerdObjects(t)
	for id, task := range tasks {
		st, ok := states[id]
		switch {
		case !ok:
			t.Errorf("containerd container %s (task %q) is no daemon container", id, task)
		case st == "running" && task != "running":
			t.Errorf("container %s runs, but its containerd task is %q", id, task)
		case st != "running" && task == "running":
			t.Errorf("container %s is %s, but its containerd task runs", id, st)
		}
	}
	for id := range states {
		if _, ok := tasks[id]; !ok {
			t.Errorf("daemon container %s has no containerd container", id)
		}
		if !slices.Contains(snaps, id) {
			t.Errorf("daemon container %s has no snapshot", id)
		}
	}
	if len(snaps) != len(states) {
		t.Errorf("containerd snapshots %v, want one per container (%d)", snaps, len(states))
	}
}
