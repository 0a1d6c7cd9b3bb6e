package pki

import (
	"crypto/x509"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTokenRoundTrip(t *testing.T) {
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	sec, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	tok := Token{CADigest: ca.Digest(), Secret: sec}
	got, err := ParseToken(" " + tok.String() + "\n")
	if err != nil || got != tok {
		t.Fatalf("ParseToken(%s) = %+v, %v", tok, got, err)
	}
	for _, bad := range []string{"", "VXNET-1-", "VXNET-2-" + ca.Digest() + "-" + sec, "VXNET-1-" + ca.Digest() + "-" + sec[:10],
		"VXNET-1-" + strings.ToUpper(ca.Digest()) + "-" + sec, "VXNET-1-" + ca.Digest() + sec} {
		if _, err := ParseToken(bad); err == nil {
			t.Errorf("ParseToken(%q) accepted", bad)
		}
	}
	if !SecretEqual(sec, sec) || SecretEqual(sec, sec[:63]+"x") {
		t.Error("SecretEqual")
	}
}

func TestIssueCSR(t *testing.T) {
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewKey()
	csr, err := CSR(key, "node1")
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.0.2.1")
	if _, err := ca.IssueCSR(csr, "node2", []netip.Addr{ip}, time.Hour); err == nil {
		t.Error("signed a request naming another node")
	}
	certPEM, err := ca.IssueCSR(csr, "node1", []netip.Addr{ip}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "node1" || len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(ip.AsSlice()) {
		t.Errorf("certificate %v %v", cert.Subject, cert.IPAddresses)
	}
	if _, err := cert.Verify(x509VerifyOpts(ca)); err != nil {
		t.Errorf("verify: %v", err)
	}
	if l := Lifetime(cert); l < 59*time.Minute || l > 61*time.Minute {
		t.Errorf("lifetime %v, want 1h", l)
	}
	other, _ := NewCA("other")
	if _, err := cert.Verify(x509VerifyOpts(other)); err == nil {
		t.Error("verified against another CA")
	}
	noKey := &CA{Cert: ca.Cert, CertPEM: ca.CertPEM}
	if _, err := noKey.IssueCSR(csr, "node1", nil, time.Hour); err == nil {
		t.Error("signed without the CA key")
	}
}

func TestDirFiles(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "cluster"))
	ca, _ := NewCA("test")
	keyPEM, _ := KeyPEM(ca.Key)
	if err := d.WriteFile(CAKeyFile, keyPEM); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFile(CACertFile, ca.CertPEM); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(d.CAKeyPath())
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	got, err := d.LoadCA()
	if err != nil || got.Key == nil || got.Digest() != ca.Digest() {
		t.Fatalf("LoadCA %v %v", got, err)
	}
	other, _ := NewCA("other")
	okp, _ := KeyPEM(other.Key)
	if _, err := ParseCA(ca.CertPEM, okp); err == nil {
		t.Error("accepted a CA key that does not match")
	}
}

func x509VerifyOpts(ca *CA) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
}
