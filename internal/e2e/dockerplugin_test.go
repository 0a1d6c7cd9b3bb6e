package e2e

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/dns"
	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/testreq"
)

// dockerd is one Docker Engine (Debian's docker.io) on a test host: in the
// host's network namespace and its own mount namespace, where a tmpfs on
// /run holds the host's vxnet plugin directory bind-mounted on
// /run/docker/plugins; data root, exec root, pidfile and API socket live
// in the host's directory.
type dockerd struct {
	h    *harness.Host
	dir  string
	sock string
	cmd  *exec.Cmd
	done chan struct{}
}

const dockerCLI = "/usr/bin/docker" // docker.io's CLI, matching its dockerd

func needDocker(t *testing.T) {
	t.Helper()
	for _, p := range []string{"/usr/sbin/dockerd", dockerCLI, "/usr/bin/containerd"} {
		if _, err := os.Stat(p); err != nil {
			testreq.Skipf(t, "%s missing: scripts/setup.sh installs Debian's docker.io", p)
		}
	}
}

// dockerCluster is a three-host vxnet cluster (three etcd voters, so one
// host's death keeps quorum) whose daemons serve the Docker plugin in
// <host dir>/docker-plugins.
func dockerCluster(t *testing.T) *harness.Cluster {
	t.Helper()
	return ovClusterWith(t, 3, func(h *harness.Host) []string {
		return []string{"--docker-plugin-dir", filepath.Join(h.Dir, "docker-plugins")}
	})
}

func startDockerd(t *testing.T, h *harness.Host) *dockerd {
	t.Helper()
	d := &dockerd{h: h, dir: filepath.Join(h.Dir, "docker")}
	d.sock = filepath.Join(d.dir, "docker.sock")
	os.MkdirAll(d.dir, 0o755)
	// dockerd bind-mounts each container's namespace on <exec root>/netns/ID
	// (the Join's SandboxKey), where the vxnet daemon, in the test's mount
	// namespace, must see it to serve DNS there: that directory is a
	// shared mount in both namespaces; every other mount is private to
	// dockerd's (mounts that vanish meanwhile, other tests' namespaces, are
	// skipped).
	netnsDir := filepath.Join(d.dir, "exec", "netns")
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(netnsDir, netnsDir, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s: %v", netnsDir, err)
	}
	t.Cleanup(func() { syscall.Unmount(netnsDir, syscall.MNT_DETACH) })
	if err := syscall.Mount("", netnsDir, "", syscall.MS_SHARED, ""); err != nil {
		t.Fatalf("make %s shared: %v", netnsDir, err)
	}
	script := fmt.Sprintf(`set -e
findmnt -rno TARGET | while read -r m; do [ "$m" = %[6]s ] || mount --make-private "$m" 2>/dev/null || true; done
mount -t tmpfs tmpfs /run
mkdir -p /run/docker/plugins
mount --bind %[1]s /run/docker/plugins
exec dockerd --data-root %[2]s --exec-root %[3]s --pidfile %[4]s -H unix://%[5]s \
  --iptables=false --ip-masq=false --bridge=none --authorization-plugin=vxnet --dns %[7]s --log-level=warn`,
		filepath.Join(h.Dir, "docker-plugins"), filepath.Join(d.dir, "data"), filepath.Join(d.dir, "exec"),
		filepath.Join(d.dir, "docker.pid"), d.sock, netnsDir, dns.DockerAddr)
	logf, err := os.Create(filepath.Join(d.dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command("nsenter", "--net="+h.Netns, "--", "unshare", "-m", "--propagation", "unchanged", "sh", "-c", script)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + d.dir}
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start dockerd on %s: %v", h.Name, err)
	}
	logf.Close()
	d.done = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(d.stop)
	if !eventually(60*time.Second, func() bool {
		_, _, code := d.docker("version")
		return code == 0
	}) {
		log, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
		t.Fatalf("dockerd on %s not answering after 60 s:\n%s", h.Name, log)
	}
	return d
}

// stop removes every container, then stops dockerd (SIGTERM, SIGKILL
// after 20 s); its mount namespace and mounts go with it.
func (d *dockerd) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	if out, _, code := d.docker("ps", "-aq"); code == 0 && strings.TrimSpace(out) != "" {
		d.docker(append([]string{"rm", "-f"}, strings.Fields(out)...)...)
	}
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

