package cluster

// The advertisement hub: what a Cluster knows of the advertisements of the
// networks it follows, shared by every WatchAdverts call of the same
// network, applied event by event.
//
// Advertisements are keyed by node first (adverts/<node>/<network>/<ep>,
// so that etcd's range permissions give each member its own subtree), so a
// network's advertisements are not one prefix. Watching the whole adverts/
// prefix made etcd deliver every advertisement of the cluster to every
// member (members² deliveries, and what saturated one etcd at a few hundred
// members). Instead, for each followed network the hub watches
// adverts/<owner>/<network>/ for each owner node of the network: the nodes
// that hold addresses of the network in global IPAM (the owner records of
// owners.go, followed for the network) and this node. Only they can make an
// advertisement CheckAdverts accepts (each advertised address must be
// allocated to the advertising node), so nothing that could be accepted is
// missed, and a write reaches only the members of its network.
//
//   - An owner's watch starts at the store's current revision, then reads
//     the prefix (one range of the owner's endpoints in the network) and
//     applies the events after that read; if etcd compacted past the last
//     revision seen, the prefix is read again (see watchPrefix).
//   - A node that stops holding addresses of the network is no longer
//     watched and its advertisements leave the set.
//   - An event is decoded once and applied as a delta to the network's set;
//     the followers of a network are woken, not called per event: a burst of
//     events reaches a follower as one call with the latest set
//     (coalescing).
//   - A network's set is complete ("loaded") once its owners are known and
//     every owner's first read is in; its revision is the highest store
//     revision any of its reads or events brought (so it never goes back,
//     and is at least that of any read made before the network was
//     followed).
//
// A network's set is dropped with its last follower. Adverts serves a
// followed network from the set (no store call).

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type advertHub struct {
	c *Cluster

	mu   sync.Mutex
	nets map[string]*hubNet

	// Counters (for the benchmark): watch events received, the bytes of
	// their keys and values, events applied to a followed network, reads
	// of an owner's prefix.
	events, bytes, applied, loads atomic.Int64
}

// hubNet is one followed network's advertisement set.
type hubNet struct {
	id          string
	ads         map[string]Advert // by key; valid records only
	mods        map[string]int64  // key -> mod revision (invalid records too)
	owners      map[string]*hubOwner
	ownersKnown bool
	rev         int64 // highest store revision of the reads and events applied
	gen         int64 // changes applied (a follower delivers when it moves)
	subs        map[*hubSub]struct{}
	release     func() // stops following the network's owners
}

// hubOwner is the watch of one owner node's advertisements in a network.
type hubOwner struct {
	node   string
	cancel context.CancelFunc
	loaded bool                // its first read is in
	keys   map[string]struct{} // its keys in the network's set
}

type hubSub struct {
	wake chan struct{} // cap 1: a pending wake-up
}

func newAdvertHub(c *Cluster) *advertHub {
	return &advertHub{c: c, nets: map[string]*hubNet{}}
}

// loadedLocked reports whether the set is complete.
func (n *hubNet) loadedLocked() bool {
	if !n.ownersKnown {
		return false
	}
	for _, o := range n.owners {
		if !o.loaded {
			return false
		}
	}
	return true
}

// subscribe adds a follower of netID, following the network's owners and
// their advertisements if it is the first.
func (h *advertHub) subscribe(netID string) (*hubSub, *hubNet) {
	s := &hubSub{wake: make(chan struct{}, 1)}
	h.mu.Lock()
	n := h.nets[netID]
	first := n == nil
	if first {
		n = &hubNet{id: netID, ads: map[string]Advert{}, mods: map[string]int64{},
			owners: map[string]*hubOwner{}, subs: map[*hubSub]struct{}{}}
		h.nets[netID] = n
	}
	n.subs[s] = struct{}{}
	if n.loadedLocked() {
		s.wake <- struct{}{}
	}
	h.mu.Unlock()
	if first {
		// Outside h.mu: following the owners may tell the hub at once.
		release := h.c.followOwners(netID)
		h.mu.Lock()
		if h.nets[netID] == n && len(n.subs) > 0 {
			n.release = release
			release = nil
		}
		h.mu.Unlock()
		if release != nil {
			release()
		}
		h.ownersMoved(netID)
	}
	return s, n
}

