package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/pki"
)

// secEtcd is an etcd client dialing from h's namespace (the underlay) to
// the store on host 0, presenting cert (nil: none), as etcdctl with
// --cert/--key would.
func secEtcd(t *testing.T, h *harness.Host, store string, ca *pki.CA, cert *tls.Certificate) *clientv3.Client {
	t.Helper()
	tc := &tls.Config{RootCAs: ca.Pool()}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var conn net.Conn
		err := netns.Do(h.Netns, func() error {
			var d net.Dialer
			var err error
			conn, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		return conn, err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + store}, TLS: tc, DialTimeout: 3 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// memberCert loads the certificate and key a host's daemon holds.
func memberCert(t *testing.T, h *harness.Host) *tls.Certificate {
	t.Helper()
	d := pki.Dir(filepath.Join(h.DataRoot, "cluster"))
	c, err := tls.LoadX509KeyPair(d.NodeCertPath(), d.NodeKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func nodeID(t *testing.T, h *harness.Host) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.DataRoot, "node-id"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: allowed, want denied", what)
	} else if !strings.Contains(err.Error(), "permission denied") && !strings.Contains(err.Error(), "user name not found") {
		t.Errorf("%s: %v, want a permission error", what, err)
	}
}

// TestClusterSecurity: refused joins (no token, wrong, rotated, another
// CA, an advertise address of the other family) exit non-zero with one
// line and add nothing; with the token the
// overlay walk-through works over mutual TLS; the underlay without a
// certificate gets no etcd answer; a member's certificate cannot write
// another member's keys, delete the prefix or add a member; certificates
// renew themselves; `node rm --force` revokes the member (its certificate
// reads and writes nothing) and its entries leave the peers within
// TTL + 2 s.
func TestClusterSecurity(t *testing.T) {
	const ttl = 2 * time.Second
	c := harness.New(t, harness.Options{Hosts: 3, DaemonArgs: func(i int, h *harness.Host) []string {
		args := []string{"--advertise-addr", h.Addr.String(), "--node-ttl", ttl.String(), "--resync-interval", "2s"}
		if i == 0 {
			// One voter: hosts 1 and 2 are client members, which renew
			// through the join service. Certificates live 20 s.
			args = append(args, "--cluster-init", "--cluster-voters", "1", "--cert-expiry", "20s")
		}
		return args
	}})
	h0, h1, h2 := c.Host(0), c.Host(1), c.Host(2)
	h0.Start()
	store := h0.Addr.String() + ":2379"
	ca, err := pki.Dir(filepath.Join(h0.DataRoot, "cluster")).LoadCA()
	if err != nil {
		t.Fatal(err)
	}
	rootCert, err := ca.Leaf(pki.RootUser, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	admin := secEtcd(t, h0, store, ca, &rootCert)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// nothing added: one node, one etcd member, users root and host 0.
	nothingAdded := func(t *testing.T) {
		t.Helper()
		if ids := strings.Fields(cli(t, h0, "node", "ls", "-q")); len(ids) != 1 {
			t.Errorf("node ls lists %v, want host 0 only", ids)
		}
		ml, err := admin.MemberList(ctx)
		if err != nil || len(ml.Members) != 1 {
			t.Errorf("etcd members %v (%v), want 1", ml, err)
		}
		ul, err := admin.UserList(ctx)
		if err != nil || len(ul.Users) != 2 {
			t.Errorf("etcd users %v (%v), want root and host 0", ul, err)
		}
	}
	t.Run("refused-joins", func(t *testing.T) {
		good := cli(t, h0, "node", "token", "-q")
		tok, err := pki.ParseToken(good)
		if err != nil {
			t.Fatal(err)
		}
		secret, _ := pki.NewSecret()
		other, _ := pki.NewCA("other")
		rotated := cli(t, h0, "node", "token", "--rotate", "-q")
		if rotated == good {
			t.Fatal("rotation printed the same token")
		}
		file := func(tok string) string {
			p := filepath.Join(c.Dir, fmt.Sprintf("token-%d", time.Now().UnixNano()))
			if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		join := []string{"--cluster-join", h0.Addr.String()}
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"no-token", join, "a join token is required"},
			{"wrong-token", append(join, "--join-token-file", file(pki.Token{CADigest: tok.CADigest, Secret: secret}.String())), "join token refused: it is not the cluster's current token (wrong or rotated)"},
			{"rotated-token", append(join, "--join-token", good), "join token refused: it is not the cluster's current token (wrong or rotated)"},
			{"other-ca", append(join, "--join-token-file", file(pki.Token{CADigest: other.Digest(), Secret: tok.Secret}.String())), "does not match the join token's"},
			// An IPv6 underlay address in a cluster of IPv4 ones (the
			// token is good): TestOverlayIPv6Underlay has the reverse.
			{"other-address-family", append(join, "--join-token", rotated, "--advertise-addr", "2001:db8:fe::3"),
				"advertise address 2001:db8:fe::3 is IPv6, but this cluster's hosts advertise IPv4 addresses"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, code := h2.RunDaemonToExit(60*time.Second, tc.args...)
				lines := strings.Split(strings.TrimSpace(out), "\n")
				last := lines[len(lines)-1]
				if code <= 0 || !strings.Contains(last, tc.want) {
					t.Fatalf("exit %d, last line %q, want non-zero and %q; output:\n%s", code, last, tc.want, out)
				}
				nothingAdded(t)
			})
		}
	})
	if t.Failed() {
		return
	}

	h1.Start(h1.JoinArgs(0)...)
	h2.Start(h2.JoinArgs(0)...)
	id2 := nodeID(t, h2)

	t.Run("walkthrough", func(t *testing.T) {
		cli(t, h0, "network", "create", "-d", "overlay", "sec")
		ovRun(t, h0, "s0", "sec")
		ovRun(t, h2, "s2", "sec")
		for _, x := range []struct {
			h        *harness.Host
			from, to string
		}{{h2, "s2", "s0"}, {h0, "s0", "s2"}} {
			if !eventually(5*time.Second, func() bool { return ping(t, x.h, x.from, x.to) }) {
				t.Errorf("%s (%s) cannot ping %s", x.from, x.h.Name, x.to)
			}
		}
	})

	t.Run("underlay-without-certificate", func(t *testing.T) {
		for _, port := range []string{"2379", "2380"} {
			for _, url := range []string{"http://" + h0.Addr.String() + ":" + port + "/version",
				"https://" + h0.Addr.String() + ":" + port + "/version",
				"https://" + h0.Addr.String() + ":" + port + "/v3/kv/range"} {
				out, code := c.Outside().Exec("curl", "-sk", "-m", "3", "-X", "POST", "-d", `{"key":"Lw=="}`, url)
				if strings.Contains(out, "etcd") || strings.Contains(out, "kvs") || strings.Contains(out, "header") {
					t.Errorf("%s answered (exit %d): %q", url, code, out)
				}
			}
		}
		none := secEtcd(t, c.Host(1), store, ca, nil)
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if r, err := none.Get(rctx, "/", clientv3.WithPrefix()); err == nil {
			t.Errorf("read %d keys without a client certificate", r.Count)
		}
	})

	t.Run("member-certificate", func(t *testing.T) {
		m := secEtcd(t, h1, store, ca, memberCert(t, h1))
		id0 := nodeID(t, h0)
		_, err := m.Put(ctx, "/vxnet/v1/nodes/"+id0, "{}")
		wantDenied(t, "write another member's record", err)
		_, err = m.Put(ctx, "/vxnet/v1/adverts/"+id2+"/x/y", "{}")
		wantDenied(t, "write another member's advertisement", err)
		_, err = m.Delete(ctx, "/vxnet/v1/", clientv3.WithPrefix())
		wantDenied(t, "delete the prefix", err)
		_, err = m.MemberAddAsLearner(ctx, []string{"https://192.0.2.12:2390"})
		wantDenied(t, "add an etcd member", err)
		if ml, err := admin.MemberList(ctx); err != nil || len(ml.Members) != 1 {
			t.Errorf("etcd members %v %v, want 1", ml, err)
		}
		if ping(t, h0, "s0", "s2") == false {
			t.Error("the overlay broke after the attempts")
		}
	})

	t.Run("renewal", func(t *testing.T) {
		first := memberCert(t, h1).Leaf.NotAfter
		var renewed time.Time
		if !eventually(30*time.Second, func() bool {
			renewed = memberCert(t, h1).Leaf.NotAfter
			return renewed.After(first)
		}) {
			t.Fatalf("host 1's certificate (expiring %s) was not renewed", first)
		}
		if !eventually(15*time.Second, func() bool {
			return strings.Contains(cli(t, h0, "node", "ls"), renewed.UTC().Format(time.RFC3339))
		}) {
			t.Errorf("node ls does not show host 1's new expiry %s:\n%s", renewed.UTC().Format(time.RFC3339), cli(t, h0, "node", "ls"))
		}
		// Past the first certificate's expiry: new connections with the
		// renewed files work, the daemon still writes.
		time.Sleep(time.Until(first.Add(time.Second)))
		m := secEtcd(t, h1, store, ca, memberCert(t, h1))
		if _, err := m.Get(ctx, "/vxnet/v1/nodes/", clientv3.WithPrefix()); err != nil {
			t.Errorf("read with the renewed certificate: %v", err)
		}
		cli(t, h1, "network", "create", "-d", "overlay", "after-renewal")
	})

	t.Run("node-rm-revokes", func(t *testing.T) {
		cert2 := memberCert(t, h2)
		start := time.Now()
		cli(t, h0, "node", "rm", "--force", id2)
		if !eventually(ttl+2*time.Second-time.Since(start), func() bool {
			v := ovInspect(t, h0, "sec").VXNet
			for _, p := range v.Peers {
				if p.Node != "" && strings.HasPrefix(id2, p.Node) {
					return false
				}
			}
			for _, f := range v.KernelFDB {
				if strings.Contains(f, h2.Addr.String()) {
					return false
				}
			}
			return true
		}) {
			t.Errorf("host 2's entries still on host 0 after %v: %+v", ttl+2*time.Second, ovInspect(t, h0, "sec").VXNet)
		}
		if ping(t, h0, "s0", "s2") {
			t.Error("s0 still reaches s2 after host 2 was removed")
		}
		m := secEtcd(t, h2, store, ca, cert2)
		_, err := m.Get(ctx, "/vxnet/v1/", clientv3.WithPrefix())
		wantDenied(t, "removed member reads", err)
		_, err = m.Put(ctx, "/vxnet/v1/adverts/"+id2+"/x/y", "{}")
		wantDenied(t, "removed member writes its own subtree", err)
		if strings.Contains(cli(t, h0, "node", "ls", "-q"), id2) {
			t.Error("node ls still lists host 2")
		}
	})
}
