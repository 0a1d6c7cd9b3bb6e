package engine_test

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
	"github.com/vxnet/vxnet/internal/engine/peerctl/peerctltest"
	"github.com/vxnet/vxnet/internal/model"
)

// recordingPeers is an overlay driver that records the last remote peer
// set per network, as text ("IP@VTEP", sorted).
type recordingPeers struct {
	*enginetest.Driver
	mu   sync.Mutex
	last map[string]string
	sets int
}

func (d *recordingPeers) SetPeers(ctx context.Context, n model.Network, peers []engine.Peer) error {
	var s []string
	for _, p := range peers {
		s = append(s, p.IP.String()+"@"+p.VTEP.String())
	}
	sort.Strings(s)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last[n.ID] = strings.Join(s, " ")
	d.sets++
	return nil
}

func (d *recordingPeers) Resync(ctx context.Context) error { return nil }

func (d *recordingPeers) programmed(netID string) (string, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last[netID], d.sets
}

// remoteAd is endpoint 10.79.0.last on the member with VTEP vtep.
func remoteAd(netID string, last byte, vtep string) cluster.Advert {
	ip := netip.AddrFrom4([4]byte{10, 79, 0, last})
	return cluster.Advert{NetworkID: netID, EndpointID: fmt.Sprintf("%064x", last), IP: ip, MAC: net.HardwareAddr(model.MACForIP(ip)),
		VTEP: addr(vtep), NodeID: fmt.Sprintf("%0*x", cluster.NodeIDLen, vtep[len(vtep)-1]), Name: fmt.Sprintf("r%d", last)}
}

func wantSet(ads []cluster.Advert, self string) string {
	var s []string
	for _, a := range ads {
		if a.NodeID != self {
			s = append(s, a.IP.String()+"@"+a.VTEP.String())
		}
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// The engine half of the overlay peer controller, without root: remote
// advertisements reach the driver as whole sets without this host's own
// endpoints, removals follow, a set older than the one applied is dropped,
// the firewall accepts VXLAN exactly from the VTEPs with members and the
// DNS server answers for exactly the remote endpoints, churn
// converges on the last set, and a restarted engine programs the current
// set from a fresh list.
func TestPeerControllerEngineHalf(t *testing.T) {
	cl := openTestCluster(t)
	dir := t.TempDir()
	src := peerctltest.NewSource()
	var rp *recordingPeers
	resolver := loopbackDNS(t, dir)
	withFakes := func(o *engine.Options) {
		engine.SetAdverts(o, src)
		o.DNS = resolver
		for i, d := range o.Drivers {
			if d.Type() == "overlay" {
				rp = &recordingPeers{Driver: d.(*enginetest.Driver), last: map[string]string{}}
				o.Drivers[i] = rp
			}
		}
	}
	rt := enginetest.NewRuntime()
	e, fw, _, st := clusterTestEngineWith(t, dir, rt, cl, false, nil, withFakes)
	n := mustNet(t, e, api.NetworkCreate{Name: "ov", Driver: "overlay", IPAM: []model.IPAMConfig{{Subnet: pfx("10.79.0.0/24")}}})
	c := mustRun(t, e, api.ContainerCreate{Name: "c1", Network: "ov"})
	v, err := e.InspectContainer(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var local model.Endpoint
	for _, ev := range v.Endpoints {
		if ev.Endpoint.NetworkID == n.ID {
			local = ev.Endpoint
		}
	}
	self := cluster.Advert{NetworkID: n.ID, EndpointID: local.ID, IP: local.Addr.Addr(), MAC: local.MAC,
		VTEP: addr("127.0.0.1"), NodeID: cl.NodeID(), Name: "c1"}

	eventually := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20s", what)
			}
		}
	}
	programmedIs := func(want string) func() bool {
		return func() bool { got, _ := rp.programmed(n.ID); return got == want }
	}

	// Adds.
	set := []cluster.Advert{self, remoteAd(n.ID, 10, "192.0.2.2"), remoteAd(n.ID, 11, "192.0.2.3")}
	src.Push(set, 10)
	eventually("two remote peers programmed", programmedIs("10.79.0.10@192.0.2.2 10.79.0.11@192.0.2.3"))
	eventually("VXLAN accepted from both members", func() bool {
		return fw.Allows(addr("192.0.2.2"), n.VNI) && fw.Allows(addr("192.0.2.3"), n.VNI)
	})
	if fw.Allows(addr("127.0.0.1"), n.VNI) {
		t.Fatal("the firewall accepts VXLAN from this host's own VTEP")
	}
	// Names follow: the remote endpoints resolve from the local container.
	eventually("remote names resolve", func() bool {
		return lookupA(resolver, c.ID, "r10") == "10.79.0.10" && lookupA(resolver, c.ID, "r11.ov") == "10.79.0.11"
	})

	// Removes: the member 192.0.2.3 has no endpoint left.
	src.Push([]cluster.Advert{self, remoteAd(n.ID, 10, "192.0.2.2")}, 11)
	eventually("the removed peer unprogrammed", programmedIs("10.79.0.10@192.0.2.2"))
	eventually("VXLAN refused from the member without endpoints", func() bool { return !fw.Allows(addr("192.0.2.3"), n.VNI) })
	// (not ours any more: asked upstream, and there is none here)
	eventually("the removed peer's name gone", func() bool {
		got := lookupA(resolver, c.ID, "r11")
		return (got == "SERVFAIL" || got == "NXDOMAIN") && lookupA(resolver, c.ID, "r10") == "10.79.0.10"
	})

	// A set older than the one applied (a lagging watch) is dropped.
	_, before := rp.programmed(n.ID)
	src.Deliver([]cluster.Advert{self, remoteAd(n.ID, 10, "192.0.2.2"), remoteAd(n.ID, 12, "192.0.2.4")}, 5)
	if got, sets := rp.programmed(n.ID); got != "10.79.0.10@192.0.2.2" || sets != before {
		t.Fatalf("a stale set (revision 5 after 11) was programmed: %q (%d sets, %d before)", got, sets, before)
	}

	// Churn: the last set wins.
	rng := rand.New(rand.NewSource(8))
	vteps := []string{"192.0.2.2", "192.0.2.3", "192.0.2.4"}
	rev := int64(11)
	for i := 0; i < 100; i++ {
		set = []cluster.Advert{self}
		for last := byte(20); last < 40; last++ {
			if rng.Intn(2) == 0 {
				set = append(set, remoteAd(n.ID, last, vteps[rng.Intn(len(vteps))]))
			}
		}
		rev++
		src.Push(set, rev)
	}
	eventually("the last of 100 sets programmed", programmedIs(wantSet(set, cl.NodeID())))

	// Restart: the new engine lists the current set and programs it.
	e.Close()
	st.Close()
	e, _, _, _ = clusterTestEngineWith(t, dir, rt, cl, false, nil, withFakes)
	eventually("the current set programmed after restart", programmedIs(wantSet(set, cl.NodeID())))
	_ = e
}