func (d *dockerd) docker(args ...string) (string, string, int) {
	cmd := exec.Command(dockerCLI, append([]string{"-H", "unix://" + d.sock}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errb.String(), code
}

func (d *dockerd) must(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := d.docker(args...)
	if code != 0 {
		t.Fatalf("docker %s on %s: exit %d: %s", strings.Join(args, " "), d.h.Name, code, errOut)
	}
	return strings.TrimSpace(out)
}

// fails runs a docker command that must fail with want in its stderr.
func (d *dockerd) fails(t *testing.T, want string, args ...string) {
	t.Helper()
	out, errOut, code := d.docker(args...)
	if code == 0 {
		t.Fatalf("docker %s on %s succeeded (%s), want failure %q", strings.Join(args, " "), d.h.Name, out, want)
	}
	if !strings.Contains(errOut, want) {
		t.Errorf("docker %s on %s: stderr %q, want %q", strings.Join(args, " "), d.h.Name, errOut, want)
	}
}

// importBusybox makes a busybox image in dockerd from the host's
// busybox-static binary (docker import of a rootfs tar the test writes).
func (d *dockerd) importBusybox(t *testing.T) {
	t.Helper()
	tarPath := filepath.Join(d.dir, "busybox.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("read /bin/busybox: %v", err)
	}
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb))})
	tw.Write(bb)
	for _, l := range []string{"sh", "ping", "sleep", "cat", "ip", "nslookup", "hostname"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + l, Typeflag: tar.TypeSymlink, Linkname: "busybox"})
	}
	for _, dir := range []string{"etc/", "proc/", "sys/", "dev/", "tmp/"} {
		tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	tw.Close()
	f.Close()
	d.must(t, "import", "-c", `CMD ["sh"]`, tarPath, "busybox:latest")
}

func (d *dockerd) ip(t *testing.T, ctr, network string) netip.Addr {
	t.Helper()
	out := d.must(t, "inspect", "-f", "{{json .NetworkSettings.Networks}}", ctr)
	var nets map[string]struct{ IPAddress string }
	if err := json.Unmarshal([]byte(out), &nets); err != nil {
		t.Fatalf("inspect %s: %v: %s", ctr, err, out)
	}
	a, err := netip.ParseAddr(nets[network].IPAddress)
	if err != nil {
		t.Fatalf("%s has no address on %s: %s", ctr, network, out)
	}
	return a
}

