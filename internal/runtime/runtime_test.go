package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/runtime/image"
	"github.com/vxnet/vxnet/internal/testreq"
)

const (
	shimArg   = "runtime-test-shim"
	daemonArg = "runtime-test-daemon"
)

// fakeDaemon is a stand-in daemon process: it creates and starts a
// container, says "started", and then blocks until it is killed.
func fakeDaemon(args []string) int {
	// args: runcRoot containersDir imagesDir id netns
	images, err := image.Open(args[2])
	if err != nil {
		return 1
	}
	self, _ := os.Executable()
	rt, err := New(Options{RuncRoot: args[0], ContainersDir: args[1], Images: images, ShimCommand: []string{self, shimArg}})
	if err != nil {
		return 1
	}
	ctx := context.Background()
	if err := rt.Create(ctx, Spec{ID: args[3], Image: "busybox", Args: []string{"sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.1; done"}, NetnsPath: args[4]}); err != nil {
		os.Stdout.WriteString(err.Error() + "\n")
		return 1
	}
	if _, err := rt.Start(ctx, args[3]); err != nil {
		os.Stdout.WriteString(err.Error() + "\n")
		return 1
	}
	os.Stdout.WriteString("started\n")
	time.Sleep(time.Minute)
	return 0
}

// TestMain doubles as the shim: Start re-executes the test binary with
// shimArg first.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == shimArg {
		os.Exit(ShimMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == daemonArg {
		os.Exit(fakeDaemon(os.Args[2:]))
	}
	os.Exit(m.Run())
}

type env struct {
	t      *testing.T
	root   string
	opts   Options
	rt     *Runtime
	images *image.Store
	busy   image.Image
}

func randomToken(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func setup(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		testreq.Skip(t, "needs root: runs runc containers")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		testreq.Skip(t, "needs runc")
	}
	root := t.TempDir()
	images, err := image.Open(filepath.Join(root, "images"))
	if err != nil {
		t.Fatal(err)
	}
	busy, err := images.EnsureBusybox(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		RuncRoot:      filepath.Join(root, "exec", "runc"),
		ContainersDir: filepath.Join(root, "containers"),
		ShimCommand:   []string{self, shimArg},
		Images:        images,
	}
	rt, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, root: root, opts: opts, rt: rt, images: images, busy: busy}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(e.sweep)
	return e
}

// sweep removes everything the test may have left: runc containers, shims,
// mounts under the temp dir and the cgroup parent, even after a failure.
func (e *env) sweep() {
	ctx := context.Background()
	ents, _ := os.ReadDir(e.opts.ContainersDir)
	for _, ent := range ents {
		d := filepath.Join(e.opts.ContainersDir, ent.Name())
		exec.Command("runc", "--root", e.opts.RuncRoot, "delete", "--force", ent.Name()).Run()
		var sh shimRecord
		if readJSON(filepath.Join(d, shimFile), &sh) == nil && sh.alive() {
			syscall.Kill(sh.Pid, syscall.SIGKILL)
		}
		unmountAll(filepath.Join(d, bundleDir, "rootfs"))
	}
	if out, err := exec.Command("runc", "--root", e.opts.RuncRoot, "list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			exec.Command("runc", "--root", e.opts.RuncRoot, "delete", "--force", id).Run()
		}
	}
	_ = ctx
	// runc may still be removing a container's cgroup: retry briefly.
	var err error
	for i := 0; i < 50; i++ {
		if err = removeCgroupParent(e.rt.CgroupParent()); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Errorf("cgroup parent left behind: %v", err)
}

// removeCgroupParent removes <own cgroup>/<parent> in every v1 hierarchy.
func removeCgroupParent(parent string) error {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		ctrl := strings.TrimPrefix(f[1], "name=")
		if ctrl == "" {
			ctrl = "unified"
		}
		p := filepath.Join("/sys/fs/cgroup", ctrl, f[2], parent)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			ents, _ := os.ReadDir(p)
			var sub []string
			for _, e := range ents {
				if e.IsDir() {
					sub = append(sub, e.Name())
				}
			}
			errs = append(errs, fmt.Errorf("%s (children %v): %w", p, sub, err))
		}
	}
	return errors.Join(errs...)
}

func (e *env) netns() string {
	p := filepath.Join(e.root, "netns-"+randomToken(e.t))
	if err := netns.Create(p); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { netns.Delete(p) })
	return p
}

