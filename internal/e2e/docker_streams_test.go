package e2e

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/testreq"
)

// dockerIn runs the docker CLI against h with stdin; through `script` (a
// pseudo-terminal for the CLI) when tty.
func dockerIn(t *testing.T, h *harness.Host, stdin string, tty bool, args ...string) (string, string, int) {
	t.Helper()
	bin := "/usr/local/bin/docker"
	if _, err := os.Stat(bin); err != nil {
		testreq.Skip(t, "the docker CLI is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{bin, "-H", "unix://" + h.Socket}, args...)
	var cmd *exec.Cmd
	if tty {
		if _, err := exec.LookPath("script"); err != nil {
			testreq.Skip(t, "script (util-linux) is not installed")
		}
		cmd = exec.CommandContext(ctx, "script", "-qec", "stty cols 100 rows 40; "+strings.Join(full, " "), "/dev/null")
	} else {
		cmd = exec.CommandContext(ctx, full[0], full[1:]...)
	}
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(h.Dir, "docker-config"))
	cmd.Stdin = strings.NewReader(stdin)
	if tty {
		// Typed once the CLI has its terminal in raw mode (before, the
		// terminal would take ctrl-q for flow control), and held open a
		// little so the CLI reads it before the terminal hangs up.
		cmd.Stdin = &typist{text: stdin}
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("docker %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// The streams of docker run, start -a, attach and exec, with the real
// docker CLI: output, stdin, TTY, exit codes (the container's, and 125,
// 126, 127 for what did not run) and detaching.
func TestDockerCLIStreams(t *testing.T) {
	if _, err := os.Stat("/usr/local/bin/docker"); err != nil {
		testreq.Skip(t, "the docker CLI is not installed")
	}
	_, h := single(t)
	for _, tc := range []struct {
		name            string
		stdin           string
		tty             bool
		args            []string
		code            int
		stdout, inError string
	}{
		{"run --rm echo", "", false, []string{"run", "--rm", "busybox", "echo", "hi"}, 0, "hi\n", ""},
		{"run exit code and streams", "", false, []string{"run", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7"}, 7, "out\n", "err"},
		{"run -i stdin", "piped\nlines\n", false, []string{"run", "-i", "--rm", "busybox", "cat"}, 0, "piped\nlines\n", ""},
		{"run -i empty stdin", "", false, []string{"run", "-i", "--rm", "busybox", "wc", "-l"}, 0, "0\n", ""},
		{"run -t", "", false, []string{"run", "-t", "--rm", "busybox", "tty"}, 0, "/dev/pts/0\r\n", ""},
		{"run command not found", "", false, []string{"run", "--rm", "busybox", "nosuch"}, 127, "", "executable file not found"},
		{"run not executable", "", false, []string{"run", "--rm", "busybox", "/etc"}, 126, "", "permission denied"},
		{"run unsupported option", "", false, []string{"run", "--rm", "--userns", "host", "busybox", "true"}, 125, "", "vxnet does not support HostConfig.UsernsMode"},
		{"run -it", "echo in-shell\nexit 3\n", true, []string{"run", "-it", "--rm", "busybox", "sh"}, 3, "in-shell", ""},
		{"run -it size", "", true, []string{"run", "-it", "--rm", "busybox", "stty", "size"}, 0, "40 100", ""},
	} {
		out, errOut, code := dockerIn(t, h, tc.stdin, tc.tty, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.stdout) || (tc.stdout == "" && out != "") && !tc.tty ||
			!strings.Contains(errOut+out, tc.inError) {
			t.Errorf("%s: docker %s: exit %d (want %d), stdout %q (want %q), stderr %q (want %q)",
				tc.name, strings.Join(tc.args, " "), code, tc.code, out, tc.stdout, errOut, tc.inError)
		}
	}
	// Nothing is left of the --rm runs, failed or not.
	if ps := strings.Fields(h.MustDocker(t, "ps", "-aq")); len(ps) != 1 {
		t.Errorf("docker ps -a after the runs: %v, want only the exit-7 one", ps)
	}

	h.MustDocker(t, "create", "--name", "sa", "busybox", "sh", "-c", "echo started; exit 4")
	if out, _, code := dockerIn(t, h, "", false, "start", "-a", "sa"); code != 4 || out != "started\n" {
		t.Errorf("docker start -a: exit %d, %q", code, out)
	}

	h.MustDocker(t, "run", "-d", "--name", "s", "busybox", "sleep", "1d")
	if out, _, code := dockerIn(t, h, "hello\n", false, "exec", "-i", "s", "cat"); code != 0 || out != "hello\n" {
		t.Errorf("docker exec -i: exit %d, %q", code, out)
	}
	if out, _, code := dockerIn(t, h, "", false, "exec", "-t", "s", "tty"); code != 0 || out != "/dev/pts/1\r\n" && out != "/dev/pts/0\r\n" {
		t.Errorf("docker exec -t: exit %d, %q", code, out)
	}
	if out, _, code := dockerIn(t, h, "exit 6\n", true, "exec", "-it", "s", "sh"); code != 6 {
		t.Errorf("docker exec -it: exit %d, %q", code, out)
	}
	if _, _, code := dockerIn(t, h, "", false, "exec", "s", "nosuch"); code != 127 && code != 126 {
		t.Errorf("docker exec nosuch: exit %d, want 126 or 127", code)
	}

	// ctrl-p ctrl-q detaches; the container runs on, and attach reaches it.
	if _, _, code := dockerIn(t, h, "\x10\x11", true, "run", "-it", "--name", "det", "busybox", "sh"); code != 0 {
		t.Errorf("docker run -it, detached: exit %d", code)
	}
	if st := strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{.State.Status}}", "det")); st != "running" {
		t.Errorf("after detaching, det is %s", st)
	}
	if out, _, code := dockerIn(t, h, "echo back-again\nexit 9\n", true, "attach", "det"); code != 9 || !strings.Contains(out, "back-again") {
		t.Errorf("docker attach det: exit %d, %q", code, out)
	}
	h.MustDocker(t, "rm", "-f", "s", "sa", "det")
}

// typist is stdin typed after a pause, ending after another.
type typist struct {
	text string
	n    int
}

func (ty *typist) Read(p []byte) (int, error) {
	switch ty.n {
	case 0:
		time.Sleep(3 * time.Second)
	case 1:
		time.Sleep(3 * time.Second)
		return 0, io.EOF
	}
	ty.n++
	return copy(p, ty.text), nil
}

// kill with a signal, restart, container prune and logs --tail, -t,
// --since with the docker CLI; a signal to a stopped container is refused.
func TestDockerCLILifecycle(t *testing.T) {
	if _, err := os.Stat("/usr/local/bin/docker"); err != nil {
		testreq.Skip(t, "the docker CLI is not installed")
	}
	_, h := single(t)
	h.MustDocker(t, "run", "-d", "--name", "k", "busybox", "sh", "-c",
		`trap "echo got-usr1" USR1; echo one; echo two >&2; while true; do sleep 0.2; done`)
	h.MustDocker(t, "kill", "-s", "USR1", "k")
	if !eventually(20*time.Second, func() bool { out, _, _ := h.Docker("logs", "k"); return strings.Contains(out, "got-usr1") }) {
		t.Fatalf("docker kill -s USR1: the trap did not run")
	}
	if out, errOut, _ := h.Docker("logs", "--tail", "1", "k"); out != "got-usr1\n" || errOut != "" {
		t.Errorf("docker logs --tail 1: stdout %q stderr %q", out, errOut)
	}
	if out := h.MustDocker(t, "logs", "-t", "--tail", "1", "k"); !strings.HasSuffix(out, "Z got-usr1\n") || !strings.HasPrefix(out, "20") {
		t.Errorf("docker logs -t --tail 1: %q", out)
	}
	if out := h.MustDocker(t, "logs", "--since", "2999-01-01T00:00:00Z", "k"); out != "" {
		t.Errorf("docker logs --since the future: %q", out)
	}
	h.MustDocker(t, "kill", "k")
	if st := strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "k")); st != "exited 137" {
		t.Errorf("after docker kill: %s, want exited 137", st)
	}
	if _, errOut, code := h.Docker("kill", "k"); code != 1 || !strings.Contains(errOut, "is not running") {
		t.Errorf("docker kill of a stopped container: exit %d %q", code, errOut)
	}
	h.MustDocker(t, "restart", "-t", "1", "k")
	if st := strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{.State.Status}}", "k")); st != "running" {
		t.Errorf("after docker restart: %s", st)
	}
	h.MustDocker(t, "run", "--name", "done", "busybox", "true")
	if out := h.MustDocker(t, "container", "prune", "-f"); !strings.Contains(out, "Deleted Containers:") {
		t.Errorf("docker container prune: %q", out)
	}
	if ps := strings.TrimSpace(h.MustDocker(t, "ps", "-a", "--format", "{{.Names}}")); ps != "k" {
		t.Errorf("after prune: %q, want only the running k", ps)
	}
	h.MustDocker(t, "rm", "-f", "k")
}
