package engine_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// waitFor polls cond until it holds; the bound only catches a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// answers runs a read and fails the test if it has not returned while the
// slow operations are still blocked (they stay blocked until the test
// releases them, so any answer at all proves the read did not wait).
func answers(t *testing.T, what string, read func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- read() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s waits for the blocked operations (I/O under the engine lock)", what)
	}
}

// Reads never wait for a slow runtime or a hanging netlink call: with 20
// `rm -f` stuck in the runtime and a `run` stuck joining its network, ps,
// network ls, inspect and info answer, and a container on another network
// can still be created and removed.
func TestReadsDoNotWaitForSlowIO(t *testing.T) {
	rt := enginetest.NewRuntime()
	env := newTestEngine(t, t.TempDir(), rt)
	e := env.e
	mustNet(t, e, api.NetworkCreate{Name: "n", IPAM: []model.IPAMConfig{{Subnet: pfx("10.5.0.0/24")}}})
	var ids []string
	for i := 0; i < 20; i++ {
		ids = append(ids, mustRun(t, e, api.ContainerCreate{Name: fmt.Sprintf("c%d", i), Network: "n"}).ID)
	}

	gate := make(chan struct{})
	rt.GateDeletes(gate)
	var wg sync.WaitGroup
	rmErrs := make(chan error, len(ids))
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rmErrs <- e.RemoveContainer(context.Background(), id, true)
		}()
	}
	waitFor(t, "20 removals blocked in the runtime", func() bool {
		return rt.DeletesHeld() == len(ids)
	})
	joinGate := make(chan struct{})
	env.bridge.GateJoins(joinGate)
	runErr := make(chan error, 1)
	go func() {
		_, err := e.CreateContainer(context.Background(), api.ContainerCreate{Name: "slow", Image: "busybox", Network: "n"})
		runErr <- err
	}()
	waitFor(t, "a run blocked joining its network", func() bool {
		return env.bridge.JoinsHeld() == 1
	})

	answers(t, "ps -a", func() error {
		cs, err := e.ListContainers(bg, true)
		if err == nil && len(cs) != len(ids) {
			err = fmt.Errorf("ps lists %d containers, want the %d being removed", len(cs), len(ids))
		}
		return err
	})
	answers(t, "network ls", func() error { _, err := e.ListNetworks(bg); return err })
	answers(t, "network inspect", func() error { _, err := e.InspectNetwork(bg, "n", false); return err })
	answers(t, "inspect", func() error { _, err := e.InspectContainer(bg, ids[0]); return err })
	answers(t, "info", func() error { _, err := e.Info(bg); return err })
	// The name of the run in flight is reserved; the network it joins
	// cannot go.
	_, err := e.CreateContainer(bg, api.ContainerCreate{Name: "slow", Image: "busybox", Cmd: []string{"true"}, Network: "none"})
	wantErr(t, err, model.ErrConflict, `The container name "/slow" is already in use`)
	wantErr(t, e.RemoveNetwork(bg, "n"), model.ErrForbidden, "has active endpoints")
	// A second rm of a container being removed waits for the first, then
	// finds it gone; meanwhile other work goes on.
	answers(t, "run on another network", func() error {
		c, err := e.CreateContainer(bg, api.ContainerCreate{Name: "other", Image: "busybox", Network: "none"})
		if err != nil {
			return err
		}
		rt.GateDeletes(nil) // this one's removal is not the slow kind
		err = e.RemoveContainer(bg, c.ID, true)
		rt.GateDeletes(gate)
		return err
	})

	close(joinGate)
	if err := <-runErr; err != nil {
		t.Errorf("the blocked run: %v", err)
	}
	close(gate)
	wg.Wait()
	close(rmErrs)
	for err := range rmErrs {
		if err != nil {
			t.Errorf("rm -f: %v", err)
		}
	}
	cs, _ := e.ListContainers(bg, true)
	if len(cs) != 1 || cs[0].Container.Name != "slow" {
		t.Errorf("after the removals: %d containers, want only slow", len(cs))
	}
	v, _ := e.InspectNetwork(bg, "n", false)
	if len(v.Endpoints) != 1 {
		t.Errorf("network n has %d endpoints, want 1", len(v.Endpoints))
	}
}

// The firewall is applied with the engine's context, not the request's: a
// client that hangs up does not cancel it. A failed apply is returned to
// the request that caused it (a network create is undone), shown in
// /info, and retried in the background until it succeeds.
func TestFirewallFailures(t *testing.T) {
	env := newTestEngine(t, t.TempDir(), enginetest.NewRuntime())
	e := env.e
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone
	if _, err := e.CreateNetwork(ctx, api.NetworkCreate{Name: "gone", IPAM: []model.IPAMConfig{{Subnet: pfx("10.6.0.0/24")}}}); err != nil {
		t.Fatalf("create with a cancelled request context: %v", err)
	}
	last, _ := env.fw.Last()
	ctxErr, n := env.fw.CtxErr(), len(last.Networks)
	if ctxErr != nil || n != 2 {
		t.Errorf("firewall applied with a cancelled context (%v) or without the new network (%d networks)", ctxErr, n)
	}

	env.fw.SetFail(errors.New("nft: Operation not permitted"))
	_, err := e.CreateNetwork(bg, api.NetworkCreate{Name: "nofw", IPAM: []model.IPAMConfig{{Subnet: pfx("10.7.0.0/24")}}})
	if err == nil || !strings.Contains(err.Error(), "Operation not permitted") {
		t.Fatalf("create with a failing firewall: err = %v", err)
	}
	if _, err := e.InspectNetwork(bg, "nofw", false); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("network kept after its firewall failed: %v", err)
	}
	in, _ := e.Info(bg)
	if len(in.Warnings) != 1 || !strings.Contains(in.Warnings[0], "Operation not permitted") {
		t.Errorf("info warnings = %q, want the firewall failure", in.Warnings)
	}
	// The subnet was given back: the same create works once nft does.
	env.fw.SetFail(nil)
	waitFor(t, "the background retry to clear the warning", func() bool {
		in, _ := e.Info(bg)
		return len(in.Warnings) == 0
	})
	mustNet(t, e, api.NetworkCreate{Name: "nofw", IPAM: []model.IPAMConfig{{Subnet: pfx("10.7.0.0/24")}}})
}
