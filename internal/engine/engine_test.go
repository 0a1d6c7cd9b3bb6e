package engine_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/driver/bridge"
	"github.com/vxnet/vxnet/internal/model"
)

var bg = context.Background()

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func mustNet(t *testing.T, e *engine.Engine, req api.NetworkCreate) model.Network {
	t.Helper()
	n, err := e.CreateNetwork(bg, req)
	if err != nil {
		t.Fatalf("create network %s: %v", req.Name, err)
	}
	return n
}

func mustRun(t *testing.T, e *engine.Engine, req api.ContainerCreate) model.Container {
	t.Helper()
	if req.Image == "" {
		req.Image = "busybox"
	}
	if len(req.Cmd) == 0 {
		req.Cmd = []string{"sleep", "1d"}
	}
	c, err := e.CreateContainer(bg, req)
	if err != nil {
		t.Fatalf("create container %s: %v", req.Name, err)
	}
	if err := e.StartContainer(bg, c.ID); err != nil {
		t.Fatalf("start %s: %v", req.Name, err)
	}
	return c
}

func wantErr(t *testing.T, err error, class error, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error %q, got nil", text)
	}
	if !errors.Is(err, class) {
		t.Errorf("error %q: want class %v", err, class)
	}
	if !strings.Contains(err.Error(), text) {
		t.Errorf("error %q: want it to contain %q", err, text)
	}
}

func TestPredefinedNetworks(t *testing.T) {
	env := newTestEngine(t, t.TempDir(), enginetest.NewRuntime())
	e := env.e
	for _, name := range []string{"bridge", "host", "none"} {
		v, err := e.InspectNetwork(bg, name, false)
		if err != nil {
			t.Fatalf("inspect %s: %v", name, err)
		}
		if !v.Network.Predefined {
			t.Errorf("%s not predefined", name)
		}
		wantErr(t, e.RemoveNetwork(bg, name), model.ErrForbidden, "pre-defined network and cannot be removed")
		_, err = e.CreateNetwork(bg, api.NetworkCreate{Name: name})
		wantErr(t, err, model.ErrForbidden, "predefined "+name)
	}
	br, _ := e.InspectNetwork(bg, "bridge", false)
	if br.Network.IPAM[0].Subnet != pfx("172.17.0.0/16") || bridge.BridgeName(br.Network) != "vxnet0" {
		t.Errorf("default bridge = %+v", br.Network)
	}
	names, err := e.PruneNetworks(bg)
	if err != nil || len(names) != 0 {
		t.Errorf("prune removed %v, %v", names, err)
	}
}

