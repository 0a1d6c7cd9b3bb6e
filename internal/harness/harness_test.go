package harness

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/leakcheck"
	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/testreq"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeEnv) == "1" {
		os.Exit(fakeVxnet(os.Args[1:]))
	}
	Main(m)
}

// fakeOptions runs the test binary as the vxnet binary.
func fakeOptions(t *testing.T, o Options) Options {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o.Binary = self
	o.Env = append(o.Env, fakeEnv+"=1")
	return o
}

func pingOK(h *Host, dst netip.Addr) (string, bool) {
	out, code := h.Exec("ping", "-c1", "-W1", dst.String())
	return out, code == 0
}

func TestTopology(t *testing.T) {
	const mtu = 1400
	c := New(t, Options{Hosts: 2, UnderlayMTU: mtu})
	h0, h1 := c.Host(0), c.Host(1)
	if h0.Addr != netip.MustParseAddr("192.0.2.10") || h1.Addr != netip.MustParseAddr("192.0.2.11") {
		t.Fatalf("addresses %v %v, want 192.0.2.10 and .11", h0.Addr, h1.Addr)
	}
	for _, dst := range []netip.Addr{h1.Addr, c.GatewayAddr(), c.OutsideAddr()} {
		if out, ok := pingOK(h0, dst); !ok {
			t.Errorf("h0 ping %v failed: %s", dst, out)
		}
	}

	// The underlay MTU: a full-size unfragmentable packet passes, one byte
	// more does not.
	payload := mtu - 28
	if out, code := h0.Exec("ping", "-c1", "-W1", "-M", "do", "-s", strconv.Itoa(payload), h1.Addr.String()); code != 0 {
		t.Errorf("ping with %d byte payload failed: %s", payload, out)
	}
	if out, code := h0.Exec("ping", "-c1", "-W1", "-M", "do", "-s", strconv.Itoa(payload+1), h1.Addr.String()); code == 0 {
		t.Errorf("ping with %d byte payload passed on MTU %d: %s", payload+1, mtu, out)
	}

	// Cut partitions h1 from everyone, Heal repairs it.
	h1.Cut()
	if out, ok := pingOK(h0, h1.Addr); ok {
		t.Errorf("h0 reached h1 after Cut: %s", out)
	}
	if out, ok := pingOK(h1, c.GatewayAddr()); ok {
		t.Errorf("h1 reached the gateway after Cut: %s", out)
	}
	if out, ok := pingOK(h0, c.GatewayAddr()); !ok {
		t.Errorf("h0 lost the gateway when h1 was cut: %s", out)
	}
	h1.Heal()
	if out, ok := pingOK(h0, h1.Addr); !ok {
		t.Errorf("h0 cannot reach h1 after Heal: %s", out)
	}

	// The root namespace has none of this.
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		t.Errorf("%s exists in the root namespace", bridgeName)
	}
}

