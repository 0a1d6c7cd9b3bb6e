// Package enginetest builds a real engine.Engine on fakes, so the API
// server and the CLI are tested against the engine's own rules (names,
// references, IPAM, conflicts, lifecycle) without root: a scripted
// runtime, an in-memory image store, a recording firewall and recording
// drivers (bridge, host, null, macvlan) whose option checks are the real
// drivers'. Sandboxes get no namespaces; the local store is bbolt in a
// temporary directory; there is no cluster (overlay networks are refused
// as on a daemon without cluster mode) and no embedded DNS server.
//
// The engine's own tests (package engine_test) build engines with more
// (a cluster, an overlay driver, a DNS server) on the same fakes, which
// can also hold an operation (GateDeletes, GateJoins, GateNextWait) or
// fail one (SetFail) so concurrency and failure paths are tested.
package enginetest

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/driver/bridge"
	"github.com/vxnet/vxnet/internal/driver/macvlan"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/store"
)

// Env is an engine on fakes, closed when the test ends.
type Env struct {
	Engine   *engine.Engine
	Runtime  *Runtime
	Images   *Images
	Firewall *Firewall
	// Drivers are the fake drivers by type.
	Drivers map[string]*Driver
	Dir     string
}

// New starts an engine on fakes in a temporary directory.
func New(t testing.TB) *Env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "vxnet.db"))
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Runtime: NewRuntime(), Images: NewImages(), Firewall: &Firewall{}, Dir: dir, Drivers: map[string]*Driver{
		"bridge":  NewDriver("bridge", bridge.New(bridge.Options{}).ValidateOptions),
		"macvlan": NewDriver("macvlan", macvlan.New(macvlan.Options{}).ValidateOptions),
		"host":    NewDriver("host", nil),
		"null":    NewDriver("null", nil),
	}}
	var drivers []driver.Driver
	for _, typ := range []string{"bridge", "host", "null", "macvlan"} {
		drivers = append(drivers, env.Drivers[typ])
	}
	e, err := engine.New(engine.Options{
		DataRoot: filepath.Join(dir, "data"), ExecRoot: filepath.Join(dir, "exec"), Store: st,
		Drivers: drivers, IPAM: engine.LocalIPAM(ipam.NewAllocator()),
		Runtime: env.Runtime, Images: env.Images, Firewall: env.Firewall,
		// No host routes: the default pools start at 172.17.0.0/16.
		HostRoutes: func() ([]netip.Prefix, error) { return nil, nil },
		NoNetns:    true,
	})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		e.Close()
		st.Close()
		t.Fatal(err)
	}
	env.Engine = e
	t.Cleanup(func() { e.Close(); st.Close() })
	return env
}

// ContainerID resolves a container reference as the engine does.
func (env *Env) ContainerID(t testing.TB, ref string) string {
	t.Helper()
	v, err := env.Engine.InspectContainer(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return v.Container.ID
}

// AddOutput appends to the output of container ref as if it printed s.
func (env *Env) AddOutput(t testing.TB, ref string, stderr bool, s string) {
	t.Helper()
	if err := env.Runtime.AddOutput(env.ContainerID(t, ref), stderr, s); err != nil {
		t.Fatal(err)
	}
}