func TestNetworkErrors(t *testing.T) {
	env := newTestEngine(t, t.TempDir(), enginetest.NewRuntime())
	e := env.e
	n := mustNet(t, e, api.NetworkCreate{Name: "a", IPAM: []model.IPAMConfig{{Subnet: pfx("10.10.0.0/24")}}})
	if n.IPAM[0].Gateway != addr("10.10.0.1") {
		t.Errorf("gateway = %v", n.IPAM[0].Gateway)
	}
	_, err := e.CreateNetwork(bg, api.NetworkCreate{Name: "a"})
	wantErr(t, err, model.ErrConflict, "network with name a already exists")
	_, err = e.CreateNetwork(bg, api.NetworkCreate{Name: "b", IPAM: []model.IPAMConfig{{Subnet: pfx("10.10.0.128/25")}}})
	wantErr(t, err, model.ErrForbidden, "Pool overlaps with other one on this address space")
	_, err = e.CreateNetwork(bg, api.NetworkCreate{Name: "c", IPAM: []model.IPAMConfig{{Subnet: pfx("10.11.0.0/24"), Gateway: addr("10.12.0.1")}}})
	wantErr(t, err, model.ErrInvalid, "10.12.0.1")
	_, err = e.CreateNetwork(bg, api.NetworkCreate{Name: "c", IPAM: []model.IPAMConfig{{Subnet: pfx("10.11.0.0/24"), IPRange: pfx("10.12.0.0/25")}}})
	wantErr(t, err, model.ErrInvalid, "10.12.0.0/25")
	_, err = e.CreateNetwork(bg, api.NetworkCreate{Name: "d", Driver: "macvlan"})
	wantErr(t, err, model.ErrNotFound, `plugin "macvlan" not found`)
	_, err = e.CreateNetwork(bg, api.NetworkCreate{Name: "d", Driver: "overlay"})
	wantErr(t, err, model.ErrForbidden, "overlay networks need cluster mode")
	_, err = e.CreateNetwork(bg, api.NetworkCreate{Name: "bad\nname"})
	wantErr(t, err, model.ErrInvalid, "invalid network name")
	_, err = e.CreateNetwork(bg, api.NetworkCreate{Name: "a/b"})
	wantErr(t, err, model.ErrInvalid, "invalid network name")
	// Docker accepts names with spaces; the network works, its containers
	// resolve plain names (no NAME.NETWORK form for such a name).
	sp, err := e.CreateNetwork(bg, api.NetworkCreate{Name: "my net", IPAM: []model.IPAMConfig{{Subnet: pfx("10.13.0.0/24")}}})
	if err != nil || sp.Name != "my net" {
		t.Fatalf("network with a space: %+v %v", sp, err)
	}
	if err := e.RemoveNetwork(bg, "my net"); err != nil {
		t.Fatal(err)
	}
	_, err = e.CreateNetwork(bg, api.NetworkCreate{Name: "e", Options: map[string]string{"bad": "x"}})
	wantErr(t, err, model.ErrInvalid, "bad option")
	wantErr(t, e.RemoveNetwork(bg, "nope"), model.ErrNotFound, "network nope not found")

	// A failed create leaves nothing: no record, no reserved pool.
	env.bridge.SetFail(errors.New("kernel says no"))
	_, err = e.CreateNetwork(bg, api.NetworkCreate{Name: "failing", IPAM: []model.IPAMConfig{{Subnet: pfx("10.20.0.0/24")}}})
	if err == nil {
		t.Fatal("create with failing driver succeeded")
	}
	env.bridge.SetFail(nil)
	if _, err := e.InspectNetwork(bg, "failing", false); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("failed network left a record: %v", err)
	}
	mustNet(t, e, api.NetworkCreate{Name: "failing", IPAM: []model.IPAMConfig{{Subnet: pfx("10.20.0.0/24")}}})

	// Default pools skip the default bridge and the host's routes (172.18/16).
	g := mustNet(t, e, api.NetworkCreate{Name: "g"})
	if g.IPAM[0].Subnet != pfx("172.19.0.0/16") {
		t.Errorf("default pool = %v, want 172.19.0.0/16", g.IPAM[0].Subnet)
	}
}

func TestLookupOrder(t *testing.T) {
	env := newTestEngine(t, t.TempDir(), enginetest.NewRuntime())
	e := env.e
	a := mustNet(t, e, api.NetworkCreate{Name: "net1"})
	// A network named like another's ID prefix: exact name wins over prefix.
	b := mustNet(t, e, api.NetworkCreate{Name: a.ID[:6]})
	v, err := e.InspectNetwork(bg, a.ID[:6], false)
	if err != nil || v.Network.ID != b.ID {
		t.Errorf("name lookup got %v, %v", v.Network.Name, err)
	}
	v, err = e.InspectNetwork(bg, a.ID[:10], false)
	if err != nil || v.Network.ID != a.ID {
		t.Errorf("prefix lookup got %v, %v", v.Network.Name, err)
	}
	v, err = e.InspectNetwork(bg, b.ID, false)
	if err != nil || v.Network.ID != b.ID {
		t.Errorf("full ID lookup got %v, %v", v.Network.Name, err)
	}
	// Ambiguous prefix: make IDs collide on the empty-ish prefix of 0 chars is
	// not allowed; use a prefix shared by construction.
	engine.RenameNetworkID(e, a.ID, "abcdef01"+a.ID[8:])
	engine.RenameNetworkID(e, b.ID, "abcdef02"+b.ID[8:])
	_, err = e.InspectNetwork(bg, "abcdef0", false)
	wantErr(t, err, model.ErrInvalid, "multiple IDs found")
}

