package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vxnet/vxnet/internal/dns"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/firewall"
	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// fakeDriver records what the engine asked of it and can be told to fail.
type fakeDriver struct {
	typ, scope string
	mu         sync.Mutex
	nets       map[string]bool
	joined     map[string]driver.JoinInfo // endpoint ID -> join
	failCreate error
	failJoin   error
	// onNetwork, when set, runs at the start of every CreateNetwork and
	// Join (where a driver brings the network's devices up).
	onNetwork func(model.Network)
	// joinGate, when set, makes Join wait for it to close (netlink that
	// hangs); joining counts the joins waiting.
	joinGate chan struct{}
	joining  int
}

func newFakeDriver(typ, scope string) *fakeDriver {
	return &fakeDriver{typ: typ, scope: scope, nets: map[string]bool{}, joined: map[string]driver.JoinInfo{}}
}

func (d *fakeDriver) Type() string  { return d.typ }
func (d *fakeDriver) Scope() string { return d.scope }
func (d *fakeDriver) CreateNetwork(ctx context.Context, n model.Network) error {
	if d.onNetwork != nil {
		d.onNetwork(n)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failCreate != nil {
		return d.failCreate
	}
	d.nets[n.ID] = true
	return nil
}
func (d *fakeDriver) DeleteNetwork(ctx context.Context, n model.Network) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.nets, n.ID)
	return nil
}
func (d *fakeDriver) Join(ctx context.Context, n model.Network, ep model.Endpoint, ji driver.JoinInfo) error {
	if d.onNetwork != nil {
		d.onNetwork(n)
	}
	d.mu.Lock()
	if gate := d.joinGate; gate != nil {
		d.joining++
		d.mu.Unlock()
		<-gate
		d.mu.Lock()
		d.joining--
	}
	defer d.mu.Unlock()
	if d.failJoin != nil {
		return d.failJoin
	}
	d.joined[ep.ID] = ji
	return nil
}
func (d *fakeDriver) Leave(ctx context.Context, n model.Network, ep model.Endpoint, sb model.Sandbox) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.joined, ep.ID)
	return nil
}
func (d *fakeDriver) ValidateOptions(opts map[string]string) error {
	if v, ok := opts["bad"]; ok {
		return fmt.Errorf("bad option %q: %w", v, driver.ErrInvalid)
	}
	return nil
}

type fakeRuntime struct {
	mu      sync.Mutex
	created map[string]ContainerSpec
	running map[string]chan int
	// deleteGate, when set, makes Delete wait for it to close (a shim
	// that takes its time); deleting counts the deletes waiting.
	deleteGate chan struct{}
	deleting   int
	// waitGate, when set, holds the next Wait that sees an exit until it
	// closes (the runtime draining that task's output); gatedWaits counts
	// the Waits it held.
	waitGate   chan struct{}
	gatedWaits int
	waiting    int // Waits blocked on a running process
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{created: map[string]ContainerSpec{}, running: map[string]chan int{}}
}

func (r *fakeRuntime) Create(ctx context.Context, s ContainerSpec) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.created[s.ID] = s
	return nil
}
func (r *fakeRuntime) Start(ctx context.Context, id string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running[id] = make(chan int, 1)
	return 42, nil
}
func (r *fakeRuntime) Stop(ctx context.Context, id string, t time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.running[id]; ok {
		ch <- 137
		delete(r.running, id)
	}
	return nil
}

// exit ends the container's running process with code (by itself).
func (r *fakeRuntime) exit(id string, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.running[id]; ok {
		ch <- code
		delete(r.running, id)
	}
}
func (r *fakeRuntime) Delete(ctx context.Context, id string) error {
	r.mu.Lock()
	if gate := r.deleteGate; gate != nil {
		r.deleting++
		r.mu.Unlock()
		<-gate
		r.mu.Lock()
		r.deleting--
	}
	r.mu.Unlock()
	r.Stop(ctx, id, 0)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.created, id)
	return nil
}
func (r *fakeRuntime) State(ctx context.Context, id string) (RuntimeState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.running[id]; ok {
		return RuntimeState{Status: "running", Pid: 42}, nil
	}
	return RuntimeState{Status: "stopped", ExitCode: 137}, nil
}
func (r *fakeRuntime) Wait(ctx context.Context, id string) (int, error) {
	r.mu.Lock()
	ch, ok := r.running[id]
	r.mu.Unlock()
	if !ok {
		return 0, nil
	}
	r.mu.Lock()
	r.waiting++
	r.mu.Unlock()
	select {
	case c := <-ch:
		ch <- c
		r.mu.Lock()
		r.waiting--
		gate := r.waitGate
		if gate != nil {
			r.waitGate = nil
			r.gatedWaits++
		}
		r.mu.Unlock()
		if gate != nil {
			<-gate
		}
		return c, nil
	case <-ctx.Done():
		r.mu.Lock()
		r.waiting--
		r.mu.Unlock()
		return 0, ctx.Err()
	}
}
func (r *fakeRuntime) Exec(ctx context.Context, id string, args, env []string, stdout, stderr io.Writer) (int, error) {
	fmt.Fprintln(stdout, strings.Join(args, " "))
	return 0, nil
}
func (r *fakeRuntime) Logs(ctx context.Context, id string, stdout, stderr io.Writer, follow bool) error {
	return nil
}
func (r *fakeRuntime) List(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id := range r.created {
		ids = append(ids, id)
	}
	return ids, nil
}

