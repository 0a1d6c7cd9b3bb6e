package engine_test

import (
	"context"
	"fmt"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/harness/freeport"
	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// TestVXLANFilterBeforeOverlayRestore: after a restart, the firewall that
// accepts VXLAN only from the cached peers' VTEPs (per VNI) is applied
// before the overlay driver is asked to bring the network's VXLAN device
// up (CreateNetwork, or Join of a container's endpoint), both
// when the cluster store is reached at start (Start) and when it is
// reached later (ClusterPending, then AttachCluster).
func TestVXLANFilterBeforeOverlayRestore(t *testing.T) {
	cl := openTestCluster(t)
	dir := t.TempDir()
	rt := enginetest.NewRuntime()
	peer := addr("192.0.2.7")

	// First run: an overlay network with a running container.
	e, _, _, st := clusterTestEngine(t, dir, rt, cl, false, nil)
	n := mustNet(t, e, api.NetworkCreate{Name: "ov", Driver: "overlay", IPAM: []model.IPAMConfig{{Subnet: pfx("10.77.0.0/24")}}})
	mustRun(t, e, api.ContainerCreate{Name: "c1", Network: "ov"})
	if n.VNI == 0 {
		t.Fatalf("overlay network %s has no VNI", n.Name)
	}
	e.Close()
	st.Close()
	// The peers last seen, as the watch keeps them in the local store:
	// another member's endpoint behind VTEP 192.0.2.7 (written again
	// before each restart, since a running engine's watch replaces them).
	ads := []cluster.Advert{{NetworkID: n.ID, EndpointID: strings.Repeat("cd", 32), IP: addr("10.77.0.9"),
		MAC: net.HardwareAddr{0x02, 0x42, 0x0a, 0x4d, 0x00, 0x09}, VTEP: peer,
		NodeID: strings.Repeat("ab", cluster.NodeIDLen/2), Name: "c2"}}

	for _, pending := range []bool{false, true} {
		t.Run(fmt.Sprintf("pending=%v", pending), func(t *testing.T) {
			st, err := store.Open(filepath.Join(dir, "vxnet.db"))
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Put(store.Peers, n.ID, ads); err != nil {
				t.Fatal(err)
			}
			st.Close()
			var mu sync.Mutex
			var creates, filtered int
			e, _, ov, st := clusterTestEngine(t, dir, rt, cl, pending, func(fw *enginetest.Firewall, m model.Network) {
				if m.ID != n.ID {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				creates++
				if fw.Allows(peer, n.VNI) {
					filtered++
				}
			})
			if pending {
				e.AttachCluster(cl)
			}
			mu.Lock()
			c, f := creates, filtered
			mu.Unlock()
			if c == 0 || !ov.Has(n.ID) {
				t.Fatalf("the overlay network was not re-created at restart")
			}
			if f != c {
				t.Errorf("the overlay driver was asked %d time(s) to bring the network up before the firewall allowed VXLAN from %s on VNI %d",
					c-f, peer, n.VNI)
			}
			e.Close()
			st.Close()
		})
	}
}

// openTestCluster starts a one-member embedded cluster on loopback.
func openTestCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	ports := freeport.Loopback(t, 3)
	dir := t.TempDir()
	opts := cluster.Options{
		NodeID: strings.Repeat("0e", cluster.NodeIDLen/2), Hostname: "engine-test", AdvertiseAddr: addr("127.0.0.1"),
		DataDir: filepath.Join(dir, "etcd"), Init: true,
		ClientPort: ports[0], PeerPort: ports[1], JoinPort: ports[2],
		NodeTTL: 2 * time.Second, RequestTimeout: 5 * time.Second, StartTimeout: 30 * time.Second,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := cluster.Open(ctx, opts)
	if err != nil {
		t.Fatalf("open cluster: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// clusterTestEngine builds and starts an engine in cluster mode on fakes,
// over the local store in dir, with a fake overlay driver whose
// CreateNetwork and Join call onNetwork (if set) with the fake firewall
// first.
// pending starts it as a daemon that has not reached the store yet.
func clusterTestEngine(t *testing.T, dir string, rt *enginetest.Runtime, cl *cluster.Cluster, pending bool,
	onNetwork func(*enginetest.Firewall, model.Network)) (*engine.Engine, *enginetest.Firewall, *enginetest.Driver, *store.Store) {
	t.Helper()
	return clusterTestEngineWith(t, dir, rt, cl, pending, onNetwork, nil)
}

// clusterTestEngineWith is clusterTestEngine with the options changed by
// edit (if set) before the engine is built.
func clusterTestEngineWith(t *testing.T, dir string, rt *enginetest.Runtime, cl *cluster.Cluster, pending bool,
	onNetwork func(*enginetest.Firewall, model.Network), edit func(*engine.Options)) (*engine.Engine, *enginetest.Firewall, *enginetest.Driver, *store.Store) {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "vxnet.db"))
	if err != nil {
		t.Fatal(err)
	}
	fw := &enginetest.Firewall{}
	ov := enginetest.NewScopedDriver("overlay", model.ScopeGlobal, nil)
	if onNetwork != nil {
		ov.OnNetwork(func(n model.Network) { onNetwork(fw, n) })
	}
	opts := engine.Options{
		DataRoot: dir, ExecRoot: filepath.Join(dir, "exec"), Store: st,
		Drivers: []driver.Driver{enginetest.NewDriver("bridge", nil), enginetest.NewDriver("host", nil),
			enginetest.NewDriver("null", nil), ov},
		IPAM: engine.LocalIPAM(ipam.NewAllocator()), Runtime: rt, Images: enginetest.NewImages(), Firewall: fw,
		HostRoutes: func() ([]netip.Prefix, error) { return nil, nil },
		NodeID:     cl.NodeID(), VTEP: addr("127.0.0.1"), VXLANPort: 4789,
		NoNetns: true,
	}
	if pending {
		opts.ClusterPending = true
	} else {
		opts.Cluster = cl
	}
	if edit != nil {
		edit(&opts)
	}
	e, err := engine.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(); st.Close() })
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e, fw, ov, st
}