func (h *advertHub) unsubscribe(s *hubSub, n *hubNet) {
	h.mu.Lock()
	delete(n.subs, s)
	var release func()
	if len(n.subs) == 0 && h.nets[n.id] == n {
		delete(h.nets, n.id)
		for _, o := range n.owners {
			o.cancel()
		}
		release = n.release
	}
	h.mu.Unlock()
	if release != nil {
		release()
	}
}

// ownersMoved makes the owner watches of a followed network match its
// owner nodes (this node always included). It reads the owners under h.mu
// (the owner cache never calls the hub holding its own lock), so two calls
// cannot apply their views out of order.
func (h *advertHub) ownersMoved(netID string) {
	c := h.c
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nets[netID]
	if n == nil {
		return
	}
	nodes, known := c.ownerNodes(netID)
	if !known {
		return
	}
	want := map[string]bool{c.opts.NodeID: true}
	for _, id := range nodes {
		if ValidHexID(id, NodeIDLen) {
			want[id] = true
		}
	}
	n.ownersKnown = true
	changed := false
	for id, o := range n.owners {
		if want[id] {
			continue
		}
		o.cancel()
		delete(n.owners, id)
		for k := range o.keys {
			delete(n.ads, k)
			delete(n.mods, k)
		}
		changed = changed || len(o.keys) > 0
	}
	for id := range want {
		if _, ok := n.owners[id]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(c.ctx)
		o := &hubOwner{node: id, cancel: cancel, keys: map[string]struct{}{}}
		n.owners[id] = o
		c.bg.Add(1)
		go func() {
			defer c.bg.Done()
			h.watchOwner(ctx, n, o)
		}()
	}
	if changed {
		n.gen++
	}
	if n.loadedLocked() {
		n.wakeLocked()
	}
}

// snapshot returns a network's set, its generation and revision (and with
// withMods the keys' revisions); ok is false until the set is complete.
func (h *advertHub) snapshot(n *hubNet, withMods bool) (ads []Advert, mods map[string]int64, gen, rev int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !n.loadedLocked() {
		return nil, nil, 0, 0, false
	}
	ads = make([]Advert, 0, len(n.ads))
	for _, a := range n.ads {
		ads = append(ads, a)
	}
	if withMods {
		mods = maps.Clone(n.mods)
	}
	return ads, mods, n.gen, n.rev, true
}

// cached returns a followed network's complete set (sorted) and its
// revision, or false.
func (h *advertHub) cached(netID string) ([]Advert, int64, bool) {
	h.mu.Lock()
	n := h.nets[netID]
	h.mu.Unlock()
	if n == nil {
		return nil, 0, false
	}
	ads, _, _, rev, ok := h.snapshot(n, false)
	if ok {
		sortAdverts(ads)
	}
	return ads, rev, ok
}

