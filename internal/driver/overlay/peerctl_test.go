package overlay

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

	"github.com/vxnet/vxnet/internal/model"
)

// fakeKernel is a PeerKernel in memory: per network vxlan0's FDB and
// neighbour entries and br0's learned MACs, rendered as `bridge fdb` /
// `ip neigh` text. Operations can be made to fail, and every change is
// logged.
type fakeKernel struct {
	mu     sync.Mutex
	tables map[string]*fakeTable // network ID -> table; absent: no data plane
	// failOps makes the next operations whose log line starts with a key
	// fail (the value counts how many more times).
	failOps map[string]int
	failErr error // Read fails with it while set
	ops     []string
	opens   int
}

type fakeTable struct {
	fdb     map[string]bool // "MAC dst VTEP"
	neigh   map[netip.Addr]KernelNeigh
	learned map[string]net.HardwareAddr
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{tables: map[string]*fakeTable{}, failOps: map[string]int{}}
}

// plumb gives network id a (empty) data plane.
func (k *fakeKernel) plumb(id string) *fakeTable {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := &fakeTable{fdb: map[string]bool{}, neigh: map[netip.Addr]KernelNeigh{}, learned: map[string]net.HardwareAddr{}}
	k.tables[id] = t
	return t
}

func (k *fakeKernel) unplumb(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.tables, id)
}

func (k *fakeKernel) Open(id string) (PeerTable, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.opens++
	t, ok := k.tables[id]
	if !ok {
		return nil, false, nil
	}
	return &fakeHandle{k: k, t: t}, true, nil
}

// takeOps returns the operations logged since the last call.
func (k *fakeKernel) takeOps() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := strings.Join(k.ops, "\n")
	k.ops = nil
	return out
}

func (k *fakeKernel) failNext(prefix string, times int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failOps[prefix] = times
}

