package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/testreq"
)

func needDockerCLI(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/local/bin/docker"); err != nil {
		testreq.Skip(t, "the docker CLI is not installed")
	}
}

// state returns "Status Paused RestartCount ExitCode" of a container.
func state(t *testing.T, h *harness.Host, ref string) string {
	t.Helper()
	return strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{.State.Status}} {{.State.Paused}} {{.RestartCount}} {{.State.ExitCode}}", ref))
}

func logLines(h *harness.Host, ref string) int {
	out, _, _ := h.Docker("logs", ref)
	return strings.Count(out, "\n")
}

// pause freezes the container (no output while paused, exec and attach
// refused as in Docker), unpause thaws it, stop delivers its SIGTERM to a
// paused container; top lists its processes only; stats reads its cgroup
// and interfaces, one-shot and streamed.
func TestDockerCLIPauseTopStats(t *testing.T) {
	needDockerCLI(t)
	_, h := single(t)
	h.MustDocker(t, "run", "-d", "--name", "p", "busybox", "sh", "-c",
		`trap "exit 3" TERM; while true; do echo tick; sleep 0.1; done`)
	if !eventually(20*time.Second, func() bool { return logLines(h, "p") > 2 }) {
		t.Fatal("p prints nothing")
	}

	h.MustDocker(t, "pause", "p")
	if st := state(t, h, "p"); st != "paused true 0 0" {
		t.Errorf("after pause: %q", st)
	}
	if out := h.MustDocker(t, "ps", "--format", "{{.Names}} {{.Status}}", "--filter", "status=paused"); !strings.HasPrefix(out, "p Up ") || !strings.Contains(out, "(Paused)") {
		t.Errorf("docker ps of a paused container: %q", out)
	}
	n := logLines(h, "p")
	time.Sleep(time.Second)
	if m := logLines(h, "p"); m != n {
		t.Errorf("a paused container wrote %d lines", m-n)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"exec", "p", "true"}, "is paused, unpause the container before exec"},
		{[]string{"attach", "p"}, "You cannot attach to a paused container, unpause it first"}, // the CLI checks State.Paused
		{[]string{"pause", "p"}, "is already paused"},
	} {
		if _, errOut, code := h.Docker(tc.args...); code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("docker %s while paused: exit %d, %q; want %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
	if resp, err := apiClient(h).Post("http://vxnet/containers/p/attach?stream=1&stdout=1", "", nil); err != nil || resp.StatusCode != http.StatusConflict {
		t.Errorf("API attach while paused: %v %v, want 409", resp.Status, err)
	} else {
		resp.Body.Close()
	}
	h.MustDocker(t, "unpause", "p")
	if !eventually(20*time.Second, func() bool { return logLines(h, "p") > n+2 }) {
		t.Error("no output after unpause")
	}
	if _, errOut, code := h.Docker("unpause", "p"); code == 0 || !strings.Contains(errOut, "is not paused") {
		t.Errorf("docker unpause of a running container: exit %d %q", code, errOut)
	}

	// top: the container's processes (its shell and sleep), not the host's.
	out := h.MustDocker(t, "top", "p")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); !strings.Contains(lines[0], "PID") || len(lines) < 2 ||
		!strings.Contains(out, "trap") || strings.Contains(out, "vxnet") {
		t.Errorf("docker top p:\n%s", out)
	}
	if out := h.MustDocker(t, "top", "p", "-o", "pid,comm"); !strings.Contains(out, "COMMAND") || !strings.Contains(out, " sh\n") {
		t.Errorf("docker top p -o pid,comm:\n%s", out)
	}

	// stats: the CLI's one-shot table, and the API's shape.
	if out := h.MustDocker(t, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemUsage}}", "p"); !strings.HasPrefix(out, "p ") || strings.HasPrefix(out, "p 0 ") {
		t.Errorf("docker stats --no-stream: %q", out)
	}
	h.MustDocker(t, "exec", "p", "ping", "-c", "3", "-W", "1", "172.17.0.1")
	cl := apiClient(h)
	resp, err := cl.Get("http://vxnet/containers/p/stats?stream=true")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	var s1, s2 container.StatsResponse
	if err := dec.Decode(&s1); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&s2); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s1.Name != "/p" || s1.CPUStats.CPUUsage.TotalUsage == 0 || s1.MemoryStats.Usage == 0 || s1.PidsStats.Current < 2 ||
		s1.CPUStats.SystemUsage == 0 || s1.CPUStats.OnlineCPUs == 0 {
		t.Errorf("stats sample: %+v", s1)
	}
	if eth0 := s1.Networks["eth0"]; eth0.TxPackets < 3 || eth0.RxPackets < 3 {
		t.Errorf("eth0 counters after 3 pings: %+v", s1.Networks)
	}
	if s2.PreCPUStats.CPUUsage.TotalUsage != s1.CPUStats.CPUUsage.TotalUsage || !s2.PreRead.Equal(s1.Read) || !s2.Read.After(s1.Read) {
		t.Errorf("the second streamed sample does not carry the first as its previous one")
	}

	// stop of a paused container: the SIGTERM reaches the trap.
	h.MustDocker(t, "pause", "p")
	h.MustDocker(t, "stop", "-t", "20", "p")
	if st := state(t, h, "p"); st != "exited false 0 3" {
		t.Errorf("after stopping a paused container: %q, want exited with the trap's 3", st)
	}
	if _, errOut, code := h.Docker("top", "p"); code == 0 || !strings.Contains(errOut, "is not running") {
		t.Errorf("docker top of a stopped container: exit %d %q", code, errOut)
	}
	if _, errOut, code := h.Docker("pause", "p"); code == 0 || !strings.Contains(errOut, "is not running") {
		t.Errorf("docker pause of a stopped container: exit %d %q", code, errOut)
	}
	h.MustDocker(t, "rm", "p")

	// wait conditions: not-running answers a created container at once;
	// next-exit and removed wait for the next exit and for the removal.
	h.MustDocker(t, "create", "--name", "w", "busybox", "sh", "-c", "exit 6")
	wait := func(cond string) <-chan string {
		ch := make(chan string, 1)
		go func() {
			resp, err := apiClient(h).Post("http://vxnet/containers/w/wait?condition="+cond, "", nil)
			if err != nil {
				ch <- err.Error()
				return
			}
			defer resp.Body.Close()
			var wr container.WaitResponse
			json.NewDecoder(resp.Body).Decode(&wr)
			ch <- strconv.FormatInt(wr.StatusCode, 10)
		}()
		return ch
	}
	if got := <-wait("not-running"); got != "0" {
		t.Errorf("wait not-running on a created container: %s", got)
	}
	next, removed := wait("next-exit"), wait("removed")
	time.Sleep(time.Second) // both waits are registered
	h.MustDocker(t, "start", "w")
	select {
	case got := <-next:
		if got != "6" {
			t.Errorf("wait next-exit: %s, want 6", got)
		}
	case <-time.After(30 * time.Second):
		t.Error("wait next-exit did not return")
	}
	select {
	case got := <-removed:
		t.Errorf("wait removed returned %s before the removal", got)
	case <-time.After(500 * time.Millisecond):
	}
	h.MustDocker(t, "rm", "w")
	select {
	case got := <-removed:
		if got != "6" {
			t.Errorf("wait removed: %s, want 6", got)
		}
	case <-time.After(30 * time.Second):
		t.Error("wait removed did not return")
	}
}