func TestContainersAndHosts(t *testing.T) {
	env := newTestEngine(t, t.TempDir(), enginetest.NewRuntime())
	e := env.e
	mustNet(t, e, api.NetworkCreate{Name: "front", IPAM: []model.IPAMConfig{{Subnet: pfx("10.1.0.0/24")}}})
	mustNet(t, e, api.NetworkCreate{Name: "back", IPAM: []model.IPAMConfig{{Subnet: pfx("10.2.0.0/24")}}})
	a := mustRun(t, e, api.ContainerCreate{Name: "a", Network: "front", Endpoint: api.EndpointRequest{Aliases: []string{"web"}}})
	b := mustRun(t, e, api.ContainerCreate{Name: "b", Network: "front", Endpoint: api.EndpointRequest{IP: addr("10.1.0.50")}})
	c := mustRun(t, e, api.ContainerCreate{Name: "c", Network: "back"})

	hosts := func(ctr model.Container) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(env.dir, "sandboxes", ctr.ID, "hosts"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// Peers are names in the DNS server, not lines in hosts files.
	if h := hosts(b); strings.Contains(h, "10.1.0.2") || !strings.Contains(h, "10.1.0.50\t"+b.Hostname+" b b.front\n") {
		t.Errorf("b's hosts lists a peer or lacks itself:\n%s", h)
	}
	for name, want := range map[string]string{"a": "10.1.0.2", "web.front": "10.1.0.2", "B": "10.1.0.50", a.ID[:12]: "10.1.0.2"} {
		if got := env.lookup(b, name); got != want {
			t.Errorf("b looks up %s: %s, want %s", name, got, want)
		}
	}
	if rc, _ := os.ReadFile(filepath.Join(env.dir, "sandboxes", a.ID, "resolv.conf")); !strings.Contains(string(rc), "nameserver 127.0.0.11\n") || !strings.Contains(string(rc), "options ndots:0") {
		t.Errorf("a's resolv.conf does not point at the embedded server:\n%s", rc)
	}
	// Rename: the new name resolves, the old one is gone.
	if err := e.RenameContainer(bg, "a", "alpha"); err != nil {
		t.Fatal(err)
	}
	if got, old := env.lookup(b, "alpha"), env.lookup(b, "a"); got != "10.1.0.2" || old != "SERVFAIL" {
		t.Errorf("after rename a -> alpha: alpha = %s, a = %s; want 10.1.0.2 and SERVFAIL", got, old)
	}
	wantErr(t, e.RenameContainer(bg, "alpha", "b"), model.ErrConflict, `The container name "/b" is already in use`)
	wantErr(t, e.RenameContainer(bg, "alpha", "x y"), model.ErrInvalid, "Invalid container name")
	if err := e.RenameContainer(bg, "alpha", "a"); err != nil {
		t.Fatal(err)
	}
	if got := env.lookup(c, "a"); got != "SERVFAIL" { // not c's network; no upstream
		t.Errorf("c looks up a: %s, want SERVFAIL (forwarded, no upstream)", got)
	}
	// Errors.
	_, err := e.CreateContainer(bg, api.ContainerCreate{Name: "a", Image: "busybox", Cmd: []string{"true"}})
	wantErr(t, err, model.ErrConflict, `The container name "/a" is already in use`)
	_, err = e.CreateContainer(bg, api.ContainerCreate{Image: "nginx", Cmd: []string{"true"}})
	wantErr(t, err, model.ErrNotFound, "Unable to find image 'nginx:latest'")
	_, err = e.CreateContainer(bg, api.ContainerCreate{Image: "busybox", Network: "nonet", Cmd: []string{"true"}})
	wantErr(t, err, model.ErrInvalid, "network nonet not found")
	_, err = e.CreateContainer(bg, api.ContainerCreate{Image: "busybox", Network: "front", Endpoint: api.EndpointRequest{IP: addr("10.1.0.50")}})
	wantErr(t, err, model.ErrForbidden, "Address already in use")
	_, err = e.CreateContainer(bg, api.ContainerCreate{Image: "busybox", Network: "front", Endpoint: api.EndpointRequest{IP: addr("10.9.0.5")}})
	wantErr(t, err, model.ErrInvalid, "10.9.0.5")
	_, err = e.CreateContainer(bg, api.ContainerCreate{Image: "busybox", Endpoint: api.EndpointRequest{IP: addr("172.17.0.9")}})
	wantErr(t, err, model.ErrInvalid, "user defined networks only")
	wantErr(t, e.RemoveContainer(bg, "zzz", false), model.ErrNotFound, "No such container: zzz")
	wantErr(t, e.RemoveNetwork(bg, "front"), model.ErrForbidden, "has active endpoints")
	wantErr(t, e.RemoveContainer(bg, "a", false), model.ErrConflict, "container is running")

	// Connect c to front: eth1, and everyone on front sees it.
	if err := e.ConnectNetwork(bg, "front", "c", api.EndpointRequest{}); err != nil {
		t.Fatal(err)
	}
	v, _ := e.InspectContainer(bg, "c")
	if len(v.Endpoints) != 2 || v.Endpoints[1].Endpoint.IfName != "eth1" || v.Endpoints[1].NetworkName != "front" {
		t.Fatalf("c endpoints = %+v", v.Endpoints)
	}
	cFront := v.Endpoints[1].Endpoint.Addr.Addr()
	if got := env.lookup(a, "c"); got != cFront.String() {
		t.Errorf("a looks up c after connect: %s, want %s", got, cFront)
	}
	if h := hosts(c); !strings.Contains(h, cFront.String()+"\t"+c.Hostname+" c c.front\n") {
		t.Errorf("c's hosts lacks its new address:\n%s", h)
	}
	// Only the first network with a gateway gives the default route.
	j0, _ := env.bridge.JoinInfo(v.Endpoints[0].Endpoint.ID)
	j1, _ := env.bridge.JoinInfo(v.Endpoints[1].Endpoint.ID)
	if j1.DefaultRoute || !j0.DefaultRoute {
		t.Errorf("default route assignment wrong: %+v, %+v", j0, j1)
	}
	err = e.ConnectNetwork(bg, "front", "c", api.EndpointRequest{})
	wantErr(t, err, model.ErrForbidden, "already exists in network front")
	if err := e.DisconnectNetwork(bg, "front", "c", false); err != nil {
		t.Fatal(err)
	}
	if got := env.lookup(a, "c"); got != "SERVFAIL" {
		t.Errorf("a looks up c after disconnect: %s, want SERVFAIL (forwarded, no upstream)", got)
	}
	if _, ok := env.bridge.JoinInfo(v.Endpoints[1].Endpoint.ID); ok {
		t.Error("disconnect did not leave the driver")
	}

	// Serial allocation: removing b and adding d does not reuse .50 at once,
	// and the next dynamic address follows the last dynamic one.
	if err := e.RemoveContainer(bg, "b", true); err != nil {
		t.Fatal(err)
	}
	d := mustRun(t, e, api.ContainerCreate{Name: "d", Network: "front"})
	dv, _ := e.InspectContainer(bg, d.ID)
	if got := dv.Endpoints[0].Endpoint.Addr.Addr(); got == addr("10.1.0.50") || got == addr("10.1.0.2") {
		t.Errorf("d got %v, a reused address", got)
	}
	if h := hosts(a); strings.Contains(h, "\tb b.front") {
		t.Errorf("a's hosts still has removed b:\n%s", h)
	}
	// Firewall sees both user bridges and the default one.
	if last, _ := env.fw.Last(); len(last.Networks) != 3 {
		t.Errorf("firewall networks = %d, want 3", len(last.Networks))
	}
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	rt := enginetest.NewRuntime()
	env := newTestEngine(t, dir, rt)
	mustNet(t, env.e, api.NetworkCreate{Name: "n", IPAM: []model.IPAMConfig{{Subnet: pfx("10.3.0.0/24")}}})
	var before []string
	for i := 0; i < 3; i++ {
		c := mustRun(t, env.e, api.ContainerCreate{Name: fmt.Sprintf("c%d", i), Network: "n"})
		v, _ := env.e.InspectContainer(bg, c.ID)
		before = append(before, v.Endpoints[0].Endpoint.Addr.String())
	}
	// Free c1's address: after restart it must not be handed out at once.
	if err := env.e.RemoveContainer(bg, "c1", true); err != nil {
		t.Fatal(err)
	}
	env.e.Close()
	env.st.Close()

	env2 := newTestEngine(t, dir, rt)
	for i, name := range []string{"c0", "c2"} {
		v, err := env2.e.InspectContainer(bg, name)
		if err != nil {
			t.Fatal(err)
		}
		want := before[i*2]
		if got := v.Endpoints[0].Endpoint.Addr.String(); got != want {
			t.Errorf("%s address after restart = %s, want %s", name, got, want)
		}
		if v.Container.State != model.StateRunning {
			t.Errorf("%s state = %s", name, v.Container.State)
		}
	}
	c := mustRun(t, env2.e, api.ContainerCreate{Name: "new", Network: "n"})
	v, _ := env2.e.InspectContainer(bg, c.ID)
	got := v.Endpoints[0].Endpoint.Addr.String()
	for _, b := range before {
		if got == b {
			t.Errorf("new container got used or just-freed address %s", got)
		}
	}
	nets, _ := env2.e.ListNetworks(bg)
	if len(nets) != 4 {
		t.Errorf("networks after restart = %d, want 4 (bridge, host, none, n)", len(nets))
	}
}
