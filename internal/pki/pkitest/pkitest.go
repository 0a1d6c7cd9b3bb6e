// Package pkitest makes certificate files for tests: a CA and a server and
// a client certificate it signs, as PEM files in a directory. Only tests
// import it.
package pkitest

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/pki"
)

// Files are the paths of the PEM files Write made.
type Files struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

// Write makes a CA named caName in dir (created if missing) and issues, for
// one hour, a server certificate (CN serverCN) and a client certificate
// (CN clientCN), both with the IP SAN addr. The files are <cn>.pem and
// <cn>-key.pem next to ca.pem. Any failure fails the test.
func Write(t testing.TB, dir, caName, serverCN, clientCN string, addr netip.Addr) Files {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA(caName)
	if err != nil {
		t.Fatal(err)
	}
	f := Files{CA: filepath.Join(dir, "ca.pem")}
	if err := os.WriteFile(f.CA, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	issue := func(cn string) (string, string) {
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		crt, err := ca.Issue(&key.PublicKey, cn, []netip.Addr{addr}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		kp, err := pki.KeyPEM(key)
		if err != nil {
			t.Fatal(err)
		}
		cp, kpath := filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
		if err := os.WriteFile(cp, crt, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(kpath, kp, 0o600); err != nil {
			t.Fatal(err)
		}
		return cp, kpath
	}
	f.ServerCert, f.ServerKey = issue(serverCN)
	f.ClientCert, f.ClientKey = issue(clientCN)
	return f
}
