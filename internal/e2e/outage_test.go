package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/testreq"
)

// extEtcd is a real etcd process in a host's namespace that a test can
// stop and start again on the same data directory: TLS only with client
// certificates (tls, made by newExtEtcd), or plain HTTP when tls is zero.
type extEtcd struct {
	t    *testing.T
	h    *harness.Host
	dir  string
	tls  storeTLS
	cmd  *exec.Cmd
	done chan struct{}
}

func (e *extEtcd) start() {
	e.t.Helper()
	logf, err := os.OpenFile(filepath.Join(e.dir, "..", "etcd-outage.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	addr, tlsArgs := "https://"+e.h.Addr.String()+":2379", e.tls.etcdArgs()
	if e.tls == (storeTLS{}) {
		addr, tlsArgs = "http://"+e.h.Addr.String()+":2379", nil
	}
	e.cmd = exec.Command("nsenter", append([]string{"--net=" + e.h.Netns, "--", "etcd", "--name", "outage", "--data-dir", e.dir,
		"--listen-client-urls", addr, "--advertise-client-urls", addr,
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "outage=http://127.0.0.1:2380"}, tlsArgs...)...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		e.t.Fatalf("start etcd: %v", err)
	}
	done := make(chan struct{})
	e.done = done
	go func() { e.cmd.Wait(); logf.Close(); close(done) }()
	if !eventually(20*time.Second, func() bool {
		_, code := e.h.Exec("bash", "-c", "exec 3<>/dev/tcp/"+e.h.Addr.String()+"/2379")
		return code == 0
	}) {
		e.t.Fatal("etcd does not listen")
	}
}

func (e *extEtcd) kill() {
	if e.cmd == nil {
		return
	}
	syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
	<-e.done
	e.cmd = nil
}

// With the external store down: global writes fail fast with the clear
// error, bridge networks and containers keep working, the overlay data
// plane is left as it is, and a daemon restarted meanwhile comes up for
// its local networks. When the store is back, cluster mode resumes.
func TestStoreOutage(t *testing.T) {
	if _, err := exec.LookPath("etcd"); err != nil {
		testreq.Skip(t, "needs etcd (Debian's etcd-server)")
	}
	var store string
	var et *extEtcd
	c := harness.New(t, harness.Options{Hosts: 2, DaemonArgs: func(i int, h *harness.Host) []string {
		return append([]string{"--cluster-store", store, "--advertise-addr", h.Addr.String(), "--node-ttl", "2s", "--resync-interval", "2s"},
			et.tls.daemonArgs()...)
	}})
	h0, h1 := c.Host(0), c.Host(1)
	store = "etcd://" + h0.Addr.String() + ":2379"
	et = newExtEtcd(t, h0, c.Dir)
	et.start()
	t.Cleanup(et.kill)
	h0.Start()
	h1.Start()
	cli(t, h0, "network", "create", "-d", "overlay", "ov")
	cli(t, h0, "run", "-d", "--name", "c1", "--net", "ov", "busybox", "sleep", "1d")
	cli(t, h1, "run", "-d", "--name", "c2", "--net", "ov", "busybox", "sleep", "1d")
	if !eventually(10*time.Second, func() bool { return ping(t, h1, "c2", "c1") }) {
		t.Fatal("c2 cannot reach c1 before the outage")
	}

	et.kill()
	start := time.Now()
	cliFails(t, h0, "cluster store unreachable", "network", "create", "-d", "overlay", "during")
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("global write took %v to fail", d)
	}
	cli(t, h0, "network", "create", "local1")
	cli(t, h0, "run", "-d", "--name", "l1", "--net", "local1", "busybox", "sleep", "1d")
	cli(t, h0, "run", "-d", "--name", "l2", "--net", "local1", "busybox", "sleep", "1d")
	if !ping(t, h0, "l1", "l2") {
		t.Error("bridge containers cannot reach each other during the outage")
	}
	time.Sleep(3 * time.Second) // longer than the node TTL and a resync period
	if !ping(t, h1, "c2", "c1") {
		t.Error("the overlay data plane changed during the store outage")
	}

	// A daemon restarted during the outage serves its local networks.
	h1.Kill()
	h1.Start()
	cli(t, h1, "run", "-d", "--name", "l3", "busybox", "sleep", "1d")
	if !ping(t, h1, "l3", h1.Addr.String()) {
		t.Error("restarted daemon cannot run a bridge container during the outage")
	}
	if !ping(t, h1, "c2", "c1") {
		t.Error("overlay flow lost after restarting a daemon during the outage")
	}
	_, errOut, code := h1.CLI("network", "create", "-d", "overlay", "during2")
	if code == 0 || !strings.Contains(errOut, "cluster store unreachable") {
		t.Errorf("global write on a daemon started during the outage: exit %d %q", code, errOut)
	}

	// The store comes back: cluster mode resumes on both.
	et.start()
	if !eventually(30*time.Second, func() bool {
		_, _, code := h1.CLI("network", "create", "-d", "overlay", "after")
		return code == 0
	}) {
		t.Fatal("global writes do not recover after the store came back")
	}
	cli(t, h1, "run", "-d", "--name", "c3", "--net", "ov", "busybox", "sleep", "1d")
	if !eventually(10*time.Second, func() bool { return ping(t, h0, "c1", "c3") }) {
		t.Error("a container made after the recovery is not reachable across hosts")
	}
}

// newExtEtcd describes (does not start) an external etcd in h's namespace
// with its TLS files under dir.
func newExtEtcd(t *testing.T, h *harness.Host, dir string) *extEtcd {
	return &extEtcd{t: t, h: h, dir: filepath.Join(dir, "etcd-data"), tls: makeStoreTLS(t, filepath.Join(dir, "etcd-tls"), h.Addr)}
}