// TestDockerPlugin: the walk-through with docker commands only, on two
// Docker Engines (Debian's docker.io) with the vxnet plugin, on hosts 1
// and 2 of a three-host vxnet cluster: docker network create -d vxnet
// --ipam-driver vxnet prod on each host maps to one cluster network; vm3 on host A and vm33 on host B ping
// each other by address and by name (an unknown name fails); host A's death purges its entries on B within TTL + 2 s;
// docker network rm on both hosts leaves nothing behind.
func TestDockerPlugin(t *testing.T) {
	needDocker(t)
	c := dockerCluster(t)
	a, b := c.Host(1), c.Host(2) // host 0 only keeps etcd's quorum when A dies
	da, db := startDockerd(t, a), startDockerd(t, b)
	da.importBusybox(t)
	db.importBusybox(t)

	da.must(t, "network", "create", "-d", "vxnet", "--ipam-driver", "vxnet", "--subnet", "10.90.0.0/24", "prod")
	db.must(t, "network", "create", "-d", "vxnet", "--ipam-driver", "vxnet", "prod")
	if got := db.must(t, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "prod"); got != "10.90.0.0/24" {
		t.Fatalf("prod on %s has subnet %q, want host A's 10.90.0.0/24", b.Name, got)
	}
	va, vb := ovInspect(t, a, "prod"), ovInspect(t, b, "prod")
	if va.ID != vb.ID || va.VXNet.VNI == 0 || va.VXNet.VNI != vb.VXNet.VNI {
		t.Fatalf("prod is not one cluster network: %s VNI %d on %s, %s VNI %d on %s", va.ID, va.VXNet.VNI, a.Name, vb.ID, vb.VXNet.VNI, b.Name)
	}
	// Refusals: a conflicting subnet, a missing --ipam-driver.
	da.must(t, "network", "create", "-d", "vxnet", "--ipam-driver", "vxnet", "--subnet", "10.92.0.0/24", "stage")
	db.fails(t, "conflicts", "network", "create", "-d", "vxnet", "--ipam-driver", "vxnet", "--subnet", "10.93.0.0/24", "stage")
	db.fails(t, "--ipam-driver vxnet", "network", "create", "-d", "vxnet", "other")
	if out := db.must(t, "network", "ls", "--format", "{{.Name}}"); strings.Contains(out, "stage") || strings.Contains(out, "other") {
		t.Errorf("refused creates left Docker networks on %s: %s", b.Name, out)
	}
	da.must(t, "network", "rm", "stage")

	da.must(t, "run", "-d", "--name", "vm3", "--network", "prod", "busybox", "sleep", "1d")
	db.must(t, "run", "-d", "--name", "vm33", "--network", "prod", "busybox", "sleep", "1d")
	ip3, ip33 := da.ip(t, "vm3", "prod"), db.ip(t, "vm33", "prod")
	ping := func(d *dockerd, ctr string, dst netip.Addr) bool {
		_, _, code := d.docker("exec", ctr, "ping", "-c1", "-W1", dst.String())
		return code == 0
	}
	if !eventually(15*time.Second, func() bool { return ping(da, "vm3", ip33) }) {
		t.Fatalf("vm3 (%s, host A) cannot ping vm33 (%s, host B)", ip3, ip33)
	}
	if !ping(db, "vm33", ip3) {
		t.Fatalf("vm33 cannot ping vm3")
	}
	// Names resolve across hosts: Docker's resolver forwards the names it
	// does not know to vxnet's server in the container (dockerd --dns
	// 169.254.53.53); a name nobody has fails.
	if !eventually(15*time.Second, func() bool { _, _, code := da.docker("exec", "vm3", "ping", "-c1", "-W1", "vm33"); return code == 0 }) {
		_, errOut, _ := da.docker("exec", "vm3", "ping", "-c1", "-W1", "vm33")
		t.Fatalf("vm3 (host A) cannot ping vm33 (host B) by name: %s", errOut)
	}
	if _, errOut, code := db.docker("exec", "vm33", "ping", "-c1", "-W1", "vm3"); code != 0 {
		t.Fatalf("vm33 (host B) cannot ping vm3 (host A) by name: %s", errOut)
	}
	if _, errOut, code := db.docker("exec", "vm33", "ping", "-c1", "-W1", "nosuch"); code == 0 || !strings.Contains(errOut, "bad address") {
		t.Fatalf("vm33 pinging an unknown name: exit %d, %q; want a lookup failure", code, errOut)
	}
	// vxnet sees Docker's containers as peers, named.
	var peer *ovPeer
	for _, p := range ovInspect(t, b, "prod").VXNet.Peers {
		if p.IP == ip3.String() {
			peer = &p
		}
	}
	if peer == nil || peer.Status != "programmed" {
		t.Fatalf("inspect -v prod on %s: vm3's endpoint %s not programmed: %+v", b.Name, ip3, ovInspect(t, b, "prod").VXNet.Peers)
	}
	if hosts := endpointAddrs(t, a, "prod"); hosts["vm3"] != ip3.String() {
		t.Errorf("vxnet network inspect prod on %s: want vm3 at %s, got %v", a.Name, ip3, hosts)
	}

	// Host A dies: B forgets its entries within TTL + 2 s.
	nsB := ovInspect(t, b, "prod").VXNet.Namespace
	a.Kill()
	a.Cut()
	killed := time.Now()
	if !eventually(4*time.Second, func() bool {
		fdb, neigh := ovKernel(t, b, nsB)
		return !strings.Contains(fdb, a.Addr.String()) && !strings.Contains(neigh, ip3.String()+" ")
	}) {
		fdb, neigh := ovKernel(t, b, nsB)
		t.Fatalf("4 s (TTL + 2 s) after host A died, B still holds its entries:\n%s%s", fdb, neigh)
	}
	t.Logf("host A's entries gone from B %v after the kill", time.Since(killed).Round(time.Millisecond))
	a.Heal()
	a.Start()
	if !eventually(15*time.Second, func() bool { return ping(db, "vm33", ip3) }) {
		t.Fatalf("vm33 cannot ping vm3 after host A is back")
	}
	// A's restarted daemon serves DNS in vm3 again (the attachment kept
	// its sandbox key).
	if !eventually(15*time.Second, func() bool { _, _, code := da.docker("exec", "vm3", "ping", "-c1", "-W1", "vm33"); return code == 0 }) {
		t.Fatalf("vm3 cannot ping vm33 by name after host A's daemon restarted")
	}

	// docker rm and docker network rm on both hosts leave nothing.
	da.must(t, "rm", "-f", "vm3")
	db.must(t, "rm", "-f", "vm33")
	da.must(t, "network", "rm", "prod")
	db.must(t, "network", "rm", "prod")
	for _, h := range []*harness.Host{a, b} {
		if out := cli(t, h, "network", "ls"); strings.Contains(out, " prod ") {
			t.Errorf("%s: vxnet network prod left: %s", h.Name, out)
		}
		if out := h.MustExec(t, "ip", "-o", "link", "show"); strings.Contains(out, "vxd") {
			t.Errorf("%s: Docker veths left: %s", h.Name, out)
		}
		if got := externals(t, h); len(got) != 0 {
			t.Errorf("%s: attachments left: %+v", h.Name, got)
		}
	}
}
