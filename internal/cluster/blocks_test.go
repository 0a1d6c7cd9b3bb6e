package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
)

// blockOwners returns the block records of a network, by block.
func blockRecords(t *testing.T, c *Cluster, netID string) map[netip.Prefix]blockRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := c.readIPAM(ctx, netID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Prefix]blockRecord{}
	for b, blk := range v.blocks {
		out[b] = blk.rec
	}
	return out
}

func alloc(t *testing.T, c *Cluster, netID string, static netip.Addr, ep string) netip.Addr {
	t.Helper()
	p, err := c.AllocateAddressFor(ctxT(t), netID, static, ep)
	if err != nil {
		t.Fatalf("allocate on %s: %v", c.NodeID(), err)
	}
	return p.Addr()
}

// Per-host blocks: affinity, owners, static addresses in any block,
// borrowing when no block is left, exhaustion, release of empty blocks,
// and the pool reserved with the network.
func TestIPAMBlocks(t *testing.T) {
	e := startEtcd(t)
	a := openExternal(t, externalOpts(t, e, "blk-a"))
	b := openExternal(t, externalOpts(t, e, "blk-b"))
	ctx := ctxT(t)

	// A /27 in /28 blocks: two blocks, 29 usable addresses (.1 is the
	// gateway, .0 and .31 network and broadcast).
	n := testNet("blocks")
	n.IPAM = []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.61.0.0/27")}}
	n.Options = map[string]string{OptBlockSize: "28"}
	created, err := a.CreateNetworkWithPool(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(created.IPAM) != 1 || created.IPAM[0].Gateway != netip.MustParseAddr("10.61.0.1") {
		t.Fatalf("created IPAM %+v", created.IPAM)
	}
	if _, err := b.RequestPool(ctx, "other", created.IPAM); !errors.Is(err, ipam.ErrPoolOverlap) {
		t.Fatalf("pool of the new network taken again: %v, want overlap", err)
	}
	bad := testNet("blocks-bad")
	bad.Options = map[string]string{OptBlockSize: "40"}
	if _, err := a.CreateNetworkWithPool(ctx, bad); !errors.Is(err, model.ErrInvalid) {
		t.Fatalf("block size 40: %v, want invalid", err)
	}
	if _, err := a.GetNetwork(ctx, bad.ID); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("refused network exists: %v", err)
	}

	x := alloc(t, a, n.ID, netip.Addr{}, "ep-a1")
	y := alloc(t, b, n.ID, netip.Addr{}, "ep-b1")
	bx, by := blockOf(netip.MustParsePrefix("10.61.0.0/27"), 28, x), blockOf(netip.MustParsePrefix("10.61.0.0/27"), 28, y)
	if bx == by {
		t.Fatalf("a got %v and b got %v from the same block", x, y)
	}
	recs := blockRecords(t, a, n.ID)
	if recs[bx].Node != a.NodeID() || recs[by].Node != b.NodeID() {
		t.Fatalf("block affinities %+v", recs)
	}
	if o := recs[bx].Addrs[x]; o.Node != a.NodeID() || o.Endpoint != "ep-a1" || o.Since.IsZero() {
		t.Fatalf("owner of %v: %+v", x, o)
	}
	// Static: b takes an address in a's block.
	st := bx.Addr().Next().Next().Next().Next() // .4 or .20
	if got := alloc(t, b, n.ID, st, "ep-b2"); got != st {
		t.Fatalf("static %v got %v", st, got)
	}
	if _, err := a.AllocateAddressFor(ctx, n.ID, st, "ep-a2"); !errors.Is(err, ipam.ErrAddressInUse) {
		t.Fatalf("static in use: %v, want address in use", err)
	}
	if o := blockRecords(t, a, n.ID)[bx].Addrs[st]; o.Node != b.NodeID() || o.Endpoint != "ep-b2" {
		t.Fatalf("owner of static %v: %+v", st, o)
	}

	// a fills its block, then borrows from b's.
	got := map[netip.Addr]bool{x: true, y: true, st: true}
	for i := 0; ; i++ {
		p, err := a.AllocateAddressFor(ctx, n.ID, netip.Addr{}, fmt.Sprintf("fill-%d", i))
		if errors.Is(err, ipam.ErrNoAvailableAddress) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if got[p.Addr()] {
			t.Fatalf("%v handed out twice", p.Addr())
		}
		got[p.Addr()] = true
		if i > 40 {
			t.Fatal("no exhaustion after 40 allocations")
		}
	}
	if len(got) != 29 {
		t.Fatalf("%d addresses handed out before exhaustion, want 29", len(got))
	}
	recs = blockRecords(t, a, n.ID)
	borrowed := 0
	for addr, o := range recs[by].Addrs {
		if o.Node == a.NodeID() {
			borrowed++
			if err := a.ReleaseAddress(ctx, n.ID, addr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if borrowed == 0 || recs[by].Node != b.NodeID() {
		t.Fatalf("a borrowed %d addresses from b's block %+v", borrowed, recs[by])
	}
	// b empties its block: it is its only block, so b keeps it.
	if err := b.ReleaseAddress(ctx, n.ID, y); err != nil {
		t.Fatal(err)
	}
	if r, ok := blockRecords(t, a, n.ID)[by]; !ok || len(r.Addrs) != 0 {
		t.Fatalf("b's emptied only block: %+v %v, want kept empty", r, ok)
	}
	// a releases its own addresses of bx (its only block: kept), then b
	// releases the last one: a block emptied by another host goes.
	for addr, o := range blockRecords(t, a, n.ID)[bx].Addrs {
		if o.Node == b.NodeID() {
			continue
		}
		if err := a.ReleaseAddress(ctx, n.ID, addr); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.ReleaseAddress(ctx, n.ID, st); err != nil {
		t.Fatal(err)
	}
	if r, ok := blockRecords(t, a, n.ID)[bx]; ok {
		t.Fatalf("block emptied by another host still stored: %+v", r)
	}
	// The network's deletion removes its blocks.
	if err := a.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	resp, err := a.cli.Get(ctx, a.blocksPrefix(n.ID), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("blocks after network delete: %v %v", resp, err)
	}
}

// The elected garbage collector frees the addresses of a removed node, of a
// node down for longer than the grace period, and of an endpoint without an
// advertisement; addresses of live, advertised endpoints stay.
func TestIPAMGarbageCollection(t *testing.T) {
	e := startEtcd(t)
	fast := func(id string) Options {
		o := externalOpts(t, e, id)
		o.IPAMGCInterval = 500 * time.Millisecond
		o.IPAMGrace = 3 * time.Second
		return o
	}
	a := openExternal(t, fast("gc-a"))
	b := openExternal(t, fast("gc-b"))
	c := openExternal(t, fast("gc-c"))
	ctx := ctxT(t)
	n := testNet("gcnet")
	n.IPAM = []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.62.0.0/24")}}
	if _, err := a.CreateNetworkWithPool(ctx, n); err != nil {
		t.Fatal(err)
	}
	// a: one advertised endpoint (stays), one without advertisement (goes).
	kept := alloc(t, a, n.ID, netip.Addr{}, oid("kept"))
	if err := a.Advertise(ctx, advert(n.ID, "kept", kept.String())); err != nil {
		t.Fatal(err)
	}
	lost := alloc(t, a, n.ID, netip.Addr{}, "lost")
	// b: 50 addresses, then b is closed (down) and removed.
	for i := range 50 {
		alloc(t, b, n.ID, netip.Addr{}, fmt.Sprintf("b-%d", i))
	}
	// c: 5 addresses, then c is down for good but not removed.
	for i := range 5 {
		alloc(t, c, n.ID, netip.Addr{}, fmt.Sprintf("c-%d", i))
	}
	count := func(node string) int {
		owners, err := a.AddressOwners(ctx, n.ID)
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for _, o := range owners {
			if o.Node == node {
				k++
			}
		}
		return k
	}
	if count(b.NodeID()) != 50 || count(c.NodeID()) != 5 || count(a.NodeID()) != 2 {
		t.Fatalf("owners before: a %d b %d c %d", count(a.NodeID()), count(b.NodeID()), count(c.NodeID()))
	}
	b.Close()
	c.Close()
	eventually(t, 10*time.Second, "b down", wantState(ctx, a, b.NodeID(), StateDown))
	if err := a.RemoveNode(ctx, b.NodeID(), false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, 10*time.Second, "removed node's addresses freed", func() error {
		if k := count(b.NodeID()); k != 0 {
			return fmt.Errorf("%d addresses of the removed node left", k)
		}
		return nil
	})
	t.Logf("removed node's 50 addresses freed %s after node rm", time.Since(start).Round(10*time.Millisecond))
	eventually(t, 20*time.Second, "down node's and lost endpoint's addresses freed after the grace period", func() error {
		if k := count(c.NodeID()); k != 0 {
			return fmt.Errorf("%d addresses of the down node left", k)
		}
		owners, err := a.AddressOwners(ctx, n.ID)
		if err != nil {
			return err
		}
		if _, ok := owners[lost]; ok {
			return fmt.Errorf("address %v of the endpoint without advertisement still held", lost)
		}
		return nil
	})
	owners, err := a.AddressOwners(ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := owners[kept]; !ok || o.Endpoint != oid("kept") || len(owners) != 1 {
		t.Fatalf("owners after collection %+v, want only the advertised endpoint's", owners)
	}
	// The freed addresses are handed out again.
	for i := range 200 {
		alloc(t, a, n.ID, netip.Addr{}, fmt.Sprintf("again-%d", i))
	}
}

// IPv6 in global IPAM: a default ULA /64 from the cluster's /48, /122
// blocks per host (by default) in the subnet's first 2^32 addresses, the
// families kept apart (an IPv4 allocation never hands out an IPv6 address
// and the other way round), static IPv6 addresses, release.
func TestIPAMBlocksIPv6(t *testing.T) {
	e := startEtcd(t)
	a := openExternal(t, externalOpts(t, e, "blk6-a"))
	b := openExternal(t, externalOpts(t, e, "blk6-b"))
	ctx := ctxT(t)

	n := testNet("blocks6")
	n.EnableIPv6 = true
	n.IPAM = []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.62.0.0/24")}, {Subnet: ipam.DefaultIPv6Pool}}
	created, err := a.CreateNetworkWithPool(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(created.IPAM) != 2 {
		t.Fatalf("IPAM %+v", created.IPAM)
	}
	sub6 := created.IPAM[1].Subnet
	if !sub6.Addr().Is6() || sub6.Bits() != 64 || sub6.Addr().As16()[0] != 0xfd || created.IPAM[1].Gateway != sub6.Addr().Next() {
		t.Fatalf("default IPv6 subnet %+v, want a ULA /64 with gateway ::1", created.IPAM[1])
	}
	if err := ValidateNetwork(created.ID, created); err != nil {
		t.Fatalf("stored dual-stack network invalid: %v", err)
	}
	// A second network gets another /64 of the same /48.
	n2 := testNet("blocks6b")
	n2.EnableIPv6 = true
	n2.IPAM = []model.IPAMConfig{{}, {Subnet: ipam.DefaultIPv6Pool}}
	created2, err := b.CreateNetworkWithPool(ctx, n2)
	if err != nil {
		t.Fatal(err)
	}
	if s := created2.IPAM[1].Subnet; s == sub6 || netip.PrefixFrom(s.Addr(), 48).Masked() != netip.PrefixFrom(sub6.Addr(), 48).Masked() {
		t.Fatalf("second network's IPv6 subnet %s, want another /64 of %s's /48", s, sub6)
	}

	v4 := alloc(t, a, n.ID, netip.Addr{}, "ep1")
	if !v4.Is4() {
		t.Fatalf("IPv4 allocation gave %s", v4)
	}
	p6a, err := a.AllocateAddress6For(ctx, n.ID, netip.Addr{}, "ep1")
	if err != nil {
		t.Fatal(err)
	}
	p6b, err := b.AllocateAddress6For(ctx, n.ID, netip.Addr{}, "ep2")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{p6a, p6b} {
		if !sub6.Contains(p.Addr()) || p.Bits() != 64 || p.Addr() == created.IPAM[1].Gateway {
			t.Fatalf("IPv6 allocation %s, want a host address of %s", p, sub6)
		}
		if p.Addr().As16()[8]|p.Addr().As16()[9]|p.Addr().As16()[10]|p.Addr().As16()[11] != 0 {
			t.Fatalf("IPv6 allocation %s beyond the subnet's first 2^32 addresses", p)
		}
	}
	blocks := blockRecords(t, a, n.ID)
	blkA, blkB := blockOf(sub6, DefaultBlockBits6, p6a.Addr()), blockOf(sub6, DefaultBlockBits6, p6b.Addr())
	if blkA == blkB || blocks[blkA].Node != a.NodeID() || blocks[blkB].Node != b.NodeID() || blkA.Bits() != 122 {
		t.Fatalf("IPv6 blocks: a in %s, b in %s; records %+v", blkA, blkB, blocks)
	}
	if o := blocks[blkA].Addrs[p6a.Addr()]; o.Node != a.NodeID() || o.Endpoint != "ep1" {
		t.Fatalf("owner of %s = %+v", p6a.Addr(), o)
	}
	// The next IPv6 allocation of a stays in its block; the next IPv4 one
	// is IPv4.
	if p, err := a.AllocateAddress6For(ctx, n.ID, netip.Addr{}, "ep3"); err != nil || blockOf(sub6, DefaultBlockBits6, p.Addr()) != blkA {
		t.Fatalf("second IPv6 allocation of a: %v %v, want in %s", p, err, blkA)
	}
	if v := alloc(t, a, n.ID, netip.Addr{}, "ep3"); !v.Is4() {
		t.Fatalf("IPv4 allocation after IPv6 ones gave %s", v)
	}
	// Static IPv6: taken once.
	static := netip.MustParseAddr(sub6.Addr().String()).Next().Next().Next().Next().Next()
	if p, err := b.AllocateAddress6For(ctx, n.ID, static, "ep4"); err != nil || p.Addr() != static {
		t.Fatalf("static %s: %v %v", static, p, err)
	}
	if _, err := a.AllocateAddress6For(ctx, n.ID, static, "ep5"); !errors.Is(err, ipam.ErrAddressInUse) {
		t.Fatalf("static %s again: %v, want address in use", static, err)
	}
	if _, err := a.AllocateAddress6For(ctx, n.ID, netip.MustParseAddr("10.62.0.9"), "ep5"); !errors.Is(err, ipam.ErrInvalid) {
		t.Fatalf("IPv4 static through AllocateAddress6For: %v, want invalid", err)
	}
	owners, err := a.AddressOwners(ctx, n.ID)
	if err != nil || owners[static].Node != b.NodeID() {
		t.Fatalf("owners %v %v", owners, err)
	}
	if err := b.ReleaseAddress(ctx, n.ID, static); err != nil {
		t.Fatal(err)
	}
	if p, err := a.AllocateAddress6For(ctx, n.ID, static, "ep5"); err != nil || p.Addr() != static {
		t.Fatalf("static %s after release: %v %v", static, p, err)
	}
	// A network without IPv6 has no IPv6 addresses to give.
	n4 := testNet("blocks4")
	n4.IPAM = []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.63.0.0/24")}}
	if _, err := a.CreateNetworkWithPool(ctx, n4); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AllocateAddress6For(ctx, n4.ID, netip.Addr{}, "ep6"); !errors.Is(err, ipam.ErrInvalid) {
		t.Fatalf("IPv6 on an IPv4 network: %v, want invalid", err)
	}
	// A bad IPv6 block size is refused at create.
	bad := testNet("badblk6")
	bad.Options = map[string]string{OptBlockSize6: "64"}
	if _, err := a.CreateNetworkWithPool(ctx, bad); !errors.Is(err, model.ErrInvalid) {
		t.Fatalf("block-size6=64: %v, want invalid", err)
	}
}
