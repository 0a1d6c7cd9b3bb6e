// Package pki is the cluster's certificate authority and join tokens.
//
// A cluster made with --cluster-init has its own CA (ECDSA P-256). Every
// member holds a certificate from it whose common name is its node ID (the
// etcd user it acts as) and whose IP SANs are its advertise address, usable
// both as a TLS server certificate (etcd client and peer listeners, the join
// service) and as a client certificate. Voting members also hold the CA key,
// so any of them can admit a new member and mint the "root" identity that
// changes etcd membership and users. Files, in <data-root>/cluster/:
//
//	ca.crt    the CA certificate (every member)
//	ca.key    the CA key, mode 0600 (voting members only)
//	node.crt  this member's certificate
//	node.key  this member's key, mode 0600
//
// A join token is "VXNET-1-<sha256 of the CA certificate, hex>-<secret>":
// the digest pins the CA (the joiner checks the CA it is sent against it,
// no trust on first use), the secret proves the joiner was invited.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names in a member's PKI directory.
const (
	CACertFile   = "ca.crt"
	CAKeyFile    = "ca.key"
	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
)

// RootUser is the common name of the etcd root identity. Only holders of
// the CA key (voting members) can mint a certificate for it; node IDs may
// never take this name.
const RootUser = "root"

// DefaultCertExpiry is the lifetime of member certificates.
const DefaultCertExpiry = 90 * 24 * time.Hour

// caValidity is the CA's lifetime.
const caValidity = 20 * 365 * 24 * time.Hour

// clockSkew back-dates certificates so that hosts with slightly slow clocks
// accept them at once.
const clockSkew = 5 * time.Minute

// CA is a certificate authority: its certificate and, on voting members,
// its key.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     *ecdsa.PrivateKey // nil where only the certificate is held
}

// NewKey returns a new ECDSA P-256 key.
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewCA makes a new CA named after the cluster.
func NewCA(name string) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("pki: new CA: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, fmt.Errorf("pki: new CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"vxnet"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: new CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: new CA: %w", err)
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), Key: key}, nil
}

// ParseCA reads a CA from PEM; keyPEM may be nil.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("pki: certificate is not a CA")
	}
	ca := &CA{Cert: cert, CertPEM: certPEM}
	if keyPEM != nil {
		if ca.Key, err = ParseKey(keyPEM); err != nil {
			return nil, err
		}
		if !ca.Key.PublicKey.Equal(cert.PublicKey) {
			return nil, errors.New("pki: CA key does not match the CA certificate")
		}
	}
	return ca, nil
}

// Digest is the SHA-256 of the CA certificate (DER), in hex: what a join
// token pins.
func (ca *CA) Digest() string { return Digest(ca.Cert.Raw) }

// Digest returns the hex SHA-256 of a DER certificate.
func Digest(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// Pool returns a cert pool holding the CA alone.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue signs a certificate for pub naming cn, valid for validity, for both
// TLS server and client use, with the given IP SANs.
func (ca *CA) Issue(pub crypto.PublicKey, cn string, ips []netip.Addr, validity time.Duration) ([]byte, error) {
	if ca.Key == nil {
		return nil, errors.New("pki: issue: this member does not hold the CA key")
	}
	sn, err := serial()
	if err != nil {
		return nil, fmt.Errorf("pki: issue: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"vxnet"}},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, a := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(a.AsSlice()))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: issue: %w", err)
	}
	return pemBlock("CERTIFICATE", der), nil
}

// IssueCSR checks a PEM certificate request and signs it. The request must
// name wantCN; its own SANs are ignored, ips are used instead.
func (ca *CA) IssueCSR(csrPEM []byte, wantCN string, ips []netip.Addr, validity time.Duration) ([]byte, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("pki: certificate request: not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: certificate request: %w", err)
	}
	if csr.Subject.CommonName != wantCN {
		return nil, fmt.Errorf("pki: certificate request names %q, want %q", csr.Subject.CommonName, wantCN)
	}
	if _, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok {
		return nil, errors.New("pki: certificate request: want an ECDSA key")
	}
	return ca.Issue(csr.PublicKey, wantCN, ips, validity)
}