type fakeImages struct{}

func (fakeImages) Get(ref string) (ImageInfo, error) {
	if ref == "busybox" || ref == "busybox:latest" {
		return ImageInfo{ID: "sha256:abc", Name: "busybox:latest", Cmd: []string{"sh"}}, nil
	}
	return ImageInfo{}, fmt.Errorf("Unable to find image '%s:latest' locally: %w", ref, model.ErrNotFound)
}
func (fakeImages) List() ([]ImageInfo, error) { return nil, nil }
func (fakeImages) Import(name string, r io.Reader) (ImageInfo, error) {
	return ImageInfo{}, errors.New("not supported")
}

type fakeFirewall struct {
	mu    sync.Mutex
	last  []firewall.Network
	ports []firewall.PortMapping
	vxlan []firewall.VXLANPeer
	// fail makes Apply fail (nft refusing); ctxErr records whether an
	// apply ran with a cancelled context.
	fail   error
	ctxErr error
	// applies counts the calls that reached Apply.
	applies int
}

func (f *fakeFirewall) Apply(ctx context.Context, cfg firewall.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	if err := ctx.Err(); err != nil {
		f.ctxErr = err
	}
	if f.fail != nil {
		return f.fail
	}
	f.last = cfg.Networks
	f.ports = cfg.Ports
	f.vxlan = cfg.VXLANPeers
	return nil
}

// allows says whether the last applied config lets VXLAN of vni in from
// vtep.
func (f *fakeFirewall) allows(vtep netip.Addr, vni uint32) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.vxlan {
		if p.Addr == vtep && p.VNI == vni {
			return true
		}
	}
	return false
}

func (f *fakeFirewall) published() []firewall.PortMapping {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ports
}

type testEnv struct {
	t      *testing.T
	dir    string
	st     *store.Store
	bridge *fakeDriver
	rt     *fakeRuntime
	fw     *fakeFirewall
	dns    *dns.Server
	e      *Engine
}

// newTestEngine builds an engine on fakes; sandboxes use the host network
// driver path so no namespaces are made (the netns package needs root).
func newTestEngine(t *testing.T, dir string, rt *fakeRuntime) *testEnv {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "vxnet.db"))
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{t: t, dir: dir, st: st, bridge: newFakeDriver("bridge", model.ScopeLocal), rt: rt, fw: &fakeFirewall{}}
	// The DNS server's sockets go on loopback (no namespaces here); the
	// tests ask it through Answer.
	env.dns = dns.New(dns.Options{HostResolvConf: filepath.Join(dir, "no-resolv.conf"),
		Listen: func(dns.Sandbox) (net.PacketConn, net.Listener, error) {
			pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				return nil, nil, err
			}
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				pc.Close()
				return nil, nil, err
			}
			return pc, ln, nil
		}})
	t.Cleanup(env.dns.Close)
	e, err := New(Options{
		DataRoot: dir, ExecRoot: filepath.Join(dir, "exec"), Store: st,
		Drivers: []driver.Driver{env.bridge, newFakeDriver("host", model.ScopeLocal), newFakeDriver("null", model.ScopeLocal)},
		IPAM:    LocalIPAM(ipam.NewAllocator()), Runtime: rt, Images: fakeImages{}, Firewall: env.fw, DNS: env.dns,
		HostRoutes: func() ([]netip.Prefix, error) { return []netip.Prefix{netip.MustParsePrefix("172.18.0.0/16")}, nil },
		noNetns:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	env.e = e
	t.Cleanup(func() { e.Close(); st.Close() })
	return env
}

// lookup asks the engine's DNS server for name (A) from container ctr and
// returns the addresses, sorted, or the rcode's name when not NOERROR.
func (env *testEnv) lookup(ctr model.Container, name string) string {
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	m := env.dns.Answer(ctr.ID, q)
	if m == nil {
		return "dropped"
	}
	if m.Rcode != mdns.RcodeSuccess {
		return mdns.RcodeToString[m.Rcode]
	}
	var out []string
	for _, rr := range m.Answer {
		out = append(out, rr.(*mdns.A).A.String())
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
