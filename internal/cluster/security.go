package cluster

// The embedded cluster's security: this member's identity (certificate
// from the cluster CA), the TLS configuration of its etcd client, the root
// identity of voting members, etcd users and roles, and the join token.
//
// Every member authenticates to etcd with its certificate; etcd takes the
// certificate's common name (the node ID) as the user name. The user's role
// lets it read the whole prefix and write only:
//
//	nodes/<id>, alive/<id>, seen/<id>,         its own records
//	adverts/<id>/...
//	networks/, vni/, ipam/                     the global records members change
//
// Membership, users, roles, other members' records and the join token need
// the "root" user, whose certificate only holders of the CA key (voting
// members) can mint. The token lives outside the prefix (see tokenKey), so
// members cannot read it.

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/pki"
)

// benchPlaintext is set only in binaries built with the
// vxnet_bench_plaintext tag (plaintext_bench.go), for the TLS-versus-
// plaintext benchmark: embedded etcd links without TLS, etcd auth off.
var benchPlaintext = false

// rootCertValidity is the lifetime of the in-memory root certificate a
// voting member mints for itself; it mints a new one on every start and
// before this runs out.
const rootCertValidity = 7 * 24 * time.Hour

// identity is this member's certificate material, shared by every TLS
// configuration that presents it, so a renewal takes effect on the next
// handshake.
type identity struct {
	dir  pki.Dir
	ca   *pki.CA // Key is nil on members that do not vote
	node atomic.Pointer[tls.Certificate]

	mu   sync.Mutex
	root *tls.Certificate // minted from the CA key; nil without it
}

// loadIdentity reads the PKI directory.
func loadIdentity(dir pki.Dir) (*identity, error) {
	ca, err := dir.LoadCA()
	if err != nil {
		return nil, err
	}
	id := &identity{dir: dir, ca: ca}
	if err := id.reload(); err != nil {
		return nil, err
	}
	return id, nil
}

// reload reads node.crt and node.key again.
func (id *identity) reload() error {
	cert, err := tls.LoadX509KeyPair(id.dir.NodeCertPath(), id.dir.NodeKeyPath())
	if err != nil {
		return fmt.Errorf("pki: load node certificate: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("pki: load node certificate: %w", err)
		}
	}
	id.node.Store(&cert)
	return nil
}

func (id *identity) nodeCert() *tls.Certificate { return id.node.Load() }

// expiry is when this member's certificate runs out.
func (id *identity) expiry() time.Time { return id.nodeCert().Leaf.NotAfter }

// rootCert returns the root identity, minting it when it is missing or
// about to expire. It fails on members without the CA key.
func (id *identity) rootCert() (*tls.Certificate, error) {
	if id.ca.Key == nil {
		return nil, errNotVoter
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.root != nil && time.Until(id.root.Leaf.NotAfter) > rootCertValidity/2 {
		return id.root, nil
	}
	c, err := id.ca.Leaf(pki.RootUser, rootCertValidity)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	id.root = &c
	return id.root, nil
}

var errNotVoter = errors.New("this node does not hold the cluster CA key (only voting members do)")

// clientTLS is the TLS configuration of an etcd client acting as this
// member (root false) or as root.
func (id *identity) clientTLS(root bool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    id.ca.Pool(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if root {
				return id.rootCert()
			}
			return id.nodeCert(), nil
		},
	}
}

// issueOwn signs a new certificate for this member's current key with the
// CA key it holds and installs it.
func (id *identity) issueOwn(nodeID string, ips []netip.Addr, validity time.Duration) error {
	key, err := pki.ParseKeyFile(id.dir.NodeKeyPath())
	if err != nil {
		return err
	}
	certPEM, err := id.ca.Issue(&key.PublicKey, nodeID, ips, validity)
	if err != nil {
		return err
	}
	if err := id.dir.WriteFile(pki.NodeCertFile, certPEM); err != nil {
		return err
	}
	return id.reload()
}

// certIPs are the IP SANs of a member's certificate.
func certIPs(a netip.Addr) []netip.Addr {
	lo := netip.MustParseAddr("127.0.0.1")
	if a == lo {
		return []netip.Addr{a}
	}
	return []netip.Addr{a, lo}
}

