package peerctl_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/driver/overlay"
	"github.com/vxnet/vxnet/internal/driver/overlay/overlaytest"
	"github.com/vxnet/vxnet/internal/engine/peerctl"
	"github.com/vxnet/vxnet/internal/engine/peerctl/peerctltest"
	"github.com/vxnet/vxnet/internal/model"
)

// The engine half of the peer controller against a fake advertisement
// source (sets written by the test, judged by the cluster's own
// FilterAdverts) and a fake kernel (the overlay driver's PeerController on
// the in-memory kernel of overlaytest, read back as `bridge fdb` /
// `ip neigh` lines). No root, no store.

const self = "self"

var selfVTEP = netip.MustParseAddr("192.0.2.1")

type kernel struct {
	k  *overlaytest.Kernel
	pc *overlay.PeerController
}

func (k kernel) SetPeers(ctx context.Context, n model.Network, ads []peerctl.Advert) error {
	var ps []overlay.Peer
	for _, a := range ads {
		ps = append(ps, overlay.Peer{IP: a.IP, IP6: a.IP6, MAC: a.MAC, VTEP: a.VTEP, NodeID: a.NodeID})
	}
	return k.pc.Set(ctx, n, ps)
}

func (k kernel) Programmed(ctx context.Context, n model.Network) (fdb, neigh []string, err error) {
	st, err := k.pc.Programmed(ctx, n)
	for _, f := range st.FDB {
		fdb = append(fdb, f.MAC.String()+"@"+f.VTEP.String())
	}
	for _, x := range st.Neigh {
		neigh = append(neigh, x.IP.String()+"@"+x.MAC.String())
	}
	if err == nil && !st.ProgrammingSince.IsZero() {
		err = &peerctl.InProgress{Since: st.ProgrammingSince}
	}
	return fdb, neigh, err
}

type harness struct {
	t       *testing.T
	n       model.Network
	src     *peerctltest.Source
	k       *overlaytest.Kernel
	pc      *overlay.PeerController // the kernel half
	c       *peerctl.Controller
	mu      sync.Mutex
	saved   map[string][]peerctl.Advert
	saveErr error
	status  cluster.StoreStatus
	notes   int
}

