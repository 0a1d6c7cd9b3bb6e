package engine_test

import (
	"context"
	"errors"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// failingPeers is an overlay driver whose peer programming fails a number
// of times (netlink refusing), then succeeds; it records each set asked.
type failingPeers struct {
	*enginetest.Driver
	mu    sync.Mutex
	fails int
	sets  [][]engine.Peer
}

func (d *failingPeers) SetPeers(ctx context.Context, n model.Network, peers []engine.Peer) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sets = append(d.sets, append([]engine.Peer(nil), peers...))
	if d.fails > 0 {
		d.fails--
		return errors.New("injected: no buffer space available")
	}
	return nil
}

func (d *failingPeers) Resync(ctx context.Context) error { return nil }

func (d *failingPeers) calls() ([][]engine.Peer, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sets, d.fails
}

// The engine half of the peer controller: a failed programming is shown
// in inspect -v and retried without any new advertisement until it
// succeeds (then the error is gone); this host's own endpoint is never
// handed to the driver as a peer.
func TestPeerProgrammingRetried(t *testing.T) {
	cl := openTestCluster(t)
	dir := t.TempDir()
	var fp *failingPeers
	e, _, _, _ := clusterTestEngineWith(t, dir, enginetest.NewRuntime(), cl, false, nil, func(o *engine.Options) {
		for i, d := range o.Drivers {
			if d.Type() == "overlay" {
				fp = &failingPeers{Driver: d.(*enginetest.Driver), fails: 3}
				o.Drivers[i] = fp
			}
		}
	})
	n := mustNet(t, e, api.NetworkCreate{Name: "ov", Driver: "overlay", IPAM: []model.IPAMConfig{{Subnet: pfx("10.78.0.0/24")}}})
	mustRun(t, e, api.ContainerCreate{Name: "c1", Network: "ov"})

	lastError := func() (string, bool) {
		v, err := e.InspectNetwork(context.Background(), n.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := v.Verbose["LastError"].(string)
		return s, ok
	}
	sawError := false
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s, ok := lastError(); ok {
			sawError = true
			if s != "injected: no buffer space available" {
				t.Fatalf("LastError %q", s)
			}
		}
		sets, fails := fp.calls()
		if fails == 0 && len(sets) >= 4 {
			if _, ok := lastError(); !ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("programming not retried to success: %d sets asked, %d failures left", len(sets), fails)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !sawError {
		t.Log("the failure was retried before inspect -v could see it")
	}
	sets, _ := fp.calls()
	for i, s := range sets {
		if len(s) != 0 {
			t.Fatalf("set %d handed this host's own endpoints to the driver: %+v", i, s)
		}
	}
}
