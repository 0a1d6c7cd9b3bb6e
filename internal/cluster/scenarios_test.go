package cluster

// Scenarios run against both an embedded and an external etcd.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
)

// scenarioNetworks: created via a, listed via b with the same ID; deleted via
// b, gone via a.
func scenarioNetworks(t *testing.T, a, b *Cluster) {
	ctx := ctxT(t)
	want := testNet("netscen")
	want.Labels = map[string]string{"k": "v"}
	got, err := a.CreateNetwork(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if got.VNI < MinVNI || got.Scope != model.ScopeGlobal {
		t.Fatalf("created network has VNI %d scope %q", got.VNI, got.Scope)
	}
	list, rev, err := b.ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev == 0 {
		t.Error("list revision is 0")
	}
	var found *model.Network
	for i := range list {
		if list[i].Name == want.Name {
			found = &list[i]
		}
	}
	if found == nil || found.ID != want.ID || found.VNI != got.VNI || found.Labels["k"] != "v" || !found.Created.Equal(want.Created) {
		t.Fatalf("network via the other node: %+v, want %+v", found, got)
	}
	if err := b.DeleteNetwork(ctx, want.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetNetwork(ctx, want.ID); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("get deleted network: %v, want not found", err)
	}
	if err := a.DeleteNetwork(ctx, want.ID); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("delete again: %v, want not found", err)
	}
	// The name and the VNI are free again: asking for the freed VNI
	// succeeds (new networks pick among the lowest free VNIs at random).
	reuse := want
	reuse.VNI = got.VNI
	again, err := a.CreateNetwork(ctx, reuse)
	if err != nil {
		t.Fatalf("re-create after delete with the freed VNI %d: %v", got.VNI, err)
	}
	if again.VNI != got.VNI {
		t.Errorf("re-created network got VNI %d, want the freed %d", again.VNI, got.VNI)
	}
	if err := a.DeleteNetwork(ctx, want.ID); err != nil {
		t.Fatal(err)
	}
}

