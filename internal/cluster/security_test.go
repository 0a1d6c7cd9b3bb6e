package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/pki"
)

// memberClient is an etcd client presenting the certificate in a member's
// PKI directory, as etcdctl --cert/--key/--cacert would.
func memberClient(t *testing.T, dir string, port int) *clientv3.Client {
	t.Helper()
	d := pki.Dir(dir)
	tc, err := transport.TLSInfo{CertFile: d.NodeCertPath(), KeyFile: d.NodeKeyPath(), TrustedCAFile: d.CACertPath()}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{fmt.Sprintf("https://127.0.0.1:%d", port)},
		TLS: tc, DialTimeout: 2 * time.Second, Logger: newZapLogger(testLogger(t), 100)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func denied(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: allowed, want denied", what)
		return
	}
	if !strings.Contains(err.Error(), "permission denied") && !strings.Contains(err.Error(), "user name not found") {
		t.Errorf("%s: %v, want a permission error", what, err)
	}
}

// TestSecurity covers the embedded cluster's PKI, join tokens, mutual TLS
// and etcd permissions on real embedded etcd members: one voter (the CA
// key holder) and client members. Certificates live 12 s, so they renew
// themselves during the test.
func TestSecurity(t *testing.T) {
	root := t.TempDir()
	o1 := embeddedOpts(t, root, 1, nil)
	o1.Voters = 1 // the others join as clients
	o1.CertExpiry = 12 * time.Second
	c1 := open(t, o1)
	o1 = c1.opts
	o2 := embeddedOpts(t, root, 2, c1)
	c2 := open(t, o2)
	o2 = c2.opts
	ctx := ctxT(t)
	start := time.Now()
	first2 := c2.CertExpiry()

	t.Run("files", func(t *testing.T) {
		for _, o := range []Options{o1, o2} {
			for _, f := range []string{pki.CACertFile, pki.NodeCertFile, pki.NodeKeyFile} {
				st, err := os.Stat(filepath.Join(o.PKIDir, f))
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasSuffix(f, ".key") && st.Mode().Perm() != 0o600 {
					t.Errorf("%s/%s mode %v, want 0600", o.PKIDir, f, st.Mode().Perm())
				}
			}
			cert, err := pki.Dir(o.PKIDir).NodeCert()
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != o.NodeID || !slices.ContainsFunc(cert.IPAddresses, func(ip net.IP) bool {
				a, _ := netip.AddrFromSlice(ip)
				return a.Unmap() == o.AdvertiseAddr
			}) {
				t.Errorf("certificate of %s names %q %v", o.NodeID, cert.Subject.CommonName, cert.IPAddresses)
			}
		}
		if _, err := os.Stat(filepath.Join(o1.PKIDir, pki.CAKeyFile)); err != nil {
			t.Errorf("voter holds no CA key: %v", err)
		}
		if _, err := os.Stat(filepath.Join(o2.PKIDir, pki.CAKeyFile)); err == nil {
			t.Error("client member holds the CA key")
		}
		if _, err := c2.JoinToken(ctx, false); !errors.Is(err, model.ErrForbidden) {
			t.Errorf("join token on a client member: %v, want forbidden", err)
		}
	})

	// nothingAdded fails unless the cluster still has exactly the users,
	// etcd members and node records it had before.
	users := func() []string {
		r, err := c1.admin.UserList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r.Users
	}
	before := users()
	nothingAdded := func(t *testing.T, id string) {
		t.Helper()
		if got := users(); !slices.Equal(got, before) {
			t.Errorf("etcd users %v, want %v", got, before)
		}
		if v, l := memberCount(t, c1); v != 1 || l != 0 {
			t.Errorf("%d voters %d learners, want 1 and 0", v, l)
		}
		if _, err := nodeState(ctx, c1, id); err == nil {
			t.Errorf("node %s has a record", id)
		}
	}

	t.Run("refused-joins", func(t *testing.T) {
		good, err := c1.JoinToken(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := pki.ParseToken(good)
		otherCA, _ := pki.NewCA("other")
		otherSecret, _ := pki.NewSecret()
		if _, err := c1.JoinToken(ctx, true); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ name, token, want string }{
			{"no-token", "", "a join token is required"},
			{"garbage", "hello", "invalid join token"},
			{"wrong-secret", pki.Token{CADigest: tok.CADigest, Secret: otherSecret}.String(), "wrong or rotated"},
			{"rotated", good, "wrong or rotated"},
			{"other-ca", pki.Token{CADigest: otherCA.Digest(), Secret: tok.Secret}.String(), "does not match the join token"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				o := embeddedOpts(t, root, 9, c1)
				o.JoinToken = tc.token
				c, err := Open(ctx, o)
				if err == nil {
					c.Close()
					t.Fatal("joined")
				}
				if errors.Is(err, model.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("join: %q, want one line with %q", err, tc.want)
				}
				nothingAdded(t, o.NodeID)
				if pki.Dir(filepath.Join(root, "n9", "cluster")).HasNode() {
					t.Error("refused joiner holds a certificate")
				}
			})
		}
	})

	o3 := embeddedOpts(t, root, 3, c1) // the rotated token
	c3 := open(t, o3)
	o3 = c3.opts

	// gRPC has the client URL to itself (grpc-go's transport, not
	// net/http's); etcd's HTTP endpoints answer on loopback, with a client
	// certificate only.
	t.Run("etcd-http-apart", func(t *testing.T) {
		get := func(port int, cert bool) (string, error) {
			tc := c1.id.clientTLS(false)
			if !cert {
				tc.GetClientCertificate = nil
			}
			hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
			resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/version", port))
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.Status + " " + string(b), nil
		}
		if out, err := get(o1.ClientHTTPPort, true); err != nil || !strings.Contains(out, "etcdserver") {
			t.Errorf("/version on the HTTP port with a member certificate: %q, %v", out, err)
		}
		if out, err := get(o1.ClientHTTPPort, false); err == nil {
			t.Errorf("/version on the HTTP port without a client certificate answered %q", out)
		}
		if out, err := get(o1.ClientPort, true); err == nil && strings.Contains(out, "etcdserver") {
			t.Errorf("/version on the gRPC client port answered %q", out)
		}
	})

	t.Run("no-client-certificate", func(t *testing.T) {
		url := fmt.Sprintf("127.0.0.1:%d", o1.ClientPort)
		hc := &http.Client{Timeout: 2 * time.Second}
		if resp, err := hc.Get("http://" + url + "/version"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "etcd") {
				t.Errorf("plain http answered %q", b)
			}
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(c1.id.ca.CertPEM)
		hs := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		if resp, err := hs.Get("https://" + url + "/v3/kv/range"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Errorf("https without a client certificate answered %s %q", resp.Status, b)
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + url}, TLS: &tls.Config{RootCAs: pool},
			DialTimeout: 2 * time.Second, Logger: newZapLogger(testLogger(t), 100)})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if r, err := cli.Get(rctx, c1.key(), clientv3.WithPrefix()); err == nil {
			t.Errorf("read %d keys without a client certificate", r.Count)
		}
	})

	t.Run("member-permissions", func(t *testing.T) {
		m := memberClient(t, o2.PKIDir, o1.ClientPort)
		own := c2.key("adverts", o2.NodeID, "net", "ep")
		if _, err := m.Put(ctx, own, "{}"); err != nil {
			t.Fatalf("write own advertisement: %v", err)
		}
		m.Delete(ctx, own)
		if _, err := m.Get(ctx, c2.key("nodes")+"/", clientv3.WithPrefix()); err != nil {
			t.Errorf("read node records: %v", err)
		}
		_, err := m.Put(ctx, c1.key("nodes", o1.NodeID), "{}")
		denied(t, "write another member's record", err)
		_, err = m.Put(ctx, c1.key("adverts", o1.NodeID, "net", "ep"), "{}")
		denied(t, "write another member's advertisement", err)
		_, err = m.Delete(ctx, c1.key("alive", o3.NodeID))
		denied(t, "delete another member's liveness", err)
		_, err = m.Delete(ctx, c1.opts.Prefix+"/", clientv3.WithPrefix())
		denied(t, "delete the prefix", err)
		_, err = m.Delete(ctx, "", clientv3.WithFromKey())
		denied(t, "delete everything", err)
		_, err = m.MemberAddAsLearner(ctx, []string{"https://127.0.0.1:1"})
		denied(t, "add an etcd member", err)
		_, err = m.Get(ctx, c1.tokenKey())
		denied(t, "read the join token", err)
		_, err = m.UserAdd(ctx, "root2", "x")
		denied(t, "add a user", err)
		if v, l := memberCount(t, c1); v != 1 || l != 0 {
			t.Errorf("%d voters %d learners after the attempts, want 1 and 0", v, l)
		}
	})

	t.Run("renewal", func(t *testing.T) {
		// Past the first certificates' expiry: both renewed, and a new
		// connection with the files works (the server's certificate was
		// renewed too).
		eventually(t, 20*time.Second, "certificates renewed", func() error {
			if !c2.CertExpiry().After(first2) {
				return fmt.Errorf("client member's certificate still expires %s", first2)
			}
			return nil
		})
		if d := time.Until(start.Add(13 * time.Second)); d > 0 {
			time.Sleep(d)
		}
		m := memberClient(t, o2.PKIDir, o1.ClientPort)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := m.Get(rctx, c2.key("nodes")+"/", clientv3.WithPrefix()); err != nil {
			t.Fatalf("read with the renewed certificate after the first expired: %v", err)
		}
		if _, err := c2.CreateNetwork(ctx, testNet("after-renewal")); err != nil {
			t.Fatalf("client member writes after renewal: %v", err)
		}
		n, err := nodeState(ctx, c1, o2.NodeID)
		if err != nil {
			t.Fatal(err)
		}
		if !n.CertExpiry.After(first2) {
			t.Errorf("node list shows expiry %s, want after %s", n.CertExpiry, first2)
		}
	})

	t.Run("remove-revokes", func(t *testing.T) {
		a := owned(t, c3, oid("n1"), "e3", "10.0.0.3")
		if err := c3.Advertise(ctx, a); err != nil {
			t.Fatal(err)
		}
		if as, _, err := c2.Adverts(ctx, oid("n1")); err != nil || len(as) != 1 {
			t.Fatalf("adverts %v %v, want node3's", as, err)
		}
		if err := c1.RemoveNode(ctx, o3.NodeID, false); !errors.Is(err, model.ErrConflict) {
			t.Fatalf("remove an up node without force: %v, want conflict", err)
		}
		if err := c2.RemoveNode(ctx, o3.NodeID, true); !errors.Is(err, model.ErrForbidden) {
			t.Fatalf("remove by a client member: %v, want forbidden", err)
		}
		removed := time.Now()
		if err := c1.RemoveNode(ctx, o3.NodeID, true); err != nil {
			t.Fatal(err)
		}
		eventually(t, o3.NodeTTL+2*time.Second-time.Since(removed), "node3's adverts gone", func() error {
			if as, _, err := c2.Adverts(ctx, oid("n1")); err != nil || len(as) != 0 {
				return fmt.Errorf("adverts %v %v", as, err)
			}
			return nil
		})
		m := memberClient(t, o3.PKIDir, o1.ClientPort)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := m.Get(rctx, c1.key("nodes")+"/", clientv3.WithPrefix())
		denied(t, "removed member reads", err)
		_, err = m.Put(rctx, c1.key("adverts", o3.NodeID, "n1", "e9"), "{}")
		denied(t, "removed member writes its own subtree", err)
		_, err = m.Put(rctx, c1.key("networks", "id", "x"), "{}")
		denied(t, "removed member writes a global record", err)
		// Its daemon, still running, cannot come back by itself.
		time.Sleep(o3.NodeTTL)
		if _, err := nodeState(ctx, c1, o3.NodeID); err == nil {
			t.Error("removed node registered again")
		}
		// Restarted with its old certificate only, it is refused; with a
		// (current) join token it is admitted again.
		c3.Close()
		again := o3
		again.JoinToken = ""
		if c, err := Open(ctx, again); err == nil || !strings.Contains(err.Error(), "was removed from the cluster") {
			if c != nil {
				c.Close()
			}
			t.Fatalf("rejoin of a removed node with its certificate: %v, want refused", err)
		}
		tok, err := c1.JoinToken(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		again.JoinToken = tok
		c3b := open(t, again)
		if err := c3b.Advertise(ctx, a); err != nil {
			t.Fatalf("advertise after joining again: %v", err)
		}
	})
}