// Restart policies with the docker CLI: on-failure:N stops after N
// restarts, always restarts a clean exit until a user stops it,
// unless-stopped stays down after docker kill, no never restarts.
// Events record it all; a failed first start leaves the container created
// with Docker's exit code.
func TestDockerCLIRestartPoliciesAndEvents(t *testing.T) {
	needDockerCLI(t)
	_, h := single(t)
	since := strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)

	h.MustDocker(t, "run", "-d", "--name", "of", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3")
	h.MustDocker(t, "run", "-d", "--name", "al", "--restart", "always", "busybox", "sh", "-c", "sleep 0.3")
	h.MustDocker(t, "run", "-d", "--name", "us", "--restart", "unless-stopped", "busybox", "sleep", "1d")
	h.MustDocker(t, "run", "-d", "--name", "no", "busybox", "sh", "-c", "exit 5")

	if !eventually(30*time.Second, func() bool { return state(t, h, "of") == "exited false 2 3" }) {
		t.Errorf("on-failure:2 after exits with 3: %q, want exited after 2 restarts", state(t, h, "of"))
	}
	if p := strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}", "of")); p != "on-failure:2" {
		t.Errorf("inspect restart policy: %q", p)
	}
	count := func(ref string) int {
		n, _ := strconv.Atoi(strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{.RestartCount}}", ref)))
		return n
	}
	if !eventually(30*time.Second, func() bool { return count("al") >= 2 }) {
		t.Errorf("always: restart count %d after clean exits", count("al"))
	}
	h.MustDocker(t, "stop", "al")
	n := count("al")
	time.Sleep(1500 * time.Millisecond)
	if st := state(t, h, "al"); !strings.HasPrefix(st, "exited") || count("al") != n {
		t.Errorf("always after docker stop: %q (count %d, was %d)", st, count("al"), n)
	}
	h.MustDocker(t, "kill", "us")
	time.Sleep(500 * time.Millisecond)
	if st := state(t, h, "us"); st != "exited false 0 137" {
		t.Errorf("unless-stopped after docker kill: %q", st)
	}
	if st := state(t, h, "no"); st != "exited false 0 5" {
		t.Errorf("no policy: %q", st)
	}
	// A user start resets the count.
	h.MustDocker(t, "start", "us")
	if st := state(t, h, "us"); st != "running false 0 0" {
		t.Errorf("unless-stopped after docker start: %q", st)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "-d", "--restart", "on-failure:-1", "busybox", "true"}, "maximum retry count cannot be negative"},
		{[]string{"run", "-d", "--restart", "always:3", "busybox", "true"}, "maximum retry count can only be used with 'on-failure'"},
	} {
		if _, errOut, code := h.Docker(tc.args...); code != 125 || !strings.Contains(errOut, tc.want) {
			t.Errorf("docker %s: exit %d %q, want 125 and %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}

	// A failed foreground run without --rm: created, with the exit code.
	if _, errOut, code := h.Docker("run", "--name", "bad", "busybox", "nosuch"); code != 127 || !strings.Contains(errOut, "executable file not found") {
		t.Errorf("docker run of a missing command: exit %d %q", code, errOut)
	}
	if st := strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}", "bad")); !strings.HasPrefix(st, "created 127 ") || !strings.Contains(st, "nosuch") {
		t.Errorf("after a failed run: %q", st)
	}

	// Events: what happened to "of", and the network's life.
	h.MustDocker(t, "network", "create", "evnet")
	h.MustDocker(t, "network", "connect", "evnet", "us")
	h.MustDocker(t, "network", "disconnect", "evnet", "us")
	h.MustDocker(t, "network", "rm", "evnet")
	h.MustDocker(t, "rename", "no", "no2")
	h.MustDocker(t, "tag", "busybox", "evtag:1")
	h.MustDocker(t, "rmi", "evtag:1")
	h.MustDocker(t, "volume", "create", "evvol")
	h.MustDocker(t, "volume", "rm", "evvol")
	until := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
	events := func(filters ...string) string {
		args := []string{"events", "--since", since, "--until", until, "--format", "{{.Type}} {{.Action}}"}
		for _, f := range filters {
			args = append(args, "--filter", f)
		}
		return strings.TrimSpace(h.MustDocker(t, args...))
	}
	if got, want := events("container=of"), "container create\ncontainer start\ncontainer die\ncontainer start\ncontainer die\ncontainer start\ncontainer die"; got != want {
		t.Errorf("events of on-failure:2:\n%s\nwant\n%s", got, want)
	}
	if got, want := events("type=network", "network=evnet"), "network create\nnetwork connect\nnetwork disconnect\nnetwork destroy"; got != want {
		t.Errorf("network events:\n%s\nwant\n%s", got, want)
	}
	if got, want := events("image=evtag:1"), "image tag\nimage untag"; got != want {
		t.Errorf("image events:\n%s\nwant\n%s", got, want)
	}
	if got, want := events("volume=evvol"), "volume create\nvolume destroy"; got != want {
		t.Errorf("volume events:\n%s\nwant\n%s", got, want)
	}
	if got := events("container=us", "event=kill"); got != "container kill" {
		t.Errorf("kill event of us: %q", got)
	}
	if got := h.MustDocker(t, "events", "--since", since, "--until", until, "--filter", "event=rename", "--format", "{{.Actor.Attributes.oldName}} {{.Actor.Attributes.name}}"); strings.TrimSpace(got) != "/no no2" {
		t.Errorf("rename event: %q", got)
	}
	if _, errOut, code := h.Docker("events", "--filter", "bogus=1", "--until", until); code == 0 || !strings.Contains(errOut, "invalid filter 'bogus'") {
		t.Errorf("events with a bad filter: exit %d %q", code, errOut)
	}

	// Streaming: a reader sees an event as it happens.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/local/bin/docker", "-H", "unix://"+h.Socket, "events", "--filter", "event=start", "--format", "{{.Actor.Attributes.name}}")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(h.Dir, "docker-config"))
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(time.Second) // the reader has subscribed
	h.MustDocker(t, "start", "no2")
	select {
	case l := <-lines:
		if l != "no2" {
			t.Errorf("streamed event: %q, want no2", l)
		}
	case <-time.After(30 * time.Second):
		t.Error("no start event streamed")
	}
	// vxnet events speaks the same.
	if out := cli(t, h, "events", "--since", since, "--until", until, "--filter", "container=bad"); !strings.Contains(out, "container create ") || !strings.Contains(out, "name=bad") {
		t.Errorf("vxnet events: %q", out)
	}
	h.MustDocker(t, "rm", "-f", "of", "al", "us", "no2", "bad")
}
