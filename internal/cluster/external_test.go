package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/pki/pkitest"
)

const etcdBinary = "/usr/bin/etcd"

// etcdProcess is a real etcd server started for a test. Its client
// listener is TLS only and requires a client certificate signed by the
// test's CA (certs), as a store reached over a network must be.
type etcdProcess struct {
	t          *testing.T
	dir        string
	clientPort int
	peerPort   int
	certs      testCerts
	cmd        *exec.Cmd
	exited     chan struct{}
	// embedded, when set, runs this module's etcd server (embed) in a
	// child process instead of Debian's etcd: "embedded" configured as
	// the daemon's member (gRPC alone on the client URL, HTTP on a
	// loopback URL of its own), "embedded-shared" with gRPC and HTTP on
	// one client URL.
	embedded string
}

// testCerts are PEM files made by the test: a CA, the server's certificate
// (IP SAN 127.0.0.1) and a client certificate, each with its key.
type testCerts = pkitest.Files

func makeTestCerts(t *testing.T, dir string) testCerts {
	t.Helper()
	return pkitest.Write(t, dir, "test-external-etcd", "server", "client", loopback)
}

func startEtcd(t *testing.T) *etcdProcess { return startEtcdAs(t, "") }

// startEtcdAs starts Debian's etcd (embedded "") or this module's
// (etcdProcess.embedded).
func startEtcdAs(t *testing.T, embedded string) *etcdProcess {
	t.Helper()
	if _, err := os.Stat(etcdBinary); err != nil && embedded == "" {
		t.Fatalf("external etcd: %v (install etcd-server)", err)
	}
	p := freePorts(t, 2)
	e := &etcdProcess{t: t, dir: filepath.Join(t.TempDir(), "etcd"), clientPort: p[0], peerPort: p[1],
		certs: makeTestCerts(t, t.TempDir()), embedded: embedded}
	e.start()
	t.Cleanup(func() {
		e.stop()
		checkPortsFree(t, p...)
	})
	return e
}

