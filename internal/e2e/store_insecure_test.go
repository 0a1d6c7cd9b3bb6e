package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/testreq"
)

// A daemon using an external store on a non-loopback address in plain
// HTTP (allowed by --cluster-store-insecure) works with it, and warns,
// naming the store, at every start: here the first and a restart.
func TestExternalStoreInsecureWarnsAtEveryStart(t *testing.T) {
	if _, err := exec.LookPath("etcd"); err != nil {
		testreq.Skip(t, "needs etcd (Debian's etcd-server)")
	}
	var store string
	c := harness.New(t, harness.Options{Hosts: 1, DaemonArgs: func(i int, h *harness.Host) []string {
		return []string{"--cluster-store", store, "--cluster-store-insecure", "--advertise-addr", h.Addr.String()}
	}})
	h0 := c.Host(0)
	store = "etcd://" + h0.Addr.String() + ":2379"
	et := &extEtcd{t: t, h: h0, dir: filepath.Join(c.Dir, "etcd-data")} // no TLS
	et.start()
	t.Cleanup(et.kill)

	h0.Start()
	cli(t, h0, "network", "create", "-d", "overlay", "ov1") // the store answers
	h0.Restart()
	cli(t, h0, "network", "create", "-d", "overlay", "ov2")

	b, err := os.ReadFile(h0.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	// The harness starts each daemon's part of the log with "=== harness".
	starts := strings.Split(string(b), "=== harness ")[1:]
	if len(starts) != 2 {
		t.Fatalf("daemon log shows %d starts, want 2", len(starts))
	}
	for i, s := range starts {
		warned := false
		for _, l := range strings.Split(s, "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "--cluster-store-insecure") &&
				strings.Contains(l, "store="+store) {
				warned = true
			}
		}
		if !warned {
			t.Errorf("start %d: no WARN line about --cluster-store-insecure naming %s in the daemon log", i+1, store)
		}
	}
}
