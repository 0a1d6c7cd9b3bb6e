package engine_test

import (
	"errors"
	"testing"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
	"github.com/vxnet/vxnet/internal/engine/peerctl/peerctltest"
	"github.com/vxnet/vxnet/internal/model"
)

// The end of a network's peer watch when its last local endpoint goes,
// against an attach to the network being reserved, with each interleaving
// forced by holding the attach's driver join:
//   - reserved before the last endpoint goes: the watch is kept while the
//     attach is in flight and after it joins;
//   - reserved after: the watch ends, and the attach watches again once it
//     has joined;
//   - reserved before and then failing: the watch ends with the attach
//     (no local endpoint is left to watch for).
func TestPeerWatchEndsAgainstAttach(t *testing.T) {
	cl := openTestCluster(t)
	src := peerctltest.NewSource()
	e, _, ov, _ := clusterTestEngineWith(t, t.TempDir(), enginetest.NewRuntime(), cl, false, nil, func(o *engine.Options) {
		engine.SetAdverts(o, src)
	})
	n := mustNet(t, e, api.NetworkCreate{Name: "ov", Driver: "overlay", IPAM: []model.IPAMConfig{{Subnet: pfx("10.78.0.0/24")}}})
	watched := func() bool { return engine.PeerWatched(e, n.ID) }
	rm := func(c model.Container) {
		t.Helper()
		if err := e.RemoveContainer(bg, c.ID, true); err != nil {
			t.Fatalf("rm %s: %v", c.Name, err)
		}
	}
	// hold starts creating a container on ov with its join held, and
	// returns once the join waits; release lets it go and waits for the
	// create's result.
	hold := func(name string) (release func() (model.Container, error)) {
		t.Helper()
		gate := make(chan struct{})
		ov.GateJoins(gate)
		type result struct {
			c   model.Container
			err error
		}
		done := make(chan result, 1)
		go func() {
			c, err := e.CreateContainer(bg, api.ContainerCreate{Name: name, Image: "busybox", Cmd: []string{"sleep", "1d"}, Network: "ov"})
			done <- result{c, err}
		}()
		waitFor(t, name+"'s join held", func() bool { return ov.JoinsHeld() == 1 })
		released := false
		t.Cleanup(func() {
			if !released {
				close(gate)
			}
		})
		return func() (model.Container, error) {
			released = true
			ov.GateJoins(nil)
			close(gate)
			r := <-done
			return r.c, r.err
		}
	}

	// Reserved before the last endpoint goes.
	c1 := mustRun(t, e, api.ContainerCreate{Name: "c1", Network: "ov"})
	if !watched() {
		t.Fatal("not watched with a local endpoint")
	}
	release := hold("c2")
	rm(c1)
	if !watched() {
		t.Fatal("the watch ended while an attach to the network was in flight")
	}
	c2, err := release()
	if err != nil {
		t.Fatal(err)
	}
	if !watched() {
		t.Fatal("not watched after the attach in flight joined")
	}
	rm(c2)
	if watched() {
		t.Fatal("still watched after the last local endpoint went")
	}

	// Reserved after.
	release = hold("c3")
	if watched() {
		t.Fatal("watched before the attach joined")
	}
	c3, err := release()
	if err != nil {
		t.Fatal(err)
	}
	if !watched() {
		t.Fatal("not watched after the attach joined")
	}

	// Reserved before, then failing.
	release = hold("c4")
	rm(c3)
	if !watched() {
		t.Fatal("the watch ended while an attach to the network was in flight")
	}
	ov.SetFail(errors.New("injected: join failed"))
	if _, err := release(); err == nil {
		t.Fatal("the create whose join failed succeeded")
	}
	ov.SetFail(nil)
	if watched() {
		t.Fatal("still watched after the only attach in flight failed and no local endpoint is left")
	}
}