func TestEchoServerSeesHostAddress(t *testing.T) {
	c := New(t, Options{Hosts: 2})
	rec := c.StartEchoServer(8080)
	for _, h := range c.Hosts {
		err := netns.Do(h.Netns, func() error {
			conn, err := net.DialTimeout("tcp4", netip.AddrPortFrom(c.OutsideAddr(), 8080).String(), 5*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write([]byte("hello")); err != nil {
				return err
			}
			buf := make([]byte, 5)
			if _, err := conn.Read(buf); err != nil || string(buf) != "hello" {
				return fmt.Errorf("echo: %q, %v", buf, err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
	}
	got := rec.Sources()
	want := []netip.Addr{c.Host(0).Addr, c.Host(1).Addr}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sources %v, want %v", got, want)
	}
	if rec.Port() != 8080 {
		t.Errorf("port %d", rec.Port())
	}
	// The server is in the outside namespace, not in the test's.
	if conn, err := net.DialTimeout("tcp4", "127.0.0.1:8080", time.Second); err == nil {
		conn.Close()
		t.Errorf("echo server reachable from the root namespace")
	}
}

func nsInode(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("net:[%d]", st.Ino)
}

func TestDaemonLifecycle(t *testing.T) {
	c := New(t, fakeOptions(t, Options{
		Hosts:      2,
		DaemonArgs: func(i int, h *Host) []string { return []string{"--advertise-addr", h.Addr.String()} },
	}))
	h := c.Host(1)
	h.Start("--foo")
	if !h.Running() {
		t.Fatal("not running after Start")
	}
	if got, want := h.MustCLI(t, "netns"), nsInode(t, h.Netns); got != want {
		t.Errorf("daemon in %s, want the host namespace %s", got, want)
	}
	args := h.MustCLI(t, "args")
	for _, want := range []string{"-H unix://" + h.Socket, "--data-root " + h.DataRoot, "--exec-root " + h.ExecRoot,
		"--log-level debug --advertise-addr 192.0.2.11 --foo"} {
		if !strings.Contains(args, want) {
			t.Errorf("daemon args %q lack %q", args, want)
		}
	}
	if out, errOut, code := h.CLI("fail"); code != 3 || !strings.Contains(errOut, "boom") {
		t.Errorf("CLI fail = %q, %q, %d; want exit 3 and boom on stderr", out, errOut, code)
	}

	h.Kill()
	if h.Running() {
		t.Fatal("running after Kill")
	}
	if _, _, code := h.CLI("_ping"); code == 0 {
		t.Error("CLI works after Kill")
	}
	h.Restart()
	if args := h.MustCLI(t, "args"); !strings.HasSuffix(args, "--foo") {
		t.Errorf("Restart() args %q, want the last ones (--foo)", args)
	}
	h.Restart("--bar")
	if args := h.MustCLI(t, "args"); !strings.HasSuffix(args, "--advertise-addr 192.0.2.11 --bar") {
		t.Errorf("Restart(--bar) args %q", args)
	}
	h.Stop()
	if h.Running() {
		t.Fatal("running after Stop")
	}
	if log := h.LogTail(100); !strings.Contains(log, "fake: graceful shutdown") || strings.Count(log, "=== harness") != 3 {
		t.Errorf("daemon log lacks a graceful shutdown or three starts:\n%s", log)
	}
	if c.Host(0).Running() {
		t.Error("host 0 running but never started")
	}
}

// runcContainer starts a real runc container (busybox sleep) in the
// sandbox namespace at nsPath, with the runc root the harness cleans.
func runcContainer(t *testing.T, h *Host, id, nsPath string) {
	t.Helper()
	bundle := filepath.Join(h.DataRoot, "bundle-"+id)
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testreq.Skipf(t, "no busybox: %v", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "rootfs", "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("runc", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Process.Terminal = false
	spec.Process.Args = []string{"/bin/busybox", "sleep", "3600"}
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = nsPath
		}
	}
	if b, err = json.Marshal(&spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// The detached container keeps its stdio: a file, not a pipe that
	// would make Wait block until the container ends.
	logPath := filepath.Join(bundle, "run.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("runc", "--root", filepath.Join(h.ExecRoot, RuncRoot), "run", "-d", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		t.Fatalf("runc run: %v: %s", err, out)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && !strings.HasPrefix(s[i+1:], " Z")
}

// After a cluster whose daemon left a pinned namespace, a process in it,
// a shim and a runc container, teardown leaves nothing behind.
func TestTeardownLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		testreq.Skip(t, "needs root: creates network namespaces")
	}
	snap := leakcheck.Take(leakcheck.Options{})
	var (
		dir  string
		pids []int
		ctr  string
	)
	t.Run("cluster", func(t *testing.T) {
		c := New(t, fakeOptions(t, Options{Hosts: 2}))
		dir = c.Dir
		h := c.Host(0)
		h.Start()
		c.StartEchoServer(9000)
		for _, f := range strings.Fields(h.MustCLI(t, "sandbox")) {
			pid, _ := strconv.Atoi(f)
			pids = append(pids, pid)
		}
		if len(pids) != 2 {
			t.Fatalf("sandbox pids %v", pids)
		}
		ctr = filepath.Base(c.Dir) + "-c1"
		runcContainer(t, h, ctr, filepath.Join(h.ExecRoot, "netns", "sb1"))
		if out, code := h.Exec("true"); code != 0 {
			t.Fatal(out)
		}
		if leaks := snap.Leaks(); len(leaks) < 5 {
			t.Errorf("expected namespaces, mounts and processes while the cluster lives, got %q", leaks)
		}
	})
	if err := snap.Check(); err != nil {
		t.Error(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still alive", pid)
		}
	}
	if _, err := os.Stat(dir); dir == "" || !os.IsNotExist(err) {
		t.Errorf("cluster dir %q: %v, want removed", dir, err)
	}
	if ctr != "" {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/pids", ctr)); err == nil {
			t.Errorf("cgroup of %s left behind", ctr)
		}
	}
}