func (e *env) create(s Spec) string {
	e.t.Helper()
	if s.ID == "" {
		s.ID = newID()
	}
	if s.Image == "" && s.Rootfs == "" {
		s.Image = "busybox"
	}
	if err := e.rt.Create(context.Background(), s); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { e.rt.Delete(context.Background(), s.ID) })
	return s.ID
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) exec(id string, args ...string) (int, string, string) {
	e.t.Helper()
	var out, errb bytes.Buffer
	code, err := e.rt.Exec(ctxT(e.t, 20*time.Second), id, args, nil, &out, &errb)
	if err != nil {
		e.t.Fatalf("exec %v: %v", args, err)
	}
	return code, out.String(), errb.String()
}

func TestExitCodeLogsAndRestart(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t, 60*time.Second)
	id := e.create(Spec{Args: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, NetnsPath: e.netns()})
	if st, err := e.rt.State(ctx, id); err != nil || st.Status != StatusCreated {
		t.Fatalf("state before start: %+v, %v", st, err)
	}
	for round := 1; round <= 2; round++ {
		if _, err := e.rt.Start(ctx, id); err != nil {
			t.Fatalf("start #%d: %v", round, err)
		}
		code, err := e.rt.Wait(ctx, id)
		if err != nil || code != 3 {
			t.Fatalf("wait #%d = %d, %v; want 3", round, code, err)
		}
		st, err := e.rt.State(ctx, id)
		if err != nil || st.Status != StatusStopped || st.ExitCode != 3 || st.FinishedAt.IsZero() {
			t.Fatalf("state #%d: %+v, %v", round, st, err)
		}
		var out, errb bytes.Buffer
		if err := e.rt.Logs(ctx, id, &out, &errb, false); err != nil {
			t.Fatal(err)
		}
		if out.String() != strings.Repeat("out\n", round) || errb.String() != strings.Repeat("err\n", round) {
			t.Fatalf("logs #%d: stdout %q stderr %q", round, out.String(), errb.String())
		}
	}
}

func TestLogsFollow(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t, 60*time.Second)
	id := e.create(Spec{Args: []string{"sh", "-c", "echo a; sleep 0.5; echo b >&2; echo c"}, NetnsPath: e.netns()})
	if _, err := e.rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := e.rt.Logs(ctx, id, &out, &errb, true); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\nc\n" || errb.String() != "b\n" {
		t.Fatalf("follow: stdout %q stderr %q", out.String(), errb.String())
	}
}