// render shows a network's table as text, sorted.
func (k *fakeKernel) render(id string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.tables[id]
	if !ok {
		return "<no data plane>"
	}
	var lines []string
	for e := range t.fdb {
		lines = append(lines, "fdb "+e)
	}
	for _, n := range t.neigh {
		state := "PERMANENT"
		if !n.Permanent {
			state = "REACHABLE"
		}
		lines = append(lines, fmt.Sprintf("neigh %s lladdr %s %s", n.IP, n.MAC, state))
	}
	for _, m := range t.learned {
		lines = append(lines, "learned "+m.String())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// fakeHandle is an open table.
type fakeHandle struct {
	k *fakeKernel
	t *fakeTable
}

func (h *fakeHandle) Close() {}

// op logs a change and says whether it is to fail.
func (h *fakeHandle) op(line string) error {
	h.k.ops = append(h.k.ops, line)
	for prefix, n := range h.k.failOps {
		if n > 0 && strings.HasPrefix(line, prefix) {
			h.k.failOps[prefix] = n - 1
			return errors.New("injected: no buffer space available")
		}
	}
	return nil
}

func (h *fakeHandle) Read() (KernelEntries, error) {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if h.k.failErr != nil {
		return KernelEntries{}, h.k.failErr
	}
	var out KernelEntries
	for e := range h.t.fdb {
		var mac, dst string
		fmt.Sscanf(e, "%s dst %s", &mac, &dst)
		m, _ := net.ParseMAC(mac)
		out.FDB = append(out.FDB, FDBEntry{MAC: m, VTEP: netip.MustParseAddr(dst)})
	}
	for _, n := range h.t.neigh {
		out.Neigh = append(out.Neigh, n)
	}
	for _, m := range h.t.learned {
		out.Learned = append(out.Learned, m)
	}
	// In a stable order, so the operations logged are too.
	sort.Slice(out.FDB, func(i, j int) bool { return fdbKey(out.FDB[i]) < fdbKey(out.FDB[j]) })
	sort.Slice(out.Neigh, func(i, j int) bool { return out.Neigh[i].IP.Less(out.Neigh[j].IP) })
	sort.Slice(out.Learned, func(i, j int) bool { return out.Learned[i].String() < out.Learned[j].String() })
	return out, nil
}

func fdbKey(e FDBEntry) string { return e.MAC.String() + " dst " + e.VTEP.String() }

func (h *fakeHandle) ReplaceFDB(e FDBEntry) error {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if err := h.op("fdb replace " + fdbKey(e)); err != nil {
		return err
	}
	// Replace: one entry per MAC.
	for k := range h.t.fdb {
		if strings.HasPrefix(k, e.MAC.String()+" ") {
			delete(h.t.fdb, k)
		}
	}
	h.t.fdb[fdbKey(e)] = true
	return nil
}

func (h *fakeHandle) AppendFDB(e FDBEntry) error {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if err := h.op("fdb append " + fdbKey(e)); err != nil {
		return err
	}
	h.t.fdb[fdbKey(e)] = true
	return nil
}

func (h *fakeHandle) DeleteFDB(e FDBEntry) error {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if err := h.op("fdb del " + fdbKey(e)); err != nil {
		return err
	}
	delete(h.t.fdb, fdbKey(e))
	return nil
}

func (h *fakeHandle) SetNeigh(e NeighEntry) error {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if err := h.op(fmt.Sprintf("neigh replace %s lladdr %s", e.IP, e.MAC)); err != nil {
		return err
	}
	h.t.neigh[e.IP] = KernelNeigh{NeighEntry: e, Permanent: true}
	return nil
}

func (h *fakeHandle) DeleteNeigh(e NeighEntry) error {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if err := h.op("neigh del " + e.IP.String()); err != nil {
		return err
	}
	delete(h.t.neigh, e.IP)
	return nil
}

func (h *fakeHandle) FlushLearned(mac net.HardwareAddr) error {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if err := h.op("fdb del " + mac.String() + " master br0"); err != nil {
		return err
	}
	delete(h.t.learned, mac.String())
	return nil
}

var (
	localVTEP = netip.MustParseAddr("192.0.2.1")
	vtepB     = netip.MustParseAddr("192.0.2.2")
	vtepC     = netip.MustParseAddr("192.0.2.3")
)

func testNet(id string) model.Network {
	return model.Network{ID: strings.Repeat(id, 64/len(id)), Name: "ov-" + id, Driver: Type, Scope: model.ScopeGlobal, VNI: 4097}
}

// peer is the endpoint with address 10.0.0.last on vtep (MAC 02:42 + IP).
func peer(last byte, vtep netip.Addr) Peer {
	ip := netip.AddrFrom4([4]byte{10, 0, 0, last})
	return Peer{IP: ip, MAC: model.MACForIP(ip), VTEP: vtep}
}

func mustEqual(t *testing.T, what, got, want string) {
	t.Helper()
	got, want = strings.TrimSpace(got), strings.TrimSpace(want)
	if got != want {
		t.Fatalf("%s:\n got:\n%s\nwant:\n%s", what, got, want)
	}
}

// Adds: two remote endpoints on one host and one on another give an entry
// per MAC, a neighbour per IP and a replication entry per VTEP; local peers
// get nothing. The same set again changes nothing.
func TestPeerControllerAdds(t *testing.T) {
	k := newFakeKernel()
	n := testNet("a")
	k.plumb(n.ID)
	c := NewPeerController(k, localVTEP, nil)
	ctx := context.Background()
	peers := []Peer{peer(2, vtepB), peer(3, vtepB), peer(4, vtepC), peer(5, localVTEP)}
	if err := c.Set(ctx, n, peers); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel", k.render(n.ID), `
fdb 00:00:00:00:00:00 dst 192.0.2.2
fdb 00:00:00:00:00:00 dst 192.0.2.3
fdb 02:42:0a:00:00:02 dst 192.0.2.2
fdb 02:42:0a:00:00:03 dst 192.0.2.2
fdb 02:42:0a:00:00:04 dst 192.0.2.3
neigh 10.0.0.2 lladdr 02:42:0a:00:00:02 PERMANENT
neigh 10.0.0.3 lladdr 02:42:0a:00:00:03 PERMANENT
neigh 10.0.0.4 lladdr 02:42:0a:00:00:04 PERMANENT`)
	// Unicast entries are replaced, replication entries appended.
	mustEqual(t, "operations", k.takeOps(), `
fdb replace 02:42:0a:00:00:02 dst 192.0.2.2
fdb replace 02:42:0a:00:00:03 dst 192.0.2.2
fdb replace 02:42:0a:00:00:04 dst 192.0.2.3
fdb append 00:00:00:00:00:00 dst 192.0.2.2
fdb append 00:00:00:00:00:00 dst 192.0.2.3
neigh replace 10.0.0.2 lladdr 02:42:0a:00:00:02
neigh replace 10.0.0.3 lladdr 02:42:0a:00:00:03
neigh replace 10.0.0.4 lladdr 02:42:0a:00:00:04`)
	if err := c.Set(ctx, n, peers); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "operations of the same set again", k.takeOps(), "")
}

// Removes: a peer that goes loses its entries, its host's replication
// entry goes with its last endpoint, what br0 learned for its MAC is
// flushed; an endpoint that moved host gets its FDB entry replaced (not
// deleted and added).
func TestPeerControllerRemovesAndMoves(t *testing.T) {
	k := newFakeKernel()
	n := testNet("b")
	tab := k.plumb(n.ID)
	c := NewPeerController(k, localVTEP, nil)
	ctx := context.Background()
	if err := c.Set(ctx, n, []Peer{peer(2, vtepB), peer(3, vtepB), peer(4, vtepC)}); err != nil {
		t.Fatal(err)
	}
	k.takeOps()
	gone := peer(4, vtepC)
	k.mu.Lock()
	tab.learned[gone.MAC.String()] = gone.MAC
	k.mu.Unlock()
	// 10.0.0.4 on host C goes; 10.0.0.3 moves from B to C.
	if err := c.Set(ctx, n, []Peer{peer(2, vtepB), peer(3, vtepC)}); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel", k.render(n.ID), `
fdb 00:00:00:00:00:00 dst 192.0.2.2
fdb 00:00:00:00:00:00 dst 192.0.2.3
fdb 02:42:0a:00:00:02 dst 192.0.2.2
fdb 02:42:0a:00:00:03 dst 192.0.2.3
neigh 10.0.0.2 lladdr 02:42:0a:00:00:02 PERMANENT
neigh 10.0.0.3 lladdr 02:42:0a:00:00:03 PERMANENT`)
	mustEqual(t, "operations", k.takeOps(), `
fdb replace 02:42:0a:00:00:03 dst 192.0.2.3
neigh del 10.0.0.4
fdb del 02:42:0a:00:00:03 dst 192.0.2.2
fdb del 02:42:0a:00:00:04 dst 192.0.2.3
fdb del 02:42:0a:00:00:04 master br0`)

	// The last peer goes: the table is empty again.
	if err := c.Set(ctx, n, nil); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel after the last peer left", k.render(n.ID), "")
}

// Churn: after every Set of a random peer set (joins, leaves, moves, MAC
// reuse) the kernel holds exactly the desired entries, and Set again does
// nothing.
func TestPeerControllerChurn(t *testing.T) {
	k := newFakeKernel()
	n := testNet("c")
	k.plumb(n.ID)
	c := NewPeerController(k, localVTEP, nil)
	ctx := context.Background()
	rng := rand.New(rand.NewSource(8))
	vteps := []netip.Addr{localVTEP, vtepB, vtepC, netip.MustParseAddr("192.0.2.4")}
	for round := 0; round < 200; round++ {
		var peers []Peer
		for last := byte(2); last < 30; last++ {
			if rng.Intn(3) == 0 {
				peers = append(peers, peer(last, vteps[rng.Intn(len(vteps))]))
			}
		}
		if err := c.Set(ctx, n, peers); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		got, err := c.Programmed(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if want := desiredState(localVTEP, peers); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d:\n kernel %v\n want   %v", round, got, want)
		}
		k.takeOps()
		if err := c.Set(ctx, n, peers); err != nil {
			t.Fatal(err)
		}
		if ops := k.takeOps(); ops != "" {
			t.Fatalf("round %d: the same set again changed the kernel:\n%s", round, ops)
		}
	}
}

// A failed kernel operation: Set keeps going past it, returns it, and the
// next Resync (with no new set) programs what was missing.
func TestPeerControllerFailedOpRetried(t *testing.T) {
	k := newFakeKernel()
	n := testNet("d")
	k.plumb(n.ID)
	c := NewPeerController(k, localVTEP, nil)
	ctx := context.Background()
	peers := []Peer{peer(2, vtepB), peer(3, vtepB)}
	k.failNext("neigh replace 10.0.0.2", 1)
	err := c.Set(ctx, n, peers)
	if err == nil || !strings.Contains(err.Error(), "replace neighbour 10.0.0.2 -> 02:42:0a:00:00:02: injected") {
		t.Fatalf("Set with a failing neighbour: %v", err)
	}
	// Everything else was programmed.
	mustEqual(t, "kernel after the failure", k.render(n.ID), `
fdb 00:00:00:00:00:00 dst 192.0.2.2
fdb 02:42:0a:00:00:02 dst 192.0.2.2
fdb 02:42:0a:00:00:03 dst 192.0.2.2
neigh 10.0.0.3 lladdr 02:42:0a:00:00:03 PERMANENT`)
	k.takeOps()
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "the retry", k.takeOps(), "neigh replace 10.0.0.2 lladdr 02:42:0a:00:00:02")
	got, _ := c.Programmed(ctx, n)
	if want := desiredState(localVTEP, peers); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after resync: %v, want %v", got, want)
	}

	// A table that cannot be read is not acted on (no half-table diff),
	// and the set is kept for the next resync.
	k.mu.Lock()
	k.failErr = errors.New("injected: dump interrupted")
	k.mu.Unlock()
	if err := c.Set(ctx, n, []Peer{peer(2, vtepB)}); err == nil || !strings.Contains(err.Error(), "dump interrupted") {
		t.Fatalf("Set with an unreadable table: %v", err)
	}
	if ops := k.takeOps(); ops != "" {
		t.Fatalf("changes made on an unreadable table:\n%s", ops)
	}
	k.mu.Lock()
	k.failErr = nil
	k.mu.Unlock()
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel after the resync", k.render(n.ID), `
fdb 00:00:00:00:00:00 dst 192.0.2.2
fdb 02:42:0a:00:00:02 dst 192.0.2.2
neigh 10.0.0.2 lladdr 02:42:0a:00:00:02 PERMANENT`)
}

// After a restart a new controller finds the kernel as the old one left it,
// with peers that left meanwhile, a neighbour entry that is not ours
// (learned, not permanent) and drift: the first Set makes it exact, only
// touching what differs; a later Resync repairs an entry deleted by hand.
func TestPeerControllerResyncAfterRestart(t *testing.T) {
	k := newFakeKernel()
	n := testNet("e")
	tab := k.plumb(n.ID)
	ctx := context.Background()
	old := NewPeerController(k, localVTEP, nil)
	if err := old.Set(ctx, n, []Peer{peer(2, vtepB), peer(3, vtepC)}); err != nil {
		t.Fatal(err)
	}
	// The daemon dies; meanwhile 10.0.0.3 left and 10.0.0.4 joined on B,
	// and 10.0.0.2's neighbour entry became a dynamic one.
	k.mu.Lock()
	p2 := peer(2, vtepB)
	tab.neigh[p2.IP] = KernelNeigh{NeighEntry: NeighEntry{IP: p2.IP, MAC: p2.MAC}, Permanent: false}
	k.mu.Unlock()
	k.takeOps()

	c := NewPeerController(k, localVTEP, nil)
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if ops := k.takeOps(); ops != "" {
		t.Fatalf("a fresh controller's resync, with no set given, changed the kernel:\n%s", ops)
	}
	peers := []Peer{peer(2, vtepB), peer(4, vtepB)}
	if err := c.Set(ctx, n, peers); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "operations of the first set after restart", k.takeOps(), `
fdb replace 02:42:0a:00:00:04 dst 192.0.2.2
neigh replace 10.0.0.2 lladdr 02:42:0a:00:00:02
neigh replace 10.0.0.4 lladdr 02:42:0a:00:00:04
neigh del 10.0.0.3
fdb del 00:00:00:00:00:00 dst 192.0.2.3
fdb del 02:42:0a:00:00:03 dst 192.0.2.3`)

	// Drift: an entry deleted by hand comes back at the next resync.
	k.mu.Lock()
	delete(tab.fdb, "02:42:0a:00:00:04 dst 192.0.2.2")
	k.mu.Unlock()
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "repair", k.takeOps(), "fdb replace 02:42:0a:00:00:04 dst 192.0.2.2")
	mustEqual(t, "kernel", k.render(n.ID), `
fdb 00:00:00:00:00:00 dst 192.0.2.2
fdb 02:42:0a:00:00:02 dst 192.0.2.2
fdb 02:42:0a:00:00:04 dst 192.0.2.2
neigh 10.0.0.2 lladdr 02:42:0a:00:00:02 PERMANENT
neigh 10.0.0.4 lladdr 02:42:0a:00:00:04 PERMANENT`)
}

// Without a local data plane nothing is remembered; a data plane that goes
// is forgotten at the next resync and a new one is not programmed from a
// stale set.
func TestPeerControllerNoDataPlane(t *testing.T) {
	k := newFakeKernel()
	n := testNet("f")
	c := NewPeerController(k, localVTEP, nil)
	ctx := context.Background()
	if err := c.Set(ctx, n, []Peer{peer(2, vtepB)}); err != nil {
		t.Fatal(err)
	}
	k.plumb(n.ID)
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel of a network set before its data plane existed", k.render(n.ID), "")
	if err := c.Set(ctx, n, []Peer{peer(2, vtepB)}); err != nil {
		t.Fatal(err)
	}
	k.unplumb(n.ID)
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	k.plumb(n.ID)
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel of a re-made data plane", k.render(n.ID), "")
}