// newPKI makes a new CA and this member's certificate in the PKI
// directory (the --cluster-init host), replacing what was there.
func (c *Cluster) newPKI() (*identity, error) {
	o := c.opts
	dir := pki.Dir(o.PKIDir)
	ca, err := pki.NewCA("vxnet cluster CA")
	if err != nil {
		return nil, err
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	certPEM, err := ca.Issue(&key.PublicKey, o.NodeID, certIPs(o.AdvertiseAddr), cmp.Or(o.CertExpiry, pki.DefaultCertExpiry))
	if err != nil {
		return nil, err
	}
	keyPEM, err := pki.KeyPEM(key)
	if err != nil {
		return nil, err
	}
	caKeyPEM, err := pki.KeyPEM(ca.Key)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{pki.CAKeyFile, caKeyPEM}, {pki.CACertFile, ca.CertPEM}, {pki.NodeKeyFile, keyPEM}, {pki.NodeCertFile, certPEM}} {
		if err := dir.WriteFile(f.name, f.data); err != nil {
			return nil, err
		}
	}
	return loadIdentity(dir)
}

// tokenKey holds the join token's secret. It is outside the prefix, so the
// members' read permission on the prefix does not cover it: only root
// (voting members) reads it.
func (c *Cluster) tokenKey() string { return c.opts.Prefix + "-pki/token" }

// certExpiryKey holds the lifetime of member certificates (a Go duration),
// next to the token.
func (c *Cluster) certExpiryKey() string { return c.opts.Prefix + "-pki/cert-expiry" }

// certValidity is the lifetime of the certificates this voter signs: the
// cluster's setting, or the default when the store cannot say.
func (c *Cluster) certValidity(ctx context.Context) time.Duration {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.admin.Get(rctx, c.certExpiryKey())
	if err == nil && len(resp.Kvs) == 1 {
		if d, err := time.ParseDuration(string(resp.Kvs[0].Value)); err == nil && d >= 10*time.Second {
			return d
		}
		c.log.Warn("invalid certificate expiry in the store; using the default", "key", c.certExpiryKey(), "value", string(resp.Kvs[0].Value))
	}
	return pki.DefaultCertExpiry
}

// storeCertExpiry records the cluster's certificate lifetime (Init hosts,
// at every start where it is given).
func (c *Cluster) storeCertExpiry(ctx context.Context) error {
	if c.opts.CertExpiry == 0 || c.admin == nil {
		return nil
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	if _, err := c.admin.Put(rctx, c.certExpiryKey(), c.opts.CertExpiry.String()); err != nil {
		return unavailable("store certificate expiry", err)
	}
	return nil
}

// roleName is the etcd role of a member.
func roleName(nodeID string) string { return "node-" + nodeID }

// prefixEnd is the end of the range of keys starting with p.
func prefixEnd(p string) string { return clientv3.GetPrefixRangeEnd(p) }

// grantMember creates (or resets) the etcd user and role of member nodeID.
// It runs as root.
func (c *Cluster) grantMember(ctx context.Context, admin *clientv3.Client, nodeID string) error {
	role := roleName(nodeID)
	if _, err := admin.RoleAdd(ctx, role); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return fmt.Errorf("add role %s: %w", role, err)
	}
	p := c.opts.Prefix + "/"
	type perm struct {
		key, end string
		typ      clientv3.PermissionType
	}
	rw := clientv3.PermissionType(authpb.READWRITE)
	perms := []perm{
		{p, prefixEnd(p), clientv3.PermissionType(authpb.READ)},
		{c.key("nodes", nodeID), "", rw},
		{c.key("alive", nodeID), "", rw},
		{c.key("seen", nodeID), "", rw},
		{c.key("adverts", nodeID) + "/", prefixEnd(c.key("adverts", nodeID) + "/"), rw},
	}
	for _, g := range globalWritable {
		k := c.key(g) + "/"
		perms = append(perms, perm{k, prefixEnd(k), rw})
	}
	for _, x := range perms {
		if _, err := admin.RoleGrantPermission(ctx, role, x.key, x.end, x.typ); err != nil {
			return fmt.Errorf("grant %s on %s: %w", role, x.key, err)
		}
	}
	_, err := admin.UserAddWithOptions(ctx, nodeID, "", &clientv3.UserAddOptions{NoPassword: true})
	if err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("add user %s: %w", nodeID, err)
	}
	if _, err := admin.UserGrantRole(ctx, nodeID, role); err != nil {
		return fmt.Errorf("grant role %s to %s: %w", role, nodeID, err)
	}
	return nil
}

// globalWritable are the top-level key kinds under the prefix that every
// member may write: the records of global networks, their VNIs and global
// IPAM. A new kind of global record needs an entry here.
var globalWritable = []string{"networks", "vni", "ipam"}