func newHarness(t *testing.T, opts ...func(*peerctl.Config)) *harness {
	h := &harness{t: t,
		n: model.Network{ID: strings.Repeat("a", 64), Name: "ov", Driver: "overlay", Scope: model.ScopeGlobal, VNI: 4097,
			IPAM: []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.80.0.0/24"), Gateway: netip.MustParseAddr("10.80.0.1")}}},
		src: peerctltest.NewFilteringSource(self, map[string]netip.Addr{self: selfVTEP}),
		k:   overlaytest.NewKernel(false), saved: map[string][]peerctl.Advert{},
		status: cluster.StoreStatus{Reachable: true, LastContact: time.Now()},
	}
	for i := 2; i <= 5; i++ {
		h.src.AddNode(fmt.Sprintf("node%d", i), netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	h.k.Plumb(h.n.ID)
	h.pc = overlay.NewPeerController(h.k, selfVTEP, nil)
	kern := kernel{k: h.k, pc: h.pc}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := peerctl.Config{
		NodeID: self,
		Source: func() peerctl.Source { return h.src },
		Kernel: func(model.Network) (peerctl.Kernel, bool) { return kern, true },
		Network: func(id string) (model.Network, bool) {
			return h.n, id == h.n.ID
		},
		Save: func(netID string, ads []peerctl.Advert) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.saveErr != nil {
				return h.saveErr
			}
			h.saved[netID] = ads
			return nil
		},
		Changed: func(string) { h.mu.Lock(); h.notes++; h.mu.Unlock() },
		Status: func() cluster.StoreStatus {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.status
		},
		RetryAfter: 20 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.c = peerctl.New(ctx, cfg)
	t.Cleanup(func() { cancel(); h.c.Close() })
	return h
}

// watch starts the network's watch and waits until it listens.
func (h *harness) watch() {
	before := h.src.Watches()
	h.c.Watch(h.n)
	h.eventually("the watch listens", func() bool { return h.src.Watches() > before })
}

// inspectWithin runs Inspect while something is held in the kernel and
// fails the test (after release) if it has not answered within 20 s.
func (h *harness) inspectWithin(release func(), held string) peerctl.Inspection {
	h.t.Helper()
	answered := make(chan peerctl.Inspection, 1)
	go func() { answered <- h.c.Inspect(context.Background(), h.n) }()
	select {
	case in := <-answered:
		return in
	case <-time.After(20 * time.Second):
		release()
		h.t.Fatalf("inspect -v waited for %s", held)
		return peerctl.Inspection{}
	}
}

func (h *harness) eventually(what string, ok func() bool) {
	h.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: not within 20s", what)
		}
	}
}

// ad is endpoint 10.80.0.last on node.
func ad(last byte, node string) peerctl.Advert {
	ip := netip.AddrFrom4([4]byte{10, 80, 0, last})
	vtep := selfVTEP
	if node != self {
		vtep = netip.AddrFrom4([4]byte{192, 0, 2, node[len(node)-1] - '0'})
	}
	return peerctl.Advert{NetworkID: strings.Repeat("a", 64), EndpointID: fmt.Sprintf("%064x", last), IP: ip,
		MAC: model.MACForIP(ip), VTEP: vtep, NodeID: node, Name: fmt.Sprintf("c%d", last)}
}

// entries is what the kernel should hold for the remote ones of ads, as
// overlaytest renders it.
func entries(ads ...peerctl.Advert) string {
	var lines []string
	vteps := map[netip.Addr]bool{}
	for _, a := range ads {
		if a.NodeID == self {
			continue
		}
		lines = append(lines, fmt.Sprintf("fdb %s dst %s", a.MAC, a.VTEP),
			fmt.Sprintf("neigh %s lladdr %s PERMANENT", a.IP, a.MAC))
		if !vteps[a.VTEP] {
			vteps[a.VTEP] = true
			lines = append(lines, "fdb 00:00:00:00:00:00 dst "+a.VTEP.String())
		}
	}
	if len(lines) == 0 {
		return ""
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func names(ads []peerctl.Advert) string {
	var s []string
	for _, a := range ads {
		s = append(s, a.Name)
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// TestControllerSets: each case pushes sets in order; the kernel must
// then hold exactly the entries of the wanted remote peers, and the known
// set (names, VXLAN filter) must be exactly the wanted endpoints.
func TestControllerSets(t *testing.T) {
	outside := ad(10, "node2")
	outside.IP = netip.MustParseAddr("10.81.0.10")
	gateway := ad(11, "node2")
	gateway.IP = netip.MustParseAddr("10.80.0.1")
	wrongVTEP := ad(12, "node2")
	wrongVTEP.VTEP = netip.MustParseAddr("192.0.2.99")
	unknownNode := ad(13, "node9")
	unknownNode.VTEP = netip.MustParseAddr("192.0.2.9")
	sameIP := ad(20, "node3") // claims node2's 10.80.0.20
	sameIP.EndpointID = strings.Repeat("e", 64)
	sameIP.MAC = net.HardwareAddr{0x02, 0x42, 0xaa, 0, 0, 20}
	stealsMine := ad(2, "node3") // claims this host's 10.80.0.2
	stealsMine.EndpointID = strings.Repeat("f", 64)
	stealsMine.MAC = net.HardwareAddr{0x02, 0x42, 0xbb, 0, 0, 2}

	type set struct {
		ads []peerctl.Advert
		rev int64
	}
	cases := []struct {
		name   string
		owners map[netip.Addr]cluster.AddrOwner
		sets   []set
		// want is the endpoints that must be programmed (remote) and
		// known (all).
		want []peerctl.Advert
	}{
		{name: "add", sets: []set{{[]peerctl.Advert{ad(2, self), ad(10, "node2"), ad(11, "node3")}, 5}},
			want: []peerctl.Advert{ad(2, self), ad(10, "node2"), ad(11, "node3")}},
		{name: "remove", sets: []set{
			{[]peerctl.Advert{ad(2, self), ad(10, "node2"), ad(11, "node3")}, 5},
			{[]peerctl.Advert{ad(2, self), ad(10, "node2")}, 6}},
			want: []peerctl.Advert{ad(2, self), ad(10, "node2")}},
		{name: "remove all", sets: []set{
			{[]peerctl.Advert{ad(10, "node2"), ad(11, "node3")}, 5},
			{nil, 6}}},
		{name: "move to another host", sets: []set{
			{[]peerctl.Advert{ad(10, "node2")}, 5},
			{[]peerctl.Advert{ad(10, "node4")}, 6}},
			want: []peerctl.Advert{ad(10, "node4")}},
		{name: "older set dropped", sets: []set{
			{[]peerctl.Advert{ad(10, "node2")}, 9},
			{[]peerctl.Advert{ad(10, "node2"), ad(11, "node3")}, 4}},
			want: []peerctl.Advert{ad(10, "node2")}},
		{name: "invalid adverts left out",
			sets: []set{{[]peerctl.Advert{ad(14, "node2"), outside, gateway, wrongVTEP, unknownNode}, 5}},
			want: []peerctl.Advert{ad(14, "node2")}},
		{name: "conflicting claims: the address's owner wins",
			owners: map[netip.Addr]cluster.AddrOwner{
				netip.MustParseAddr("10.80.0.20"): {Node: "node3", Endpoint: sameIP.EndpointID}},
			sets: []set{{[]peerctl.Advert{ad(20, "node2"), sameIP}, 5}},
			want: []peerctl.Advert{sameIP}},
		{name: "conflicting claims: this host's own endpoint wins",
			sets: []set{{[]peerctl.Advert{stealsMine, ad(2, self), ad(10, "node2")}, 5}},
			want: []peerctl.Advert{ad(2, self), ad(10, "node2")}},
		{name: "a lone claim on an address owned by another node",
			owners: map[netip.Addr]cluster.AddrOwner{
				netip.MustParseAddr("10.80.0.10"): {Node: "node3"},
				netip.MustParseAddr("10.80.0.11"): {Node: "node3"}},
			sets: []set{{[]peerctl.Advert{ad(10, "node2"), ad(11, "node3")}, 5}},
			want: []peerctl.Advert{ad(11, "node3")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.src.SetOwners(tc.owners)
			h.watch()
			for _, s := range tc.sets {
				h.src.Push(s.ads, s.rev)
			}
			// push returns once the watch has handled the set: no wait.
			if got, want := h.k.Render(h.n.ID), entries(tc.want...); got != want {
				t.Fatalf("kernel:\n%s\nwant:\n%s", got, want)
			}
			if got, want := names(h.c.Known(h.n.ID)), names(tc.want); got != want {
				t.Fatalf("known endpoints %q, want %q", got, want)
			}
			h.mu.Lock()
			saved := names(h.saved[h.n.ID])
			h.mu.Unlock()
			if saved != names(tc.want) {
				t.Fatalf("local store holds %q, want %q", saved, names(tc.want))
			}
		})
	}
}

// Churn: many sets pushed fast, with resyncs racing the watch; the last
// set wins in the kernel and in the known set.
func TestControllerChurn(t *testing.T) {
	h := newHarness(t)
	h.watch()
	rng := rand.New(rand.NewSource(3))
	var last []peerctl.Advert
	for i := 0; i < 200; i++ {
		last = []peerctl.Advert{ad(2, self)}
		for b := byte(20); b < 60; b++ {
			if rng.Intn(2) == 0 {
				last = append(last, ad(b, fmt.Sprintf("node%d", 2+rng.Intn(4))))
			}
		}
		h.src.Push(last, int64(10+i))
		if i%20 == 0 {
			h.c.KickAll()
		}
	}
	h.c.ResyncAll(context.Background())
	h.eventually("the last set programmed", func() bool { return h.k.Render(h.n.ID) == entries(last...) })
	if got := names(h.c.Known(h.n.ID)); got != names(last) {
		t.Fatalf("known %q, want %q", got, names(last))
	}
}

// A failed kernel operation is shown (inspect's LastError, the row
// MISSING) and retried without any new advertisement until it succeeds.
func TestControllerKernelFailureRetried(t *testing.T) {
	h := newHarness(t)
	h.k.FailNext("neigh replace 10.80.0.10", 3)
	h.watch()
	set := []peerctl.Advert{ad(2, self), ad(10, "node2"), ad(11, "node3")}
	h.src.Push(set, 5)
	in := h.c.Inspect(context.Background(), h.n)
	if in.LastError == nil || !strings.Contains(in.LastError.Error(), "10.80.0.10") {
		t.Fatalf("LastError after a failed neighbour entry: %v", in.LastError)
	}
	if st := status(in, "10.80.0.10"); st != "MISSING" {
		t.Fatalf("the peer whose entry failed is %q, want MISSING", st)
	}
	if st := status(in, "10.80.0.11"); st != "programmed" {
		t.Fatalf("the other peer is %q, want programmed", st)
	}
	h.eventually("retried to success", func() bool {
		in := h.c.Inspect(context.Background(), h.n)
		return in.LastError == nil && status(in, "10.80.0.10") == "programmed"
	})
	if got := h.k.Render(h.n.ID); got != entries(set...) {
		t.Fatalf("kernel after the retries:\n%s\nwant:\n%s", got, entries(set...))
	}
}

func status(in peerctl.Inspection, ip string) string {
	for _, r := range in.Peers {
		if r.IP == ip {
			return r.Status
		}
	}
	return "absent"
}

// While the store is unreachable the data plane stays as it is and every
// remote peer is "unverified since" the last contact; this host's own
// endpoint stays "local", and an entry the kernel lost is MISSING. When
// the store answers again the rows are "programmed".
func TestControllerStoreUnreachable(t *testing.T) {
	h := newHarness(t)
	h.watch()
	set := []peerctl.Advert{ad(2, self), ad(10, "node2"), ad(11, "node3")}
	h.src.Push(set, 5)
	last := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	h.mu.Lock()
	h.status = cluster.StoreStatus{Reachable: false, LastContact: last, LastError: "context deadline exceeded"}
	h.mu.Unlock()
	h.src.SetDown(true)
	// Resyncs fail to list: nothing is removed.
	h.c.ResyncAll(context.Background())
	h.k.DropFDB(h.n.ID, fmt.Sprintf("%s dst 192.0.2.3", ad(11, "node3").MAC))
	in := h.c.Inspect(context.Background(), h.n)
	want := map[string]string{"10.80.0.2": "local", "10.80.0.10": "unverified since 2026-11-30T12:00:00Z", "10.80.0.11": "MISSING"}
	for ip, w := range want {
		if got := status(in, ip); got != w {
			t.Errorf("%s: %q, want %q", ip, got, w)
		}
	}
	if !strings.Contains(in.StoreUnreachable, "2026-11-30") {
		t.Errorf("StoreUnreachable %q does not say since when", in.StoreUnreachable)
	}
	if got := names(h.c.Known(h.n.ID)); got != names(set) {
		t.Errorf("known set changed while the store was away: %q", got)
	}
	// Back: the next periodic resync (the engine half's ResyncAll, then
	// the kernel half's Resync, which repairs drift under an unchanged
	// set) repairs the lost entry and the rows verify.
	h.mu.Lock()
	h.status = cluster.StoreStatus{Reachable: true, LastContact: time.Now()}
	h.mu.Unlock()
	h.src.SetDown(false)
	h.c.ResyncAll(context.Background())
	if err := h.pc.Resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	in = h.c.Inspect(context.Background(), h.n)
	for _, ip := range []string{"10.80.0.10", "10.80.0.11"} {
		if got := status(in, ip); got != "programmed" {
			t.Errorf("%s after the store came back: %q", ip, got)
		}
	}
	if in.StoreUnreachable != "" {
		t.Errorf("StoreUnreachable %q with the store back", in.StoreUnreachable)
	}
}

// The set kept from the last run is known before the watch delivers (a
// restart during a store outage keeps names and the VXLAN filter);
// Unwatch stops programming; Forget drops the set.
func TestControllerRestoreUnwatchForget(t *testing.T) {
	h := newHarness(t)
	old := []peerctl.Advert{ad(2, self), ad(10, "node2")}
	h.c.Restore(h.n.ID, old)
	if got := names(h.c.Known(h.n.ID)); got != names(old) {
		t.Fatalf("restored set %q", got)
	}
	h.src.SetDown(true)
	h.watch()
	if got := names(h.c.Known(h.n.ID)); got != names(old) || !h.c.Watched(h.n.ID) {
		t.Fatalf("restored set lost by a watch that has not delivered: %q", got)
	}
	cur := []peerctl.Advert{ad(2, self), ad(11, "node3")}
	h.src.Push(cur, 7)
	if got := names(h.c.Known(h.n.ID)); got != names(cur) {
		t.Fatalf("known %q after the watch delivered, want %q", got, names(cur))
	}
	h.c.Unwatch(h.n.ID)
	if h.c.Watched(h.n.ID) {
		t.Fatal("still watched after Unwatch")
	}
	h.src.Push([]peerctl.Advert{ad(2, self), ad(11, "node3"), ad(12, "node4")}, 8)
	if got := h.k.Render(h.n.ID); got != entries(cur...) {
		t.Fatalf("an unwatched network was programmed:\n%s", got)
	}
	if got := names(h.c.Known(h.n.ID)); got != names(cur) {
		t.Fatalf("known %q after Unwatch, want the last set %q", got, names(cur))
	}
	h.c.Forget(h.n.ID)
	if got := h.c.Known(h.n.ID); len(got) != 0 {
		t.Fatalf("known %v after Forget", got)
	}
}

// A failed save to the local store is retried with the next set: the set
// still reaches the kernel, and the store catches up once it works.
func TestControllerSaveFailure(t *testing.T) {
	h := newHarness(t)
	h.mu.Lock()
	h.saveErr = errors.New("injected: disk full")
	h.mu.Unlock()
	h.watch()
	set := []peerctl.Advert{ad(10, "node2")}
	h.src.Push(set, 5)
	if got := h.k.Render(h.n.ID); got != entries(set...) {
		t.Fatalf("kernel:\n%s", got)
	}
	h.mu.Lock()
	h.saveErr = nil
	h.mu.Unlock()
	h.c.ResyncAll(context.Background())
	h.mu.Lock()
	defer h.mu.Unlock()
	if names(h.saved[h.n.ID]) != names(set) {
		t.Fatalf("local store %q after the failure, want %q", names(h.saved[h.n.ID]), names(set))
	}
}

// Readers never wait for a programming: Known answers while the kernel
// (here the owner check) is stuck.
func TestControllerReadsDuringProgramming(t *testing.T) {
	h := newHarness(t)
	h.watch()
	h.src.Push([]peerctl.Advert{ad(10, "node2")}, 5)
	gate := make(chan struct{})
	h.src.SetGate(gate)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.src.Deliver([]peerctl.Advert{ad(11, "node2")}, 6)
	}()
	// Readers answer while the programming waits; the gate opens only
	// after them, so a reader that waited for the programming would hang
	// here (and fail by the test's timeout).
	for i := 0; i < 100; i++ {
		if got := names(h.c.Known(h.n.ID)); got != "c10" {
			t.Fatalf("known %q during a programming", got)
		}
		h.c.Watched(h.n.ID)
		h.c.Inspect(context.Background(), h.n)
	}
	h.src.SetGate(nil)
	close(gate)
	<-done
	if got := names(h.c.Known(h.n.ID)); got != "c11" {
		t.Fatalf("known %q after the programming", got)
	}
}

// inspect -v while a programming hangs in the kernel (a netlink call that
// never returns): Inspect answers at once, from the kernel's state as of
// the last completed programming, says since when one is in progress, and
// shows no kernel error; once the call returns it reads the kernel again.
// The held call is released only after the checks, so an Inspect that
// waited for the programming would fail here instead of hanging.
func TestControllerInspectDuringHungProgramming(t *testing.T) {
	h := newHarness(t)
	h.watch()
	first := []peerctl.Advert{ad(10, "node2")}
	h.src.Push(first, 5)
	if in := h.c.Inspect(context.Background(), h.n); status(in, "10.80.0.10") != "programmed" || in.Programming != "" {
		t.Fatalf("after the first programming: %+v", in)
	}
	next := ad(11, "node3")
	held, release := h.k.HoldNext("fdb replace " + next.MAC.String())
	t.Cleanup(release)
	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		h.src.Push([]peerctl.Advert{ad(10, "node2"), next}, 6)
	}()
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the programming of the second set did not reach the kernel within 20s")
	}
	in := h.inspectWithin(release, "the programming held in the kernel")
	if !strings.HasPrefix(in.Programming, "programming in progress since ") {
		t.Fatalf("Programming during a held programming = %q", in.Programming)
	}
	if in.KernelError != nil {
		t.Fatalf("KernelError during a held programming: %v", in.KernelError)
	}
	// The kernel's entries are the first programming's: the new peer
	// (shown once the controller publishes the set) is not there yet.
	if st := status(in, "10.80.0.10"); st != "programmed" {
		t.Fatalf("the first peer during the held programming is %q, want programmed", st)
	}
	if st := status(in, "10.80.0.11"); st != "MISSING" && st != "absent" {
		t.Fatalf("the new peer during the held programming is %q, want MISSING or absent", st)
	}
	want := []string{ad(10, "node2").MAC.String() + "@192.0.2.2", "00:00:00:00:00:00@192.0.2.2"}
	sort.Strings(want)
	if strings.Join(in.KernelFDB, " ") != strings.Join(want, " ") {
		t.Fatalf("KernelFDB during the held programming = %v, want %v", in.KernelFDB, want)
	}
	release()
	<-delivered
	h.eventually("the second set programmed and inspected", func() bool {
		in := h.c.Inspect(context.Background(), h.n)
		return in.Programming == "" && status(in, "10.80.0.11") == "programmed"
	})
}

// Compare's rows, case by case: what the kernel holds against the desired
// set and the store's health.
func TestCompare(t *testing.T) {
	v4 := ad(10, "node2")
	v6only := ad(11, "node3")
	v6only.IP = netip.Addr{}
	v6only.IP6 = netip.MustParseAddr("fd00:80::11")
	dual := ad(12, "node4")
	dual.IP6 = netip.MustParseAddr("fd00:80::12")
	fdb := func(a peerctl.Advert) string { return a.MAC.String() + "@" + a.VTEP.String() }
	neigh := func(ip netip.Addr, a peerctl.Advert) string { return ip.String() + "@" + a.MAC.String() }
	up := cluster.StoreStatus{Reachable: true}
	down := cluster.StoreStatus{LastContact: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	for _, tc := range []struct {
		name        string
		desired     []peerctl.Advert
		fdb, neigh  []string
		st          cluster.StoreStatus
		want        string // "IP=status" per row, in order
		wantUnknown string // unexpected unicast FDB entries
	}{
		{name: "all programmed", desired: []peerctl.Advert{ad(2, self), v4},
			fdb: []string{fdb(v4), "00:00:00:00:00:00@192.0.2.2"}, neigh: []string{neigh(v4.IP, v4)}, st: up,
			want: "10.80.0.2=local 10.80.0.10=programmed"},
		{name: "neighbour entry missing", desired: []peerctl.Advert{v4}, fdb: []string{fdb(v4)}, st: up,
			want: "10.80.0.10=MISSING"},
		{name: "FDB entry missing", desired: []peerctl.Advert{v4}, neigh: []string{neigh(v4.IP, v4)}, st: up,
			want: "10.80.0.10=MISSING"},
		{name: "IPv6-only peer programmed", desired: []peerctl.Advert{v6only},
			fdb: []string{fdb(v6only)}, neigh: []string{neigh(v6only.IP6, v6only)}, st: up,
			want: "fd00:80::11=programmed"},
		{name: "dual-stack peer without its IPv6 entry", desired: []peerctl.Advert{dual},
			fdb: []string{fdb(dual)}, neigh: []string{neigh(dual.IP, dual)}, st: up,
			want: "10.80.0.12=MISSING"},
		{name: "store unreachable", desired: []peerctl.Advert{ad(2, self), v4, dual},
			fdb: []string{fdb(v4)}, neigh: []string{neigh(v4.IP, v4)}, st: down,
			want: "10.80.0.2=local 10.80.0.10=unverified since 2026-11-30T12:00:00Z 10.80.0.12=MISSING"},
		{name: "an entry no peer wants", desired: []peerctl.Advert{v4},
			fdb: []string{fdb(v4), fdb(dual), "00:00:00:00:00:00@192.0.2.4"}, neigh: []string{neigh(v4.IP, v4)}, st: up,
			want: "10.80.0.10=programmed", wantUnknown: fdb(dual)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := peerctl.Compare(tc.desired, tc.fdb, tc.neigh, self, tc.st)
			var got []string
			for _, r := range in.Peers {
				ip := r.IP
				if ip == "" {
					ip = r.IP6
				}
				got = append(got, ip+"="+r.Status)
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("rows %q, want %q", g, tc.want)
			}
			if g := strings.Join(in.UnexpectedFDB, " "); g != tc.wantUnknown {
				t.Errorf("unexpected FDB %q, want %q", g, tc.wantUnknown)
			}
		})
	}
}

// inspect -v does not hang on a kernel listing that hangs (no programming
// running): it answers after KernelReadTimeout with the peers unverified
// and says why; a second inspect meanwhile waits on the same listing
// instead of starting another (which, not held, would verify the peer);
// once the kernel answers, the rows are verified again.
func TestControllerInspectKernelReadHangs(t *testing.T) {
	h := newHarness(t, func(c *peerctl.Config) { c.KernelReadTimeout = 300 * time.Millisecond })
	h.watch()
	h.src.Push([]peerctl.Advert{ad(10, "node2")}, 5)
	if in := h.c.Inspect(context.Background(), h.n); status(in, "10.80.0.10") != "programmed" {
		t.Fatalf("before the hang: %+v", in)
	}
	held, release := h.k.HoldNext("list")
	t.Cleanup(release)
	for i := 0; i < 2; i++ {
		in := h.inspectWithin(release, "a kernel listing that hangs")
		<-held
		if st := status(in, "10.80.0.10"); !strings.HasPrefix(st, "unverified") {
			t.Errorf("inspect %d during the hung listing: peer %q, want unverified", i, st)
		}
		if in.KernelError == nil || !strings.Contains(in.KernelError.Error(), "in time") {
			t.Errorf("inspect %d during the hung listing: KernelError %v", i, in.KernelError)
		}
	}
	release()
	h.eventually("the peer verified again", func() bool {
		return status(h.c.Inspect(context.Background(), h.n), "10.80.0.10") == "programmed"
	})
}
