package overlay_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/driver/overlay"
	"github.com/vxnet/vxnet/internal/driver/overlay/overlaytest"
	"github.com/vxnet/vxnet/internal/model"
)

var (
	localVTEP = netip.MustParseAddr("192.0.2.1")
	vtepB     = netip.MustParseAddr("192.0.2.2")
	vtepC     = netip.MustParseAddr("192.0.2.3")
)

func testNet(id string) model.Network {
	return model.Network{ID: strings.Repeat(id, 64/len(id)), Name: "ov-" + id, Driver: overlay.Type, Scope: model.ScopeGlobal, VNI: 4097}
}

// peer is the endpoint with address 10.0.0.last on vtep (MAC 02:42 + IP).
func peer(last byte, vtep netip.Addr) overlay.Peer {
	ip := netip.AddrFrom4([4]byte{10, 0, 0, last})
	return overlay.Peer{IP: ip, MAC: model.MACForIP(ip), VTEP: vtep}
}

// expected is the kernel an exact reconcile leaves for peers (each with a
// MAC of its own): per remote endpoint an FDB entry to its VTEP and a
// permanent neighbour entry, per remote VTEP a replication entry; nothing
// for endpoints on this host.
func expected(peers []overlay.Peer) string {
	var lines []string
	vteps := map[netip.Addr]bool{}
	for _, p := range peers {
		if p.VTEP == localVTEP {
			continue
		}
		vteps[p.VTEP] = true
		lines = append(lines, fmt.Sprintf("fdb %s dst %s", p.MAC, p.VTEP),
			fmt.Sprintf("neigh %s lladdr %s PERMANENT", p.IP, p.MAC))
	}
	for v := range vteps {
		lines = append(lines, "fdb 00:00:00:00:00:00 dst "+v.String())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
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
	k := overlaytest.NewKernel(true)
	n := testNet("a")
	k.Plumb(n.ID)
	c := overlay.NewPeerController(k, localVTEP, nil)
	ctx := context.Background()
	peers := []overlay.Peer{peer(2, vtepB), peer(3, vtepB), peer(4, vtepC), peer(5, localVTEP)}
	if err := c.Set(ctx, n, peers); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel", k.Render(n.ID), `
fdb 00:00:00:00:00:00 dst 192.0.2.2
fdb 00:00:00:00:00:00 dst 192.0.2.3
fdb 02:42:0a:00:00:02 dst 192.0.2.2
fdb 02:42:0a:00:00:03 dst 192.0.2.2
fdb 02:42:0a:00:00:04 dst 192.0.2.3
neigh 10.0.0.2 lladdr 02:42:0a:00:00:02 PERMANENT
neigh 10.0.0.3 lladdr 02:42:0a:00:00:03 PERMANENT
neigh 10.0.0.4 lladdr 02:42:0a:00:00:04 PERMANENT`)
	// Unicast entries are replaced, replication entries appended.
	mustEqual(t, "operations", k.TakeOps(), `
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
	mustEqual(t, "operations of the same set again", k.TakeOps(), "")
}

// Removes: a peer that goes loses its entries, its host's replication
// entry goes with its last endpoint, what br0 learned for its MAC is
// flushed; an endpoint that moved host gets its FDB entry replaced (not
// deleted and added).
func TestPeerControllerRemovesAndMoves(t *testing.T) {
	k := overlaytest.NewKernel(true)
	n := testNet("b")
	k.Plumb(n.ID)
	c := overlay.NewPeerController(k, localVTEP, nil)
	ctx := context.Background()
	if err := c.Set(ctx, n, []overlay.Peer{peer(2, vtepB), peer(3, vtepB), peer(4, vtepC)}); err != nil {
		t.Fatal(err)
	}
	k.TakeOps()
	gone := peer(4, vtepC)
	k.Learn(n.ID, gone.MAC)
	// 10.0.0.4 on host C goes; 10.0.0.3 moves from B to C.
	if err := c.Set(ctx, n, []overlay.Peer{peer(2, vtepB), peer(3, vtepC)}); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel", k.Render(n.ID), `
fdb 00:00:00:00:00:00 dst 192.0.2.2
fdb 00:00:00:00:00:00 dst 192.0.2.3
fdb 02:42:0a:00:00:02 dst 192.0.2.2
fdb 02:42:0a:00:00:03 dst 192.0.2.3
neigh 10.0.0.2 lladdr 02:42:0a:00:00:02 PERMANENT
neigh 10.0.0.3 lladdr 02:42:0a:00:00:03 PERMANENT`)
	mustEqual(t, "operations", k.TakeOps(), `
fdb replace 02:42:0a:00:00:03 dst 192.0.2.3
neigh del 10.0.0.4
fdb del 02:42:0a:00:00:03 dst 192.0.2.2
fdb del 02:42:0a:00:00:04 dst 192.0.2.3
fdb del 02:42:0a:00:00:04 master br0`)

	// The last peer goes: the table is empty again.
	if err := c.Set(ctx, n, nil); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel after the last peer left", k.Render(n.ID), "")
}

// Churn: after every Set of a random peer set (joins, leaves, moves, MAC
// reuse) the kernel holds exactly the desired entries, and Set again does
// nothing.
func TestPeerControllerChurn(t *testing.T) {
	k := overlaytest.NewKernel(true)
	n := testNet("c")
	k.Plumb(n.ID)
	c := overlay.NewPeerController(k, localVTEP, nil)
	ctx := context.Background()
	rng := rand.New(rand.NewSource(8))
	vteps := []netip.Addr{localVTEP, vtepB, vtepC, netip.MustParseAddr("192.0.2.4")}
	for round := 0; round < 200; round++ {
		var peers []overlay.Peer
		for last := byte(2); last < 30; last++ {
			if rng.Intn(3) == 0 {
				peers = append(peers, peer(last, vteps[rng.Intn(len(vteps))]))
			}
		}
		if err := c.Set(ctx, n, peers); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		mustEqual(t, fmt.Sprintf("kernel after round %d", round), k.Render(n.ID), expected(peers))
		k.TakeOps()
		if err := c.Set(ctx, n, peers); err != nil {
			t.Fatal(err)
		}
		if ops := k.TakeOps(); ops != "" {
			t.Fatalf("round %d: the same set again changed the kernel:\n%s", round, ops)
		}
	}
}

// A failed kernel operation: Set keeps going past it, returns it, and the
// next Resync (with no new set) programs what was missing.
func TestPeerControllerFailedOpRetried(t *testing.T) {
	k := overlaytest.NewKernel(true)
	n := testNet("d")
	k.Plumb(n.ID)
	c := overlay.NewPeerController(k, localVTEP, nil)
	ctx := context.Background()
	peers := []overlay.Peer{peer(2, vtepB), peer(3, vtepB)}
	k.FailNext("neigh replace 10.0.0.2", 1)
	err := c.Set(ctx, n, peers)
	if err == nil || !strings.Contains(err.Error(), "replace neighbour 10.0.0.2 -> 02:42:0a:00:00:02: injected") {
		t.Fatalf("Set with a failing neighbour: %v", err)
	}
	// Everything else was programmed.
	mustEqual(t, "kernel after the failure", k.Render(n.ID), `
fdb 00:00:00:00:00:00 dst 192.0.2.2
fdb 02:42:0a:00:00:02 dst 192.0.2.2
fdb 02:42:0a:00:00:03 dst 192.0.2.2
neigh 10.0.0.3 lladdr 02:42:0a:00:00:03 PERMANENT`)
	k.TakeOps()
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "the retry", k.TakeOps(), "neigh replace 10.0.0.2 lladdr 02:42:0a:00:00:02")
	mustEqual(t, "kernel after the retry", k.Render(n.ID), expected(peers))

	// A table that cannot be read is not acted on (no half-table diff),
	// and the set is kept for the next resync.
	k.FailReads(errors.New("injected: dump interrupted"))
	if err := c.Set(ctx, n, []overlay.Peer{peer(2, vtepB)}); err == nil || !strings.Contains(err.Error(), "dump interrupted") {
		t.Fatalf("Set with an unreadable table: %v", err)
	}
	if ops := k.TakeOps(); ops != "" {
		t.Fatalf("changes made on an unreadable table:\n%s", ops)
	}
	k.FailReads(nil)
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel after the resync", k.Render(n.ID), `
fdb 00:00:00:00:00:00 dst 192.0.2.2
fdb 02:42:0a:00:00:02 dst 192.0.2.2
neigh 10.0.0.2 lladdr 02:42:0a:00:00:02 PERMANENT`)
}

// After a restart a new controller finds the kernel as the old one left it,
// with peers that left meanwhile, a neighbour entry that is not ours
// (learned, not permanent) and drift: the first Set makes it exact, only
// touching what differs; a later Resync repairs an entry deleted by hand.
func TestPeerControllerResyncAfterRestart(t *testing.T) {
	k := overlaytest.NewKernel(true)
	n := testNet("e")
	k.Plumb(n.ID)
	ctx := context.Background()
	old := overlay.NewPeerController(k, localVTEP, nil)
	if err := old.Set(ctx, n, []overlay.Peer{peer(2, vtepB), peer(3, vtepC)}); err != nil {
		t.Fatal(err)
	}
	// The daemon dies; meanwhile 10.0.0.3 left and 10.0.0.4 joined on B,
	// and 10.0.0.2's neighbour entry became a dynamic one.
	p2 := peer(2, vtepB)
	k.PutNeigh(n.ID, overlay.KernelNeigh{NeighEntry: overlay.NeighEntry{IP: p2.IP, MAC: p2.MAC}, Permanent: false})
	k.TakeOps()

	c := overlay.NewPeerController(k, localVTEP, nil)
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if ops := k.TakeOps(); ops != "" {
		t.Fatalf("a fresh controller's resync, with no set given, changed the kernel:\n%s", ops)
	}
	peers := []overlay.Peer{peer(2, vtepB), peer(4, vtepB)}
	if err := c.Set(ctx, n, peers); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "operations of the first set after restart", k.TakeOps(), `
fdb replace 02:42:0a:00:00:04 dst 192.0.2.2
neigh replace 10.0.0.2 lladdr 02:42:0a:00:00:02
neigh replace 10.0.0.4 lladdr 02:42:0a:00:00:04
neigh del 10.0.0.3
fdb del 00:00:00:00:00:00 dst 192.0.2.3
fdb del 02:42:0a:00:00:03 dst 192.0.2.3`)

	// Drift: an entry deleted by hand comes back at the next resync.
	k.DropFDB(n.ID, "02:42:0a:00:00:04 dst 192.0.2.2")
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "repair", k.TakeOps(), "fdb replace 02:42:0a:00:00:04 dst 192.0.2.2")
	mustEqual(t, "kernel", k.Render(n.ID), `
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
	k := overlaytest.NewKernel(true)
	n := testNet("f")
	c := overlay.NewPeerController(k, localVTEP, nil)
	ctx := context.Background()
	if err := c.Set(ctx, n, []overlay.Peer{peer(2, vtepB)}); err != nil {
		t.Fatal(err)
	}
	k.Plumb(n.ID)
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel of a network set before its data plane existed", k.Render(n.ID), "")
	if err := c.Set(ctx, n, []overlay.Peer{peer(2, vtepB)}); err != nil {
		t.Fatal(err)
	}
	k.Unplumb(n.ID)
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	k.Plumb(n.ID)
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel of a re-made data plane", k.Render(n.ID), "")
}

// The set last reconciled without error into the same table is not listed
// and diffed again; a different set, a failed reconcile or a re-made data
// plane is; drift under an unchanged set is repaired by Resync.
func TestPeerControllerSameSetNotReread(t *testing.T) {
	k := overlaytest.NewKernel(true)
	n := testNet("g")
	k.Plumb(n.ID)
	c := overlay.NewPeerController(k, localVTEP, nil)
	ctx := context.Background()
	peers := []overlay.Peer{peer(2, vtepB), peer(3, vtepC)}
	set := func(what string, peers []overlay.Peer, wantRead bool) {
		t.Helper()
		before := k.Reads()
		if err := c.Set(ctx, n, peers); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if read := k.Reads() > before; read != wantRead {
			t.Fatalf("%s: table listed = %v, want %v", what, read, wantRead)
		}
		mustEqual(t, what, k.Render(n.ID), expected(peers))
	}
	set("first set", peers, true)
	set("the same set again", []overlay.Peer{peer(2, vtepB), peer(3, vtepC)}, false)
	peers = append(peers, peer(4, vtepB))
	set("a new endpoint", peers, true)

	// Drift under the same set: Set trusts what it programmed, Resync
	// lists and repairs.
	k.DropFDB(n.ID, "02:42:0a:00:00:04 dst 192.0.2.2")
	if err := c.Set(ctx, n, peers); err != nil {
		t.Fatal(err)
	}
	if err := c.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "kernel after the resync", k.Render(n.ID), expected(peers))
	set("the same set after the resync", peers, false)

	// A failed change: the same set is reconciled again.
	k.FailNext("neigh replace 10.0.0.5", 1)
	more := append(append([]overlay.Peer(nil), peers...), peer(5, vtepC))
	if err := c.Set(ctx, n, more); err == nil {
		t.Fatal("Set with a failing neighbour succeeded")
	}
	set("the same set after a failure", more, true)

	// A re-made data plane (empty) is another table.
	k.Unplumb(n.ID)
	k.Plumb(n.ID)
	set("the same set on a re-made data plane", more, true)
}