// revokeMember deletes member nodeID's etcd user and role, so its
// certificate can neither read nor write. It runs as root; a user already
// gone is not an error.
func (c *Cluster) revokeMember(ctx context.Context, admin *clientv3.Client, nodeID string) error {
	if _, err := admin.UserDelete(ctx, nodeID); err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) {
		return fmt.Errorf("delete user %s: %w", nodeID, err)
	}
	if _, err := admin.RoleDelete(ctx, roleName(nodeID)); err != nil && !errors.Is(err, rpctypes.ErrRoleNotFound) {
		return fmt.Errorf("delete role %s: %w", roleName(nodeID), err)
	}
	return nil
}

// memberExists reports whether nodeID has an etcd user.
func memberExists(ctx context.Context, admin *clientv3.Client, nodeID string) (bool, error) {
	_, err := admin.UserGet(ctx, nodeID)
	if errors.Is(err, rpctypes.ErrUserNotFound) {
		return false, nil
	}
	return err == nil, err
}

// setupAuth runs once on the --cluster-init host, before any other member
// exists: the root user, this member's user and role, the first join
// token, then etcd authentication on.
func (c *Cluster) setupAuth(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	a := c.admin
	if _, err := a.UserAddWithOptions(rctx, pki.RootUser, "", &clientv3.UserAddOptions{NoPassword: true}); err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return unavailable("set up etcd auth: add root user", err)
	}
	if _, err := a.UserGrantRole(rctx, pki.RootUser, "root"); err != nil {
		return unavailable("set up etcd auth: grant root", err)
	}
	if err := c.grantMember(rctx, a, c.opts.NodeID); err != nil {
		return unavailable("set up etcd auth", err)
	}
	secret, err := pki.NewSecret()
	if err != nil {
		return err
	}
	if _, err := a.Put(rctx, c.tokenKey(), secret); err != nil {
		return unavailable("set up etcd auth: store join token", err)
	}
	if err := c.storeCertExpiry(rctx); err != nil {
		return err
	}
	if benchPlaintext {
		return nil
	}
	if _, err := a.AuthEnable(rctx); err != nil {
		return unavailable("set up etcd auth: enable", err)
	}
	return nil
}

// JoinToken returns the token other hosts join with; with rotate it first
// replaces the secret, so the previous token is refused from then on. Only
// voting members of an embedded cluster can do this.
func (c *Cluster) JoinToken(ctx context.Context, rotate bool) (string, error) {
	if err := c.checkOpen(); err != nil {
		return "", err
	}
	if c.id == nil {
		return "", fmt.Errorf("cluster: join token: %w: this daemon uses an external cluster store; join tokens belong to embedded clusters (--cluster-init)", model.ErrInvalid)
	}
	if c.admin == nil {
		return "", fmt.Errorf("cluster: join token: %w: %v; run it on a voting member", model.ErrForbidden, errNotVoter)
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	if rotate {
		secret, err := pki.NewSecret()
		if err != nil {
			return "", err
		}
		if _, err := c.admin.Put(rctx, c.tokenKey(), secret); err != nil {
			return "", unavailable("rotate join token", err)
		}
		c.log.Info("join token rotated")
	}
	resp, err := c.admin.Get(rctx, c.tokenKey())
	if err != nil {
		return "", unavailable("read join token", err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("cluster: join token: %w: no token in the store", model.ErrNotFound)
	}
	return pki.Token{CADigest: c.id.ca.Digest(), Secret: string(resp.Kvs[0].Value)}.String(), nil
}

// JoinAddr is ADDR:PORT of this member's join service.
func (c *Cluster) JoinAddr() string {
	return netip.AddrPortFrom(c.opts.AdvertiseAddr, uint16(c.opts.JoinPort)).String()
}

// checkSecret reports whether secret is the current join token's.
func (c *Cluster) checkSecret(ctx context.Context, secret string) (bool, error) {
	resp, err := c.admin.Get(ctx, c.tokenKey())
	if err != nil {
		return false, err
	}
	if len(resp.Kvs) == 0 {
		return false, nil
	}
	return pki.SecretEqual(string(resp.Kvs[0].Value), secret), nil
}

// CertExpiry is when this member's certificate runs out; zero outside an
// embedded cluster.
func (c *Cluster) CertExpiry() time.Time {
	if c.id == nil {
		return time.Time{}
	}
	return c.id.expiry()
}

// removePKI deletes this member's certificates and keys (after a leave).
func (c *Cluster) removePKI() error {
	if c.id == nil {
		return nil
	}
	for _, f := range []string{pki.CACertFile, pki.CAKeyFile, pki.NodeCertFile, pki.NodeKeyFile} {
		if err := os.Remove(filepath.Join(string(c.id.dir), f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
