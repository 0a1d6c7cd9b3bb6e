package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Host is one host namespace of a cluster and the vxnet daemon it may run.
// Its methods fail the test that made the cluster; call them from that
// test's goroutine.
type Host struct {
	Name     string     // "h0", "h1", ...
	Netns    string     // /run/netns/<name>
	Addr     netip.Addr // underlay address, 192.0.2.(10+i)
	Dir      string     // the host's directory in the cluster directory
	DataRoot string     // --data-root
	ExecRoot string     // --exec-root
	Socket   string     // the daemon's API socket (-H unix://Socket)
	LogPath  string     // daemon stdout and stderr, appended across restarts
	// Env is added to the daemon's environment at the next Start (after
	// Options.Env), e.g. VXNET_CRASHPOINT for one run of one daemon.
	Env []string

	c      *Cluster
	ns     *NS
	index  int
	swLink string // the switch side of the host's underlay veth

	proc      *exec.Cmd
	done      chan struct{} // closed when proc has been waited for
	lastExtra []string
	// containerd is the socket of the containerd the daemon uses (the
	// test process's shared one; namespace: the host's netns name).
	containerd string
}

// NS returns the host's namespace.
func (h *Host) NS() *NS { return h.ns }

// Running reports whether the daemon process is alive.
func (h *Host) Running() bool {
	if h.proc == nil {
		return false
	}
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

// DaemonArgs returns the full daemon argument list Start would use with
// extraArgs: "daemon -H unix://Socket --data-root --exec-root --log-level
// debug", then Options.DaemonArgs, then extraArgs.
func (h *Host) DaemonArgs(extraArgs ...string) []string {
	args := []string{"daemon", "-H", "unix://" + h.Socket, "--data-root", h.DataRoot,
		"--exec-root", h.ExecRoot, "--log-level", "debug"}
	var more []string
	if h.c.opts.DaemonArgs != nil {
		more = append(more, h.c.opts.DaemonArgs(h.index, h)...)
	}
	more = append(more, extraArgs...)
	oldRuntime := strings.Contains(" "+strings.Join(more, " ")+" ", " --runtime runc ")
	if h.containerd != "" && !oldRuntime {
		args = append(args, "--containerd", h.containerd, "--containerd-namespace", h.ns.Name)
	}
	return append(args, more...)
}

// Start runs the daemon in the host's network namespace, in its own
// process group, and waits (up to 20 s) until GET /_ping on its socket
// answers 200. The extra arguments are remembered for Restart.
func (h *Host) Start(extraArgs ...string) {
	t := h.c.t
	t.Helper()
	if h.Running() {
		t.Fatalf("harness: %s: Start: daemon already running", h.Name)
	}
	bin := h.c.binary(t)
	if h.c.opts.Binary == "" && h.containerd == "" {
		// The real daemon: its containers run in the shared containerd.
		addr, err := SharedContainerd()
		if err != nil {
			t.Fatalf("%v", err)
		}
		h.containerd = addr
	}
	h.lastExtra = append([]string(nil), extraArgs...)
	args := h.DaemonArgs(extraArgs...)
	logf, err := os.OpenFile(h.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("harness: %s: open daemon log: %v", h.Name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== harness %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	os.Remove(h.Socket) // a killed daemon leaves its socket behind
	cmd := exec.Command("nsenter", append([]string{"--net=" + h.Netns, "--", bin}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(append(os.Environ(), h.c.opts.Env...), h.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("harness: %s: start daemon: %v", h.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	h.proc, h.done = cmd, done

	deadline := time.Now().Add(startWait)
	for {
		if h.ping() == nil {
			return
		}
		select {
		case <-done:
			t.Fatalf("harness: %s: daemon exited during start (%v); log tail:\n%s", h.Name, cmd.ProcessState, h.LogTail(logTailSize))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			err := h.ping()
			h.killGroup(syscall.SIGKILL)
			t.Fatalf("harness: %s: daemon not answering /_ping after %v: %v; log tail:\n%s", h.Name, startWait, err, h.LogTail(logTailSize))
		}
	}
}

// ping asks the daemon's socket for GET /_ping.
func (h *Host) ping() error {
	client := &http.Client{
		Timeout: time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", h.Socket)
			},
			DisableKeepAlives: true,
		},
	}
	resp, err := client.Get("http://vxnet/_ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// Stop sends SIGTERM to the daemon and waits up to 20 s for it to exit; a
// daemon that does not is killed and the test marked failed. Whatever is
// left in the daemon's process group is then killed. Stopping a stopped
// daemon does nothing.
func (h *Host) Stop() {
	t := h.c.t
	t.Helper()
	if !h.Running() {
		return
	}
	h.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(startWait):
		t.Errorf("harness: %s: daemon still running %v after SIGTERM; killing it", h.Name, startWait)
	}
	h.Kill()
}

// Kill sends SIGKILL to the daemon's process group (kill -9: no cleanup
// by the daemon) and waits for the daemon to be gone. Shims and containers
// the daemon started in sessions of their own survive, as they would on a
// real host.
func (h *Host) Kill() {
	t := h.c.t
	t.Helper()
	if h.proc == nil {
		return
	}
	h.killGroup(syscall.SIGKILL)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Errorf("harness: %s: daemon pid %d not gone 10 s after SIGKILL", h.Name, h.proc.Process.Pid)
	}
}

func (h *Host) killGroup(sig syscall.Signal) {
	if h.proc != nil && h.proc.Process != nil {
		syscall.Kill(-h.proc.Process.Pid, sig) // ESRCH: already gone
	}
}

// Restart kills the daemon and starts it again, with extraArgs if given,
// else with the extra arguments of the last Start.
func (h *Host) Restart(extraArgs ...string) {
	h.c.t.Helper()
	h.Kill()
	if len(extraArgs) == 0 {
		extraArgs = h.lastExtra
	}
	h.Start(extraArgs...)
}

// CLI runs "vxnet -H unix://Socket args..." (from the test's namespace: the
// socket is a file) with a 60 s timeout. exitCode is -1 if it could not run
// or timed out.
func (h *Host) CLI(args ...string) (stdout, stderr string, exitCode int) {
	h.c.t.Helper()
	return h.run(h.c.binary(h.c.t), append([]string{"-H", "unix://" + h.Socket}, args...), nil)
}

// MustCLI is CLI failing t, with stderr, on a non-zero exit. It returns
// stdout.
func (h *Host) MustCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, code := h.CLI(args...)
	if code != 0 {
		t.Fatalf("vxnet %s on %s: exit %d: %s%s", strings.Join(args, " "), h.Name, code, errOut, out)
	}
	return out
}

// Docker runs the docker CLI against the host's daemon ("docker -H
// unix://Socket args..."), with a docker config directory in the host's
// directory, and a 60 s timeout.
func (h *Host) Docker(args ...string) (stdout, stderr string, exitCode int) {
	bin, err := exec.LookPath("docker")
	if err != nil {
		bin = "/usr/local/bin/docker"
	}
	env := []string{"DOCKER_CONFIG=" + filepath.Join(h.Dir, "docker-config")}
	return h.run(bin, append([]string{"-H", "unix://" + h.Socket}, args...), env)
}

// MustDocker is Docker failing t, with stderr, on a non-zero exit.
func (h *Host) MustDocker(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, code := h.Docker(args...)
	if code != 0 {
		t.Fatalf("docker %s on %s: exit %d: %s%s", strings.Join(args, " "), h.Name, code, errOut, out)
	}
	return out
}

func (h *Host) run(bin string, args, env []string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), h.c.opts.Env...), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		fmt.Fprintf(&errOut, "\nharness: timed out after %v", cmdTimeout)
		return out.String(), errOut.String(), -1
	}
	if err != nil && exitCode(err) == -1 {
		fmt.Fprintf(&errOut, "\nharness: %v", err)
	}
	return out.String(), errOut.String(), exitCode(err)
}

// Exec runs a command inside the host's network namespace (for ip, bridge,
// nft, ping checks); see NS.Exec.
func (h *Host) Exec(args ...string) (string, int) { return h.ns.Exec(args...) }

// MustExec is Exec failing t on a non-zero exit.
func (h *Host) MustExec(t testing.TB, args ...string) string {
	t.Helper()
	return h.ns.MustExec(t, args...)
}

// Cut detaches the host from the underlay bridge: its eth0 stays up, but
// nothing it sends reaches anyone (a partition, not a link failure).
func (h *Host) Cut() {
	h.c.t.Helper()
	h.c.ip(h.c.t, h.c.sw, "link", "set", h.swLink, "nomaster")
}

// Heal attaches the host to the underlay bridge again.
func (h *Host) Heal() {
	h.c.t.Helper()
	h.c.ip(h.c.t, h.c.sw, "link", "set", h.swLink, "master", bridgeName)
}

// LogTail returns the last n lines of the daemon log.
func (h *Host) LogTail(n int) string {
	b, err := os.ReadFile(h.LogPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "(no daemon log)"
		}
		return fmt.Sprintf("(read daemon log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// JoinArgs returns the daemon arguments that join the embedded cluster of
// host seed (started with --cluster-init): "--cluster-join <seed's address>
// --join-token-file FILE". The token file is in the cluster directory; it
// is refreshed from the first running host that prints the token ("vxnet
// node token -q", seed first), and kept as it was when none can (a
// restarting member holds its certificate and needs no token).
func (h *Host) JoinArgs(seed int) []string {
	c := h.c
	c.tokenMu.Lock()
	defer c.tokenMu.Unlock()
	file := filepath.Join(c.Dir, "join-token")
	order := append([]*Host{c.Hosts[seed]}, c.Hosts...)
	for _, s := range order {
		if s == h || !s.Running() {
			continue
		}
		out, _, code := s.CLI("node", "token", "-q")
		if tok := strings.TrimSpace(out); code == 0 && tok != "" {
			if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
				c.t.Fatalf("harness: write join token: %v", err)
			}
			break
		}
	}
	return []string{"--cluster-join", c.Hosts[seed].Addr.String(), "--join-token-file", file}
}

// RunDaemonToExit runs the daemon with extraArgs in the host's namespace
// in the foreground, for a start that must fail, and returns its combined
// output and exit code (-1 if it was still running after timeout, then it
// is killed). The host must not be running a daemon.
func (h *Host) RunDaemonToExit(timeout time.Duration, extraArgs ...string) (string, int) {
	t := h.c.t
	t.Helper()
	if h.Running() {
		t.Fatalf("harness: %s: RunDaemonToExit: daemon already running", h.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + h.Netns, "--", h.c.binary(t)}, h.DaemonArgs(extraArgs...)...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), -1
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("harness: %s: run daemon: %v", h.Name, err)
	}
	return string(out), 0
}