var _ driver.Driver = (*recordingPeers)(nil)

// gatedPeers is an overlay driver whose peer programming can be held
// (netlink that hangs); it records the last set programmed.
type gatedPeers struct {
	*enginetest.Driver
	mu   sync.Mutex
	gate chan struct{}
	held int
	last string
}

func (d *gatedPeers) SetPeers(ctx context.Context, n model.Network, peers []engine.Peer) error {
	d.mu.Lock()
	gate := d.gate
	if gate != nil {
		d.held++
	}
	d.mu.Unlock()
	if gate != nil {
		<-gate
	}
	var s []string
	for _, p := range peers {
		s = append(s, p.IP.String()+"@"+p.VTEP.String())
	}
	sort.Strings(s)
	d.mu.Lock()
	defer d.mu.Unlock()
	if gate != nil {
		d.held--
	}
	d.last = strings.Join(s, " ")
	return nil
}

func (d *gatedPeers) Resync(ctx context.Context) error { return nil }

// A peer programming stuck in the kernel holds up no read and no other
// operation: with the driver's SetPeers hanging for a new advertisement
// set, ps, network ls and inspect answer, containers are run and removed
// (on the same overlay network too), and the set is programmed once the
// kernel answers.
func TestPeerProgrammingDoesNotBlockTheEngine(t *testing.T) {
	cl := openTestCluster(t)
	dir := t.TempDir()
	src := peerctltest.NewSource()
	var gp *gatedPeers
	e, _, _, _ := clusterTestEngineWith(t, dir, enginetest.NewRuntime(), cl, false, nil, func(o *engine.Options) {
		engine.SetAdverts(o, src)
		for i, d := range o.Drivers {
			if d.Type() == "overlay" {
				gp = &gatedPeers{Driver: d.(*enginetest.Driver)}
				o.Drivers[i] = gp
			}
		}
	})
	n := mustNet(t, e, api.NetworkCreate{Name: "ov", Driver: "overlay", IPAM: []model.IPAMConfig{{Subnet: pfx("10.79.0.0/24")}}})
	c1 := mustRun(t, e, api.ContainerCreate{Name: "c1", Network: "ov"})
	waitFor(t, "the watch to listen", func() bool { return src.Watches() > 0 })

	gate := make(chan struct{})
	var open sync.Once
	release := func() { open.Do(func() { close(gate) }) }
	t.Cleanup(release) // a failed check still lets the engine close
	gp.mu.Lock()
	gp.gate = gate
	gp.mu.Unlock()
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		src.Push([]cluster.Advert{remoteAd(n.ID, 10, "192.0.2.2")}, 10)
	}()
	waitFor(t, "a peer programming held in the kernel", func() bool {
		gp.mu.Lock()
		defer gp.mu.Unlock()
		return gp.held > 0
	})
	answers(t, "ps", func() error { _, err := e.ListContainers(bg, true); return err })
	answers(t, "network ls", func() error { _, err := e.ListNetworks(bg); return err })
	answers(t, "network inspect", func() error { _, err := e.InspectNetwork(bg, "ov", false); return err })
	answers(t, "inspect", func() error { _, err := e.InspectContainer(bg, c1.ID); return err })
	answers(t, "run and rm on another network", func() error {
		c, err := e.CreateContainer(bg, api.ContainerCreate{Name: "other", Image: "busybox", Network: "none"})
		if err != nil {
			return err
		}
		return e.RemoveContainer(bg, c.ID, true)
	})
	answers(t, "run and rm on the same overlay network", func() error {
		c, err := e.CreateContainer(bg, api.ContainerCreate{Name: "c2", Image: "busybox", Network: "ov"})
		if err != nil {
			return err
		}
		if err := e.StartContainer(bg, c.ID); err != nil {
			return err
		}
		return e.RemoveContainer(bg, c.ID, true)
	})
	release()
	<-pushed
	waitFor(t, "the held set programmed", func() bool {
		gp.mu.Lock()
		defer gp.mu.Unlock()
		return gp.last == "10.79.0.10@192.0.2.2"
	})
}