func (e *etcdProcess) start() {
	e.t.Helper()
	if e.embedded != "" {
		e.startEmbedded()
		return
	}
	client := fmt.Sprintf("https://127.0.0.1:%d", e.clientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", e.peerPort)
	e.cmd = exec.Command(etcdBinary,
		"--name", "ext",
		"--data-dir", e.dir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "ext="+peer,
		"--cert-file", e.certs.ServerCert, "--key-file", e.certs.ServerKey,
		"--trusted-ca-file", e.certs.CA, "--client-cert-auth",
		"--logger", "zap", "--log-level", "error",
	)
	if os.Getenv("VXNET_TEST_ETCD_PPROF") != "" { // /debug/pprof on the client URL
		e.cmd.Args = append(e.cmd.Args, "--enable-pprof")
	}
	if os.Getenv("VXNET_TEST_LOG") != "" {
		e.cmd.Stderr = os.Stderr
	}
	if err := e.cmd.Start(); err != nil {
		e.t.Fatalf("start etcd: %v", err)
	}
	e.exited = make(chan struct{})
	go func(cmd *exec.Cmd, ch chan struct{}) {
		cmd.Wait()
		close(ch)
	}(e.cmd, e.exited)
}

// stop kills the server (SIGKILL, like a crash) and waits for it.
func (e *etcdProcess) stop() {
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Kill()
	<-e.exited
	e.cmd = nil
}

func (e *etcdProcess) endpoint() string { return fmt.Sprintf("127.0.0.1:%d", e.clientPort) }

func externalOpts(t *testing.T, e *etcdProcess, id string) Options {
	o := baseOpts(t, id)
	eps, err := ParseStoreURL("etcd://" + e.endpoint())
	if err != nil {
		t.Fatal(err)
	}
	o.Endpoints = eps
	o.CAFile, o.CertFile, o.KeyFile = e.certs.CA, e.certs.ClientCert, e.certs.ClientKey
	return o
}

// openExternal opens a Cluster on e, waiting for the server to come up.
func openExternal(t *testing.T, o Options) *Cluster {
	t.Helper()
	var c *Cluster
	eventually(t, 15*time.Second, "connect to external etcd", func() error {
		var err error
		c, err = Open(context.Background(), o)
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestExternalEtcd(t *testing.T) {
	out, err := exec.Command(etcdBinary, "--version").Output()
	if err != nil {
		t.Fatalf("etcd --version: %v", err)
	}
	t.Logf("%s", firstLine(out))
	top := t
	e := startEtcd(t)
	a := openExternal(t, externalOpts(t, e, "ext-a"))
	b := openExternal(t, externalOpts(t, e, "ext-b"))
	c := openExternal(t, externalOpts(t, e, "ext-c"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)

	t.Run("nodes", func(t *testing.T) {
		ns, err := a.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ns) != 3 {
			t.Fatalf("nodes %+v", ns)
		}
		for _, n := range ns {
			if n.State != StateUp || n.Role != RoleClient {
				t.Errorf("node %+v, want an up client", n)
			}
		}
	})
	t.Run("tls-required", func(t *testing.T) {
		// The store answers only TLS with a client certificate of its CA:
		// without one, and in plain text, nothing is read.
		for name, mod := range map[string]func(*Options){
			"no client certificate": func(o *Options) { o.CertFile, o.KeyFile = "", "" },
			"plain text":            func(o *Options) { o.CAFile, o.CertFile, o.KeyFile = "", "", "" },
			"another CA": func(o *Options) {
				other := makeTestCerts(t, t.TempDir())
				o.CAFile, o.CertFile, o.KeyFile = e.certs.CA, other.ClientCert, other.ClientKey
			},
		} {
			o := externalOpts(t, e, "ext-x")
			o.RequestTimeout = time.Second
			mod(&o)
			if c, err := Open(ctx, o); err == nil {
				c.Close()
				t.Errorf("%s: opened the store", name)
			}
		}
	})
	t.Run("other-address-family", func(t *testing.T) {
		// A host advertising IPv6 on a store of IPv4 hosts: refused
		// before it registers (a VXLAN device has one address family).
		o := externalOpts(t, e, "ext-6")
		o.AdvertiseAddr = netip.MustParseAddr("2001:db8::6")
		c, err := Open(ctx, o)
		if err == nil {
			c.Close()
			t.Fatal("a host advertising IPv6 joined a store of IPv4 hosts")
		}
		if !errors.Is(err, model.ErrInvalid) || !strings.Contains(err.Error(), "advertise address 2001:db8::6 is IPv6, but this cluster's hosts advertise IPv4 addresses") {
			t.Fatalf("open: %v, want the address family refusal", err)
		}
		if ns, err := a.Nodes(ctx); err != nil || len(ns) != 3 {
			t.Fatalf("nodes after the refusal: %+v (%v), want the 3 IPv4 hosts", ns, err)
		}
	})
	t.Run("networks", func(t *testing.T) { scenarioNetworks(t, a, b) })
	t.Run("concurrent-name", func(t *testing.T) { scenarioConcurrentName(t, a, b) })
	t.Run("vnis", func(t *testing.T) { scenarioVNIs(t, a, b, c) })
	t.Run("ipam", func(t *testing.T) { scenarioIPAM(t, a, b, c) })
	t.Run("adverts", func(t *testing.T) { scenarioAdverts(t, a, b) })
	t.Run("compaction", func(t *testing.T) { scenarioWatchCompaction(t, b) })
	t.Run("lease-loss", func(t *testing.T) { scenarioLeaseLoss(t, c, a) })
	t.Run("crash", func(t *testing.T) {
		c = scenarioCrash(t, a, c, func() *Cluster { return openExternal(top, externalOpts(top, e, "ext-c")) })
	})
	t.Run("outage", func(t *testing.T) {
		var (
			mu   sync.Mutex
			last []model.Network
		)
		calls := make(chan struct{}, 100)
		wctx, wcancel := context.WithCancel(ctx)
		wdone := make(chan error, 1)
		go func() {
			wdone <- b.WatchNetworks(wctx, 0, func(ns []model.Network, _ int64) {
				mu.Lock()
				last = ns
				mu.Unlock()
				calls <- struct{}{}
			})
		}()
		defer func() { wcancel(); <-wdone }()
		<-calls

		oep := owned(t, a, oid("out-net"), "oep", "10.6.0.2")
		e.stop()
		start := time.Now()
		_, err := a.CreateNetwork(ctx, testNet("out1"))
		wantUnavailable(t, err)
		if d := time.Since(start); d > a.opts.RequestTimeout+time.Second {
			t.Errorf("write to a dead store failed after %s", d)
		}
		_, err = a.FreshNodes(ctx)
		wantUnavailable(t, err)
		// Nodes answers from its last view, marked stale.
		if ns, err := a.Nodes(ctx); err != nil || len(ns) == 0 || !ns[0].Stale {
			t.Errorf("nodes while the store is down: %+v %v, want the last view marked stale", ns, err)
		}
		err = a.Advertise(ctx, oep)
		wantUnavailable(t, err)
		t.Logf("store down: %v", err)
		// Longer than the TTL: leases are kept by the server across its
		// restart, but the advert made during the outage must get through.
		time.Sleep(a.opts.NodeTTL + time.Second)

		e.start()
		eventually(t, 15*time.Second, "writes work again", func() error {
			_, err := a.CreateNetwork(ctx, testNet("out1"))
			if errors.Is(err, model.ErrConflict) {
				// An earlier try timed out on the client after etcd
				// had committed it: the write did work.
				return nil
			}
			return err
		})
		eventually(t, 10*time.Second, "watch resumed after the outage", func() error {
			for len(calls) > 0 {
				<-calls
			}
			mu.Lock()
			defer mu.Unlock()
			for _, n := range last {
				if n.Name == "out1" {
					return nil
				}
			}
			return fmt.Errorf("watch saw %d networks, none out1", len(last))
		})
		for _, cl := range []*Cluster{a, b, c} {
			eventually(t, 10*time.Second, "node up after the outage", wantState(ctx, a, cl.NodeID(), StateUp))
		}
		eventually(t, 10*time.Second, "advert made during the outage published", func() error {
			as, _, err := b.Adverts(ctx, oid("out-net"))
			if err != nil {
				return err
			}
			if len(as) != 1 || as[0].EndpointID != oid("oep") {
				return fmt.Errorf("adverts %+v", as)
			}
			return nil
		})
		if err := a.Withdraw(ctx, oid("out-net"), oid("oep")); err != nil {
			t.Fatal(err)
		}
		if err := a.DeleteNetwork(ctx, oid("id-out1")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("leave-and-remove", func(t *testing.T) {
		// A record refresh racing the leave (the membership goroutine
		// writes it when the role changes: a changed record here) must
		// not bring it back.
		c.afterLeaveDelete = func() {
			c.mu.Lock()
			c.written = nodeRecord{}
			c.mu.Unlock()
			c.refreshRecord(ctx)
		}
		if err := c.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		b.Close()
		eventually(t, 5*time.Second, "closed node down", wantState(ctx, a, nid("ext-b"), StateDown))
		if err := a.RemoveNode(ctx, nid("ext-b"), false); err != nil {
			t.Fatal(err)
		}
		ns, err := a.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ns) != 1 || ns[0].ID != nid("ext-a") {
			t.Fatalf("nodes %+v, want ext-a only", ns)
		}
		if err := a.RemoveNode(ctx, nid("ext-c"), false); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("remove a node that left: %v, want not found", err)
		}
	})
}

// TestOpenUnreachable: Open fails fast, with an unavailable error, when the
// store does not answer.
func TestOpenUnreachable(t *testing.T) {
	p := freePorts(t, 1)
	o := baseOpts(t, "lonely")
	o.Endpoints = []string{fmt.Sprintf("127.0.0.1:%d", p[0])}
	o.RequestTimeout = time.Second
	start := time.Now()
	c, err := Open(context.Background(), o)
	if err == nil {
		c.Close()
		t.Fatal("open succeeded without a store")
	}
	wantUnavailable(t, err)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("open failed after %s, want about 1s", d)
	}
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}
