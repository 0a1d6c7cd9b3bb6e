package engine_test

import (
	"errors"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
	"github.com/vxnet/vxnet/internal/engine/peerctl/peerctltest"
	"github.com/vxnet/vxnet/internal/model"
)

// TestFirewallUnchangedNotReapplied: a remote endpoint on a member whose
// VTEP is already allowed leaves the firewall as it was and runs no nft; an
// endpoint on a new member does; after a failed apply the same config is
// applied again.
func TestFirewallUnchangedNotReapplied(t *testing.T) {
	cl := openTestCluster(t)
	dir := t.TempDir()
	src := peerctltest.NewSource()
	var rp *recordingPeers
	withFakes := func(o *engine.Options) {
		engine.SetAdverts(o, src)
		for i, d := range o.Drivers {
			if d.Type() == "overlay" {
				rp = &recordingPeers{Driver: d.(*enginetest.Driver), last: map[string]string{}}
				o.Drivers[i] = rp
			}
		}
	}
	e, fw, _, _ := clusterTestEngineWith(t, dir, enginetest.NewRuntime(), cl, false, nil, withFakes)
	applies := func() int {
		return fw.Calls()
	}
	n := mustNet(t, e, api.NetworkCreate{Name: "ov", Driver: "overlay", IPAM: []model.IPAMConfig{{Subnet: pfx("10.79.0.0/24")}}})
	mustRun(t, e, api.ContainerCreate{Name: "c1", Network: "ov"})
	programmed := func(what, want string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if got, _ := rp.programmed(n.ID); got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not programmed within 20s", what)
			}
		}
	}
	set := []cluster.Advert{remoteAd(n.ID, 10, "192.0.2.2")}
	src.Push(set, 10)
	programmed("first remote peer", "10.79.0.10@192.0.2.2")
	if !fw.Allows(addr("192.0.2.2"), n.VNI) {
		t.Fatal("VXLAN not accepted from the first member")
	}
	before := applies()
	set = append(set, remoteAd(n.ID, 11, "192.0.2.2"))
	src.Push(set, 11)
	programmed("second endpoint of the same member", "10.79.0.10@192.0.2.2 10.79.0.11@192.0.2.2")
	if got := applies(); got != before {
		t.Errorf("an unchanged firewall was applied %d more times", got-before)
	}
	set = append(set, remoteAd(n.ID, 12, "192.0.2.3"))
	src.Push(set, 12)
	programmed("endpoint of a new member", "10.79.0.10@192.0.2.2 10.79.0.11@192.0.2.2 10.79.0.12@192.0.2.3")
	if applies() == before || !fw.Allows(addr("192.0.2.3"), n.VNI) {
		t.Fatalf("the new member's VTEP was not applied (%d applies)", applies()-before)
	}

	// A failure forgets what the kernel holds: once nft works again, the
	// same config is applied, not skipped as unchanged.
	fw.SetFail(errors.New("nft: Operation not permitted"))
	if _, err := e.CreateNetwork(bg, api.NetworkCreate{Name: "m", IPAM: []model.IPAMConfig{{Subnet: pfx("10.9.0.0/24")}}}); err == nil {
		t.Fatal("network create with a failing nft succeeded")
	}
	fw.SetFail(nil)
	k := applies()
	if err := engine.ApplyFirewall(e); err != nil {
		t.Fatal(err)
	}
	if applies() == k {
		t.Error("the config after a failed apply was skipped as unchanged")
	}
}