// Leaf returns a TLS certificate for cn signed by the CA with a fresh key,
// held in memory only (the root identity of voting members).
func (ca *CA) Leaf(cn string, validity time.Duration) (tls.Certificate, error) {
	key, err := NewKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM, err := ca.Issue(&key.PublicKey, cn, nil, validity)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := KeyPEM(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// CSR returns a PEM certificate request for key naming cn.
func CSR(key *ecdsa.PrivateKey, cn string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn, Organization: []string{"vxnet"}},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate request: %w", err)
	}
	return pemBlock("CERTIFICATE REQUEST", der), nil
}

// KeyPEM encodes a key.
func KeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pemBlock("EC PRIVATE KEY", der), nil
}

// ParseKey decodes a PEM EC key.
func ParseKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("pki: key: not PEM")
	}
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: key: %w", err)
	}
	return k, nil
}

// ParseKeyFile reads a PEM EC key file.
func ParseKeyFile(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: key: %w", err)
	}
	return ParseKey(b)
}

// ParseCert decodes the first PEM certificate of b.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("pki: certificate: not a PEM CERTIFICATE")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate: %w", err)
	}
	return c, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// Lifetime is how long a certificate made by Issue was issued for (its
// validity without the back-dating for clock skew).
func Lifetime(c *x509.Certificate) time.Duration {
	return c.NotAfter.Sub(c.NotBefore) - clockSkew
}

// --- join tokens ---

const tokenPrefix = "VXNET-1-"

// Token is a parsed join token.
type Token struct {
	CADigest string // hex SHA-256 of the CA certificate
	Secret   string
}

// NewSecret returns a new random token secret: 256 random bits as 64
// lower-case hex digits.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// String formats the token.
func (t Token) String() string { return tokenPrefix + t.CADigest + "-" + t.Secret }

// ParseToken parses "VXNET-1-<digest>-<secret>".
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return Token{}, errors.New("invalid join token: it does not start with " + tokenPrefix)
	}
	dig, sec, ok := strings.Cut(rest, "-")
	if !ok || len(dig) != 64 || !isHex(dig) || len(sec) != 64 || !isHex(sec) {
		return Token{}, errors.New("invalid join token: want " + tokenPrefix + "<64 hex digits>-<64 hex digits>")
	}
	return Token{CADigest: dig, Secret: sec}, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// SecretEqual compares two secrets in constant time.
func SecretEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// --- files ---

// Dir is a member's PKI directory.
type Dir string

func (d Dir) path(name string) string { return filepath.Join(string(d), name) }

// CACertPath and the others return the paths of the files.
func (d Dir) CACertPath() string   { return d.path(CACertFile) }
func (d Dir) CAKeyPath() string    { return d.path(CAKeyFile) }
func (d Dir) NodeCertPath() string { return d.path(NodeCertFile) }
func (d Dir) NodeKeyPath() string  { return d.path(NodeKeyFile) }

// HasNode reports whether the directory holds a member certificate, key
// and CA certificate.
func (d Dir) HasNode() bool {
	for _, p := range []string{d.CACertPath(), d.NodeCertPath(), d.NodeKeyPath()} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// LoadCA reads the CA certificate and, if present, its key.
func (d Dir) LoadCA() (*CA, error) {
	certPEM, err := os.ReadFile(d.CACertPath())
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: %w", err)
	}
	keyPEM, err := os.ReadFile(d.CAKeyPath())
	if errors.Is(err, os.ErrNotExist) {
		keyPEM, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pki: load CA key: %w", err)
	}
	return ParseCA(certPEM, keyPEM)
}

// NodeCert reads this member's certificate.
func (d Dir) NodeCert() (*x509.Certificate, error) {
	b, err := os.ReadFile(d.NodeCertPath())
	if err != nil {
		return nil, fmt.Errorf("pki: load node certificate: %w", err)
	}
	return ParseCert(b)
}

// WriteFile writes one file of the directory atomically (temp file, fsync,
// rename), keys with mode 0600, certificates 0644.
func (d Dir) WriteFile(name string, data []byte) error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("pki: write %s: %w", name, err)
	}
	mode := os.FileMode(0o644)
	if strings.HasSuffix(name, ".key") {
		mode = 0o600
	}
	f, err := os.CreateTemp(string(d), name+".tmp*")
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", name, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("pki: write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("pki: write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("pki: write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pki: write %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), d.path(name)); err != nil {
		return fmt.Errorf("pki: write %s: %w", name, err)
	}
	return nil
}