// wakeLocked wakes a network's followers.
func (n *hubNet) wakeLocked() {
	for s := range n.subs {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// watchOwner follows one owner node's advertisements in a network until
// ctx is done: a watch of its prefix, a read of the prefix once the watch
// is in place, then the events (a compaction past the last revision seen
// reads the prefix again).
func (h *advertHub) watchOwner(ctx context.Context, n *hubNet, o *hubOwner) {
	c := h.c
	prefix := c.key("adverts", o.node, n.id) + "/"
	watchPrefix(ctx, c, prefix, 0, func(kvs []*mvccpb.KeyValue, rev int64) {
		h.loads.Add(1)
		h.reset(n, o, kvs, rev)
	}, func(evs []*clientv3.Event, rev int64) {
		h.apply(n, o, evs, rev)
	})
}

// reset replaces an owner's part of a network's set with a read made at
// rev.
func (h *advertHub) reset(n *hubNet, o *hubOwner, kvs []*mvccpb.KeyValue, rev int64) {
	c := h.c
	type rec struct {
		key string
		mod int64
		a   Advert
		ok  bool
	}
	rs := make([]rec, 0, len(kvs))
	for _, kv := range kvs {
		a, ok := c.decodeAdvertKV(kv)
		rs = append(rs, rec{string(kv.Key), kv.ModRevision, a, ok && a.NetworkID == n.id})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if n.owners[o.node] != o {
		return // no longer an owner
	}
	for k := range o.keys {
		delete(n.ads, k)
		delete(n.mods, k)
	}
	clear(o.keys)
	for _, r := range rs {
		o.keys[r.key] = struct{}{}
		n.mods[r.key] = r.mod
		if r.ok {
			n.ads[r.key] = r.a
		}
	}
	o.loaded = true
	n.rev = max(n.rev, rev)
	n.gen++
	if n.loadedLocked() {
		n.wakeLocked()
	}
}

// apply applies one watch response's events of an owner to a network's
// set.
func (h *advertHub) apply(n *hubNet, o *hubOwner, evs []*clientv3.Event, rev int64) {
	c := h.c
	h.events.Add(int64(len(evs)))
	type rec struct {
		key string
		mod int64
		put bool
		a   Advert
		ok  bool
	}
	rs := make([]rec, 0, len(evs))
	for _, ev := range evs {
		h.bytes.Add(int64(len(ev.Kv.Key) + len(ev.Kv.Value)))
		r := rec{key: string(ev.Kv.Key), mod: ev.Kv.ModRevision, put: ev.Type == clientv3.EventTypePut}
		if r.put {
			r.a, r.ok = c.decodeAdvertKV(ev.Kv)
			r.ok = r.ok && r.a.NetworkID == n.id
		}
		rs = append(rs, r)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if n.owners[o.node] != o {
		return
	}
	h.applied.Add(int64(len(rs)))
	for _, r := range rs {
		delete(n.ads, r.key)
		delete(n.mods, r.key)
		delete(o.keys, r.key)
		if r.put {
			o.keys[r.key] = struct{}{}
			n.mods[r.key] = r.mod
			if r.ok {
				n.ads[r.key] = r.a
			}
		}
	}
	n.rev = max(n.rev, rev)
	n.gen++
	if n.loadedLocked() {
		n.wakeLocked()
	}
}

// watchAdverts follows a network's advertisements through the hub; see
// WatchAdverts.
func (c *Cluster) watchAdverts(ctx context.Context, netID string, fromRev int64, fn func([]Advert, int64)) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	// With fromRev the caller holds the set as of fromRev: its keys and
	// revisions are the baseline a first delivery must differ from (none
	// if fromRev was compacted: deliver at once).
	var base map[string]int64
	if fromRev > 0 {
		kvs, _, err := c.readNetAdverts(ctx, netID, fromRev)
		if err == nil {
			base = map[string]int64{}
			for _, kv := range kvs {
				base[string(kv.Key)] = kv.ModRevision
			}
		} else if errors.Is(err, rpctypes.ErrCompacted) {
			c.countRelist()
		} else {
			return unavailable("watch advertisements", err)
		}
	}
	h := c.hub
	s, n := h.subscribe(netID)
	defer h.unsubscribe(s, n)
	delivered := int64(-1)
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return c.watchEnd(ctx)
		case <-s.wake:
		}
		if gap := c.opts.advertGap; gap > 0 && !last.IsZero() {
			if sleepCtx(ctx, time.Until(last.Add(gap))) != nil {
				return c.watchEnd(ctx)
			}
		}
		ads, mods, gen, rev, ok := h.snapshot(n, base != nil)
		if !ok || gen == delivered {
			continue
		}
		delivered, last = gen, time.Now()
		if base != nil {
			same := maps.Equal(base, mods)
			base = nil
			if same {
				continue
			}
		}
		sortAdverts(ads)
		fn(ads, rev)
	}
}