// scenarioConcurrentName: the same name created at once from two hosts:
// exactly one wins.
func scenarioConcurrentName(t *testing.T, a, b *Cluster) {
	ctx := ctxT(t)
	for round := range 5 {
		name := fmt.Sprintf("race%d", round)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for i, c := range []*Cluster{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := testNet(name)
				n.ID = oid(fmt.Sprintf("id-%s-%d", name, i)) // different IDs, same name
				<-start
				_, errs[i] = c.CreateNetwork(ctx, n)
			}()
		}
		close(start)
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, model.ErrConflict) && strings.Contains(err.Error(), "network with name "+name+" already exists"):
			default:
				t.Fatalf("round %d: unexpected error %v", round, err)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d creations succeeded, want 1 (%v)", round, ok, errs)
		}
		list, _, err := a.ListNetworks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range list {
			if n.Name == name {
				if err := a.DeleteNetwork(ctx, n.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// scenarioVNIs: networks created concurrently from several hosts get
// distinct VNIs.
func scenarioVNIs(t *testing.T, cs ...*Cluster) {
	ctx := ctxT(t)
	const per = 5
	var mu sync.Mutex
	vnis := make(map[uint32]string)
	var wg sync.WaitGroup
	for i, c := range cs {
		for j := range per {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := c.CreateNetwork(ctx, testNet(fmt.Sprintf("vni-%d-%d", i, j)))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if other, dup := vnis[n.VNI]; dup {
					t.Errorf("VNI %d given to %s and %s", n.VNI, other, n.Name)
				}
				vnis[n.VNI] = n.Name
			}()
		}
	}
	wg.Wait()
	if len(vnis) != per*len(cs) {
		t.Fatalf("%d distinct VNIs, want %d", len(vnis), per*len(cs))
	}
	for _, name := range vnis {
		if err := cs[0].DeleteNetwork(ctx, oid("id-"+name)); err != nil {
			t.Fatal(err)
		}
	}
}

// scenarioIPAM: default and user pools, overlap refusal, concurrent
// allocation from every host without duplicates, serial reuse.
func scenarioIPAM(t *testing.T, cs ...*Cluster) {
	ctx := ctxT(t)
	a := cs[0]
	def, err := a.RequestPool(ctx, "ipam-def", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(def) != 1 || def[0].Subnet != netip.MustParsePrefix("10.0.0.0/24") || def[0].Gateway != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("default pool %+v, want 10.0.0.0/24 gw 10.0.0.1", def)
	}
	def2, err := cs[len(cs)-1].RequestPool(ctx, "ipam-def2", []model.IPAMConfig{{}})
	if err != nil {
		t.Fatal(err)
	}
	if def2[0].Subnet != netip.MustParsePrefix("10.0.1.0/24") {
		t.Fatalf("second default pool %v, want 10.0.1.0/24", def2[0].Subnet)
	}
	_, err = cs[len(cs)-1].RequestPool(ctx, "ipam-overlap", []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.0.0.0/16")}})
	if !errors.Is(err, ipam.ErrPoolOverlap) || !strings.HasPrefix(err.Error(), "Pool overlaps with other one on this address space") {
		t.Fatalf("overlapping pool: %v, want Pool overlaps", err)
	}
	if _, err := a.RequestPool(ctx, "ipam-def", nil); !errors.Is(err, ipam.ErrInvalid) {
		t.Fatalf("second pool request for one network: %v, want invalid", err)
	}

	const netID = "ipam-big"
	cfg, err := a.RequestPool(ctx, netID, []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.200.0.0/16")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.RequestPool(ctx, "ipam-clash", cfg); !errors.Is(err, ipam.ErrPoolOverlap) {
		t.Fatalf("same subnet again: %v, want overlap", err)
	}
	const per = 100
	var mu sync.Mutex
	got := make(map[netip.Addr]int)
	var wg sync.WaitGroup
	for i, c := range cs {
		for w := range 2 { // two workers per host, 50 each
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range per / 2 {
					p, err := c.AllocateAddress(ctx, netID, netip.Addr{})
					if err != nil {
						t.Errorf("host %d worker %d: %v", i, w, err)
						return
					}
					if p.Bits() != 16 {
						t.Errorf("allocated %v, want a /16", p)
					}
					mu.Lock()
					got[p.Addr()]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if len(got) != per*len(cs) {
		t.Fatalf("%d distinct addresses, want %d", len(got), per*len(cs))
	}
	for a, n := range got {
		if n != 1 || a == cfg[0].Gateway || !cfg[0].Subnet.Contains(a) {
			t.Fatalf("address %v given %d times (gateway %v)", a, n, cfg[0].Gateway)
		}
	}
	// Serial: a released address is not handed out again at once. The
	// lowest address host a holds, released by another host.
	owners, err := a.AddressOwners(ctx, netID)
	if err != nil {
		t.Fatal(err)
	}
	var first netip.Addr
	for addr, o := range owners {
		if o.Node == a.NodeID() && (!first.IsValid() || addr.Less(first)) {
			first = addr
		}
	}
	if got[first] != 1 {
		t.Fatalf("first address %v of %s was not allocated", first, a.NodeID())
	}
	if err := cs[1%len(cs)].ReleaseAddress(ctx, netID, first); err != nil {
		t.Fatal(err)
	}
	next, err := a.AllocateAddress(ctx, netID, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if next.Addr() == first || got[next.Addr()] != 0 {
		t.Fatalf("after release got %v, want a new address", next)
	}
	// Static: the released address can be taken on purpose; a used one not.
	if p, err := a.AllocateAddress(ctx, netID, first); err != nil || p.Addr() != first {
		t.Fatalf("static %v: %v %v", first, p, err)
	}
	if _, err := a.AllocateAddress(ctx, netID, first); !errors.Is(err, ipam.ErrAddressInUse) {
		t.Fatalf("static in use: %v, want address in use", err)
	}
	if _, err := a.AllocateAddress(ctx, "no-such-net", netip.Addr{}); !errors.Is(err, ipam.ErrNotFound) {
		t.Fatalf("unknown network: %v, want not found", err)
	}
	// A deleted network frees its pool.
	if err := a.ReleasePool(ctx, netID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RequestPool(ctx, "ipam-after", cfg); err != nil {
		t.Fatalf("pool after release: %v", err)
	}
	for _, id := range []string{"ipam-def", "ipam-def2", "ipam-after"} {
		if err := a.ReleasePool(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// DeleteNetwork removes pools too.
	n := testNet("ipam-net")
	if _, err := a.RequestPool(ctx, n.ID, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RequestPool(ctx, "ipam-after2", cfg); err != nil {
		t.Fatalf("pool after network delete: %v", err)
	}
	if err := a.ReleasePool(ctx, "ipam-after2"); err != nil {
		t.Fatal(err)
	}
}

// advertWatcher collects what WatchAdverts reports.
type advertWatcher struct {
	mu    sync.Mutex
	last  []Advert
	calls int
	done  chan error
}

func watchAdverts(t *testing.T, c *Cluster, netID string, fromRev int64) *advertWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &advertWatcher{done: make(chan error, 1)}
	go func() {
		w.done <- c.WatchAdverts(ctx, netID, fromRev, func(as []Advert, _ int64) {
			w.mu.Lock()
			w.last, w.calls = as, w.calls+1
			w.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(10 * time.Second):
			t.Error("advert watch did not stop")
		}
	})
	return w
}

// has reports an error unless the last set is exactly these endpoint IDs.
func (w *advertWatcher) has(eps ...string) func() error {
	return func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		var got []string
		for _, a := range w.last {
			got = append(got, a.EndpointID)
		}
		var want []string
		for _, ep := range eps {
			want = append(want, oid(ep))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("watched adverts %v, want %v", got, eps)
		}
		return nil
	}
}

// owned makes ip an address of endpoint ep held by c in global IPAM (the
// pool of network netID, the /24 around ip, is reserved when missing) and
// returns its advertisement: only the advertisements of a network's
// address holders are watched.
func owned(t *testing.T, c *Cluster, netID, ep, ip string) Advert {
	t.Helper()
	ctx := ctxT(t)
	a := netip.MustParseAddr(ip)
	// An error here is a pool reserved by an earlier call; the
	// allocation below tells.
	c.RequestPool(ctx, netID, []model.IPAMConfig{{Subnet: netip.PrefixFrom(a, 24).Masked()}})
	if _, err := c.AllocateAddressFor(ctx, netID, a, oid(ep)); err != nil {
		t.Fatalf("allocate %s for %s: %v", ip, ep, err)
	}
	return advert(netID, ep, ip)
}

func advert(netID, ep string, ip string) Advert {
	a := netip.MustParseAddr(ip)
	return Advert{NetworkID: netID, EndpointID: oid(ep), IP: a, MAC: model.MACForIP(a)}
}

// scenarioAdverts: a host's adverts are seen by another host's watch, and
// withdrawn ones disappear.
func scenarioAdverts(t *testing.T, a, b *Cluster) {
	ctx := ctxT(t)
	netID := oid("adv-net")
	w := watchAdverts(t, b, netID, 0)
	if err := a.Advertise(ctx, owned(t, a, netID, "ep1", "10.9.0.2")); err != nil {
		t.Fatal(err)
	}
	if err := b.Advertise(ctx, owned(t, b, netID, "ep2", "10.9.0.3")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "watch sees both adverts", w.has("ep1", "ep2"))
	list, rev, err := a.Adverts(ctx, netID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].NodeID != a.NodeID() || list[0].VTEP != a.opts.AdvertiseAddr ||
		list[0].MAC.String() != "02:42:0a:09:00:02" || list[1].NodeID != b.NodeID() {
		t.Fatalf("adverts %+v", list)
	}
	// A watch resuming from that revision sees later changes only.
	w2 := watchAdverts(t, a, netID, rev)
	if err := a.Withdraw(ctx, netID, oid("ep1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "watch sees the withdrawal", w.has("ep2"))
	eventually(t, 5*time.Second, "resumed watch sees the withdrawal", w2.has("ep2"))
	w2.mu.Lock()
	if w2.calls != 1 {
		t.Errorf("resumed watch called %d times, want 1", w2.calls)
	}
	w2.mu.Unlock()
	if err := b.Withdraw(ctx, netID, oid("ep2")); err != nil {
		t.Fatal(err)
	}
	if err := b.Withdraw(ctx, netID, oid("ep2")); err != nil {
		t.Fatalf("withdraw twice: %v", err)
	}
	eventually(t, 5*time.Second, "watch sees no adverts", w.has())
}

// scenarioWatchCompaction: a watch from a compacted revision lists again.
func scenarioWatchCompaction(t *testing.T, c *Cluster) {
	ctx := ctxT(t)
	if _, err := c.CreateNetwork(ctx, testNet("cmp-a")); err != nil {
		t.Fatal(err)
	}
	_, oldRev, err := c.ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNetwork(ctx, testNet("cmp-b")); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteNetwork(ctx, oid("id-cmp-a")); err != nil {
		t.Fatal(err)
	}
	_, nowRev, err := c.ListNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	compactor := c.cli // compaction needs etcd's root user in an embedded cluster
	if c.admin != nil {
		compactor = c.admin
	}
	if _, err := compactor.Compact(ctx, nowRev); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	relists := c.relists
	c.mu.Unlock()

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var calls atomic.Int32
	var last atomic.Value
	done := make(chan error, 1)
	go func() {
		done <- c.WatchNetworks(wctx, oldRev, func(ns []model.Network, _ int64) {
			var names []string
			for _, n := range ns {
				if strings.HasPrefix(n.Name, "cmp-") {
					names = append(names, n.Name)
				}
			}
			last.Store(strings.Join(names, ","))
			calls.Add(1)
		})
	}()
	eventually(t, 5*time.Second, "watch from a compacted revision re-lists", func() error {
		if s, _ := last.Load().(string); s != "cmp-b" {
			return fmt.Errorf("watched %q, want cmp-b", s)
		}
		return nil
	})
	c.mu.Lock()
	if c.relists != relists+1 {
		t.Errorf("re-lists %d, want %d", c.relists, relists+1)
	}
	c.mu.Unlock()
	// And it keeps following changes.
	if _, err := c.CreateNetwork(ctx, testNet("cmp-c")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "watch follows", func() error {
		if s, _ := last.Load().(string); s != "cmp-b,cmp-c" {
			return fmt.Errorf("watched %q", s)
		}
		return nil
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("watch ended with %v, want canceled", err)
	}
	for _, id := range []string{oid("id-cmp-b"), oid("id-cmp-c")} {
		if err := c.DeleteNetwork(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// scenarioLeaseLoss: when the store drops the node's lease, the node
// registers again, re-publishes its adverts and calls OnLease.
func scenarioLeaseLoss(t *testing.T, c, observer *Cluster) {
	ctx := ctxT(t)
	netID := oid("lease-net")
	if err := c.Advertise(ctx, owned(t, c, netID, "lep", "10.8.0.2")); err != nil {
		t.Fatal(err)
	}
	w := watchAdverts(t, observer, netID, 0)
	eventually(t, 5*time.Second, "advert seen", w.has("lep"))
	called := make(chan struct{}, 1)
	unreg := c.OnLease(func(context.Context) {
		select {
		case called <- struct{}{}:
		default:
		}
	})
	defer unreg()
	old := c.currentLease()
	// What the store does to a lease it no longer hears from.
	if _, err := c.cli.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	select {
	case <-called:
	case <-time.After(10 * time.Second):
		t.Fatal("OnLease not called after the lease was lost")
	}
	if c.currentLease() == old {
		t.Fatal("lease not replaced")
	}
	eventually(t, 5*time.Second, "node up again", wantState(ctx, observer, c.NodeID(), StateUp))
	eventually(t, 5*time.Second, "advert re-published", w.has("lep"))
	if err := c.Withdraw(ctx, netID, oid("lep")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "advert withdrawn", w.has())
}

// scenarioCrash: a node that stops without leaving shows down within TTL+2 s
// (its adverts gone), and up again when it reopens with the same ID.
func scenarioCrash(t *testing.T, observer, victim *Cluster, reopen func() *Cluster) *Cluster {
	ctx := ctxT(t)
	id := victim.NodeID()
	eventually(t, 5*time.Second, "victim up", wantState(ctx, observer, id, StateUp))
	netID := oid("crash-net")
	if err := victim.Advertise(ctx, owned(t, victim, netID, "cep", "10.7.0.2")); err != nil {
		t.Fatal(err)
	}
	w := watchAdverts(t, observer, netID, 0)
	eventually(t, 5*time.Second, "advert seen", w.has("cep"))
	victim.Close() // no Leave: the lease is not revoked
	start := time.Now()
	eventually(t, victim.opts.NodeTTL+2*time.Second, "crashed node down", wantState(ctx, observer, id, StateDown))
	t.Logf("node down after %s", time.Since(start).Round(10*time.Millisecond))
	eventually(t, 2*time.Second, "crashed node's adverts gone", w.has())
	n, err := nodeState(ctx, observer, id)
	if err != nil {
		t.Fatal(err)
	}
	if n.LastSeen.IsZero() || time.Since(n.LastSeen) > 30*time.Second {
		t.Errorf("last seen %v", n.LastSeen)
	}
	back := reopen()
	eventually(t, 5*time.Second, "reopened node up", wantState(ctx, observer, id, StateUp))
	return back
}