// render is a State as overlaytest renders the kernel (neighbours shown
// PERMANENT).
func render(s overlay.State) string {
	var lines []string
	for _, e := range s.FDB {
		lines = append(lines, fmt.Sprintf("fdb %s dst %s", e.MAC, e.VTEP))
	}
	for _, e := range s.Neigh {
		lines = append(lines, fmt.Sprintf("neigh %s lladdr %s PERMANENT", e.IP, e.MAC))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// Programmed waits for no programming: while one hangs in the kernel (a
// change held in overlaytest, as a netlink call that does not return) it
// answers with the entries the kernel held after the last completed
// programming, which here had a failed change and a moved MAC, and says
// since when one is in progress. After the held change returns it lists
// the kernel again. The held change is released only after the checks,
// so a Programmed that waited would fail the test instead of hanging.
func TestPeerControllerProgrammedDuringHungProgramming(t *testing.T) {
	k := overlaytest.NewKernel(false)
	n := testNet("h")
	k.Plumb(n.ID)
	c := overlay.NewPeerController(k, localVTEP, nil)
	ctx := context.Background()
	if err := c.Set(ctx, n, []overlay.Peer{peer(2, vtepB), peer(3, vtepB)}); err != nil {
		t.Fatal(err)
	}
	// The last completed programming: 10.0.0.3 moves to C, 10.0.0.4 is
	// added but its neighbour entry fails, 10.0.0.2 goes.
	k.FailNext("neigh replace 10.0.0.4", 1)
	if err := c.Set(ctx, n, []overlay.Peer{peer(3, vtepC), peer(4, vtepC)}); err == nil {
		t.Fatal("Set with a failing neighbour entry succeeded")
	}
	last := k.Render(n.ID)
	if st, err := c.Programmed(ctx, n); err != nil || !st.ProgrammingSince.IsZero() || render(st) != last {
		t.Fatalf("Programmed with no programming in progress: %v, %v\n%s\nwant:\n%s", st.ProgrammingSince, err, render(st), last)
	}

	held, release := k.HoldNext("neigh replace 10.0.0.4")
	t.Cleanup(release)
	set := make(chan error, 1)
	go func() { set <- c.Set(ctx, n, []overlay.Peer{peer(3, vtepC), peer(4, vtepC), peer(5, vtepB)}) }()
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the programming did not reach the held change within 20s")
	}
	got := make(chan overlay.State, 1)
	go func() {
		st, err := c.Programmed(ctx, n)
		if err != nil {
			t.Error(err)
		}
		got <- st
	}()
	var st overlay.State
	select {
	case st = <-got:
	case <-time.After(20 * time.Second):
		release()
		t.Fatal("Programmed waited for the programming held in the kernel")
	}
	if st.ProgrammingSince.IsZero() {
		t.Fatal("Programmed during a held programming does not say one is in progress")
	}
	mustEqual(t, "entries during the held programming (the last completed one's)", render(st), last)

	release()
	if err := <-set; err != nil {
		t.Fatal(err)
	}
	st, err := c.Programmed(ctx, n)
	if err != nil || !st.ProgrammingSince.IsZero() {
		t.Fatalf("Programmed after the programming: %v, %v", st.ProgrammingSince, err)
	}
	mustEqual(t, "entries after the programming", render(st), expected([]overlay.Peer{peer(3, vtepC), peer(4, vtepC), peer(5, vtepB)}))
}