func TestExecNetnsMountsRestartDelete(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t, 120*time.Second)
	ns := e.netns()
	h, err := netns.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	// A veth pair inside the namespace (no dummy module here): the container
	// must see exactly lo and these two.
	tok := randomToken(t)[:6]
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vxa" + tok}, PeerName: "vxb" + tok}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	h.Close()
	hosts := filepath.Join(e.root, "hosts")
	if err := os.WriteFile(hosts, []byte("192.0.2.10\tvx-test-peer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := e.create(Spec{
		Args:      []string{"sleep", "1000"},
		Env:       []string{"FOO=bar"},
		Hostname:  "vx-test-host",
		NetnsPath: ns,
		Mounts:    []Mount{{Source: hosts, Destination: "/etc/hosts", ReadOnly: true}},
	})
	// Create is idempotent.
	if err := e.rt.Create(ctx, Spec{ID: id, Image: "busybox", Args: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	pid, err := e.rt.Start(ctx, id)
	if err != nil || pid <= 0 {
		t.Fatalf("start: %d, %v", pid, err)
	}
	if st, err := e.rt.State(ctx, id); err != nil || st.Status != StatusRunning || st.Pid != pid {
		t.Fatalf("state: %+v, %v (pid %d)", st, err, pid)
	}
	// Starting a running container returns its pid.
	if p2, err := e.rt.Start(ctx, id); err != nil || p2 != pid {
		t.Fatalf("second start: %d, %v", p2, err)
	}

	if code, out, _ := e.exec(id, "sh", "-c", "echo hi; exit 7"); code != 7 || out != "hi\n" {
		t.Errorf("exec exit: %d %q", code, out)
	}
	if code, out, _ := e.exec(id, "hostname"); code != 0 || out != "vx-test-host\n" {
		t.Errorf("hostname: %d %q", code, out)
	}
	if code, out, _ := e.exec(id, "cat", "/etc/hosts"); code != 0 || out != "192.0.2.10\tvx-test-peer\n" {
		t.Errorf("hosts: %d %q", code, out)
	}
	if code, _, _ := e.exec(id, "sh", "-c", "echo x > /etc/hosts"); code == 0 {
		t.Errorf("read-only bind mount was writable")
	}
	if code, out, _ := e.exec(id, "sh", "-c", "echo $FOO $HOSTNAME"); code != 0 || out != "bar vx-test-host\n" {
		t.Errorf("env: %d %q", code, out)
	}
	var out bytes.Buffer
	if code, err := e.rt.Exec(ctx, id, []string{"sh", "-c", "echo $X"}, []string{"X=from-exec"}, &out, nil); err != nil || code != 0 || out.String() != "from-exec\n" {
		t.Errorf("exec env: %d %v %q", code, err, out.String())
	}
	// Only the namespace's links are visible.
	code, links, _ := e.exec(id, "sh", "-c", "ls /sys/class/net")
	if f := strings.Fields(links); code != 0 || len(f) != 3 || !strings.Contains(links, "vxa"+tok) || !strings.Contains(links, "lo") {
		t.Errorf("links in container: %q", links)
	}
	// CAP_NET_RAW: ping works (loopback inside the container's namespace).
	if code, out, errs := e.exec(id, "ping", "-c", "1", "-W", "2", "127.0.0.1"); code != 0 {
		t.Errorf("ping: %d %s %s", code, out, errs)
	}
	// The container writes to its own layer only.
	if code, _, _ := e.exec(id, "sh", "-c", "echo mine > /tmp/f && touch /bin/new"); code != 0 {
		t.Errorf("write in container failed")
	}
	if _, err := os.Stat(filepath.Join(e.busy.Rootfs, "bin/new")); err == nil {
		t.Errorf("container wrote into the image")
	}

	// A second runtime on the same directories (a restarted daemon).
	rt2, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := rt2.List(ctx); err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("list: %v, %v", ids, err)
	}
	if st, err := rt2.State(ctx, id); err != nil || st.Status != StatusRunning || st.Pid != pid {
		t.Fatalf("state from new runtime: %+v, %v", st, err)
	}
	if code, err := rt2.Exec(ctx, id, []string{"cat", "/tmp/f"}, nil, &out, nil); err != nil || code != 0 {
		t.Errorf("exec from new runtime: %d, %v", code, err)
	}
	waited := make(chan int, 1)
	go func() {
		code, err := rt2.Wait(ctx, id)
		if err != nil {
			code = -100
		}
		waited <- code
	}()
	// sleep as pid 1 ignores SIGTERM: Stop escalates to SIGKILL.
	t0 := time.Now()
	if err := rt2.Stop(ctx, id, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 400*time.Millisecond || d > 15*time.Second {
		t.Errorf("stop took %s", d)
	}
	if code := <-waited; code != 137 {
		t.Errorf("wait from new runtime = %d, want 137", code)
	}
	if st, err := e.rt.State(ctx, id); err != nil || st.Status != StatusStopped || st.ExitCode != 137 {
		t.Errorf("state after stop: %+v, %v", st, err)
	}
	if err := e.rt.Stop(ctx, id, time.Second); err != nil {
		t.Errorf("stopping a stopped container: %v", err)
	}
	if _, err := e.rt.Exec(ctx, id, []string{"true"}, nil, nil, nil); !errors.Is(err, ErrNotRunning) {
		t.Errorf("exec in stopped container: %v", err)
	}

	// Restart keeps the rootfs, then Delete a running container.
	if _, err := e.rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := e.exec(id, "cat", "/tmp/f"); code != 0 || out != "mine\n" {
		t.Errorf("rootfs not kept across restart: %d %q", code, out)
	}
	var sh shimRecord
	if err := readJSON(filepath.Join(e.opts.ContainersDir, id, shimFile), &sh); err != nil || !sh.alive() {
		t.Fatalf("shim record %+v, %v", sh, err)
	}
	if err := e.rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Delete(ctx, id); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if sh.alive() {
		t.Errorf("shim %d still running", sh.Pid)
	}
	if out, err := exec.Command("runc", "--root", e.opts.RuncRoot, "list", "-q").Output(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("runc list after delete: %q, %v", out, err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), e.opts.ContainersDir) {
		t.Errorf("mount left under %s", e.opts.ContainersDir)
	}
	if _, err := os.Stat(filepath.Join(e.opts.ContainersDir, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("container dir left: %v", err)
	}
	if _, err := e.rt.State(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("state after delete: %v", err)
	}
}

func TestStartFailure(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t, 60*time.Second)
	id := e.create(Spec{Args: []string{"/no/such/binary"}, NetnsPath: e.netns()})
	_, err := e.rt.Start(ctx, id)
	if err == nil || !strings.Contains(err.Error(), "/no/such/binary") {
		t.Fatalf("start error %v does not name the missing binary", err)
	}
	if st, err := e.rt.State(ctx, id); err != nil || st.Status != StatusStopped || st.Error == "" {
		t.Errorf("state after failed start: %+v, %v", st, err)
	}
	// A bad namespace path fails at start with runc's message.
	id2 := e.create(Spec{Args: []string{"true"}, NetnsPath: filepath.Join(e.root, "no-such-netns")})
	if _, err := e.rt.Start(ctx, id2); err == nil {
		t.Fatal("start with a missing netns succeeded")
	}
}

func TestImagesAndErrors(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t, 60*time.Second)
	err := e.rt.Create(ctx, Spec{ID: newID(), Image: "foo"})
	if !errors.Is(err, image.ErrImageNotFound) || !strings.Contains(err.Error(), "No such image: foo:latest") {
		t.Errorf("unknown image: %v", err)
	}
	if err := e.rt.Create(ctx, Spec{ID: newID(), Image: "Not_Valid"}); !errors.Is(err, image.ErrInvalid) {
		t.Errorf("bad image name: %v", err)
	}
	if err := e.rt.Create(ctx, Spec{ID: "bad/id", Image: "busybox"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad id: %v", err)
	}

	// Import a tar holding a static busybox as bin/sh: no default command.
	bb, err := os.ReadFile(filepath.Join(e.busy.Rootfs, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb))})
	tw.Write(bb)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: "bin/sh", Linkname: "bin/busybox"})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "greeting", Mode: 0o644, Size: 9})
	tw.Write([]byte("imported\n"))
	tw.Close()
	img, err := e.images.Import(ctx, "mini:v1", &buf, image.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Create(ctx, Spec{ID: newID(), Image: "mini:v1"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("image without command and no args: %v", err)
	}
	id := e.create(Spec{Image: img.ID[:19], Args: []string{"sh", "-c", "busybox cat /greeting"}, NetnsPath: e.netns()})
	if _, err := e.rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if code, err := e.rt.Wait(ctx, id); err != nil || code != 0 {
		t.Fatalf("wait: %d, %v", code, err)
	}
	var out bytes.Buffer
	e.rt.Logs(ctx, id, &out, nil, false)
	if out.String() != "imported\n" {
		t.Errorf("output %q", out.String())
	}
}

// TestSurvivesDaemonKill starts a container from another process, kills that
// process with SIGKILL, and checks a new Runtime finds, uses and stops the
// container, and that its exit code is recorded by the surviving shim.
func TestSurvivesDaemonKill(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t, 60*time.Second)
	id := newID()
	t.Cleanup(func() { e.rt.Delete(context.Background(), id) })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command(self, daemonArg, e.opts.RuncRoot, e.opts.ContainersDir, e.images.Dir(), id, e.netns())
	stdout, err := daemon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	line := make([]byte, 512)
	n, _ := stdout.Read(line)
	if strings.TrimSpace(string(line[:n])) != "started" {
		t.Fatalf("fake daemon: %q", line[:n])
	}
	if err := daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	daemon.Wait()

	st, err := e.rt.State(ctx, id)
	if err != nil || st.Status != StatusRunning {
		t.Fatalf("state after daemon kill: %+v, %v", st, err)
	}
	if code, out, _ := e.exec(id, "echo", "alive"); code != 0 || out != "alive\n" {
		t.Fatalf("exec after daemon kill: %d %q", code, out)
	}
	waited := make(chan int, 1)
	go func() {
		code, err := e.rt.Wait(ctx, id)
		if err != nil {
			code = -100
		}
		waited <- code
	}()
	if err := e.rt.Stop(ctx, id, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if code := <-waited; code != 42 {
		t.Errorf("exit code after SIGTERM = %d, want 42 (from the trap)", code)
	}
	if st, err := e.rt.State(ctx, id); err != nil || st.ExitCode != 42 || st.Status != StatusStopped {
		t.Errorf("state: %+v, %v", st, err)
	}
}

// TestHostNetworkAndKill: with no netns path the container shares the
// host's network namespace; Kill delivers a signal.
func TestHostNetworkAndKill(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t, 60*time.Second)
	id := e.create(Spec{Args: []string{"sh", "-c", "trap 'exit 9' USR1; while true; do sleep 0.1; done"}})
	if _, err := e.rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	host, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := e.exec(id, "ls", "/sys/class/net")
	if code != 0 || len(strings.Fields(out)) != len(host) {
		t.Errorf("host links in container: %d %q %q, host has %d", code, out, errs, len(host))
	}
	if err := e.rt.Kill(ctx, id, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if code, err := e.rt.Wait(ctx, id); err != nil || code != 9 {
		t.Errorf("wait after SIGUSR1 = %d, %v", code, err)
	}
	if err := e.rt.Kill(ctx, id, syscall.SIGUSR1); !errors.Is(err, ErrNotRunning) {
		t.Errorf("kill stopped container: %v", err)
	}
}
