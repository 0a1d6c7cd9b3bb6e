package cluster

// The advertisement hub: one watch of the adverts/ prefix per Cluster,
// shared by every WatchAdverts call, applied event by event.
//
// Advertisements are keyed by node first (adverts/<node>/<network>/<ep>,
// so that etcd's range permissions give each member its own subtree), so a
// network's advertisements are not one prefix and cannot be watched on
// their own. Before the hub every watched network had a watch of the whole
// prefix and rebuilt, and decoded again, the network's whole set on every
// watch response: a host on W networks received every event W times, and
// each event cost the size of the set. Now:
//
//   - one watch per member, whatever the number of networks it takes part
//     in;
//   - an event for a network nobody here follows is dropped on its key,
//     without decoding its value;
//   - an event for a followed network is decoded once and applied as a
//     delta to that network's set only (put or delete one key);
//   - the followers of a network are woken, not called per event: a burst
//     of events reaches a follower as one call with the latest set
//     (coalescing), so the cost per follower grows with the rate at which
//     it can consume, not with the rate of events.
//
// A network's set is loaded when its first follower arrives (one read of
// the prefix at the hub's revision, so the watch's later events apply on
// top of it) and dropped with its last follower. If etcd compacted past
// the hub's revision, every followed network is loaded again.

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type advertHub struct {
	c *Cluster

	mu      sync.Mutex
	nets    map[string]*hubNet
	rev     int64 // every event up to rev is applied
	started bool
	load    chan struct{} // a network waits for its first load (cap 1)

	// Counters (for the benchmark): watch events received, the bytes of
	// their keys and values, events applied to a followed network, loads.
	events, bytes, applied, loads atomic.Int64
}

// hubNet is one followed network's advertisement set.
type hubNet struct {
	id     string
	ads    map[string]Advert // by key; valid records only
	mods   map[string]int64  // key -> mod revision (invalid records too)
	loaded bool
	gen    int64 // changes applied (a follower delivers when it moves)
	subs   map[*hubSub]struct{}
}

type hubSub struct {
	wake chan struct{} // cap 1: a pending wake-up
}

func newAdvertHub(c *Cluster) *advertHub {
	return &advertHub{c: c, nets: map[string]*hubNet{}, load: make(chan struct{}, 1)}
}

// netOfAdvertKey returns the network ID of an advertisement key, or "".
func (c *Cluster) netOfAdvertKey(key string) string {
	rest, ok := strings.CutPrefix(key, c.advertsPrefix())
	if !ok {
		return ""
	}
	_, rest, ok = strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	id, _, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return id
}

// subscribe adds a follower of netID, starting the hub's watch if needed.
func (h *advertHub) subscribe(netID string) (*hubSub, *hubNet) {
	s := &hubSub{wake: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nets[netID]
	if n == nil {
		n = &hubNet{id: netID, ads: map[string]Advert{}, mods: map[string]int64{}, subs: map[*hubSub]struct{}{}}
		h.nets[netID] = n
		select {
		case h.load <- struct{}{}:
		default:
		}
	}
	n.subs[s] = struct{}{}
	if n.loaded {
		s.wake <- struct{}{}
	}
	if !h.started {
		h.started = true
		h.c.bg.Add(1)
		go func() {
			defer h.c.bg.Done()
			h.run(h.c.ctx)
		}()
	}
	return s, n
}

func (h *advertHub) unsubscribe(s *hubSub, n *hubNet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(n.subs, s)
	if len(n.subs) == 0 && h.nets[n.id] == n {
		delete(h.nets, n.id)
	}
}

// snapshot returns a network's set, its generation and the hub's revision;
// ok is false until the set is loaded.
func (h *advertHub) snapshot(n *hubNet) (ads []Advert, mods map[string]int64, gen, rev int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !n.loaded {
		return nil, nil, 0, 0, false
	}
	ads = make([]Advert, 0, len(n.ads))
	for _, a := range n.ads {
		ads = append(ads, a)
	}
	return ads, maps.Clone(n.mods), n.gen, h.rev, true
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

// run is the hub's goroutine: the watch, and the first loads of networks.
func (h *advertHub) run(ctx context.Context) {
	c := h.c
	prefix := c.advertsPrefix()
	// The starting revision: the store's now.
	for attempt := 0; ; attempt++ {
		rctx, cancel := c.reqCtx(ctx)
		resp, err := c.cli.Get(rctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err == nil {
			h.mu.Lock()
			h.rev = resp.Header.Revision
			h.mu.Unlock()
			break
		}
		if backoff(ctx, attempt) != nil {
			return
		}
	}
	relist := false
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if relist {
			if err := h.loadAll(ctx); err != nil {
				c.log.Debug("advertisements: list", "err", err)
				if backoff(ctx, attempt) != nil {
					return
				}
				continue
			}
			relist = false
		}
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		h.mu.Lock()
		from := h.rev + 1
		h.mu.Unlock()
		wch := c.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
		compacted, err := h.follow(ctx, wch)
		wcancel()
		if compacted {
			c.countRelist()
			relist, attempt = true, -1
			continue
		}
		if err != nil {
			c.log.Debug("advertisements: watch interrupted", "err", err)
		}
		if backoff(ctx, attempt) != nil {
			return
		}
	}
}

// follow applies watch responses and loads new networks until the watch
// breaks; it reports whether etcd compacted past the hub's revision.
func (h *advertHub) follow(ctx context.Context, wch clientv3.WatchChan) (bool, error) {
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-h.load:
			if err := h.loadNew(ctx); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					return true, nil
				}
				h.c.log.Debug("advertisements: load", "err", err)
				select { // try again later
				case h.load <- struct{}{}:
				default:
				}
				if sleepCtx(ctx, 200*time.Millisecond) != nil {
					return false, ctx.Err()
				}
			}
		case resp, ok := <-wch:
			if !ok {
				return false, ctx.Err()
			}
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				return true, nil
			}
			if err := resp.Err(); err != nil {
				return false, err
			}
			h.apply(resp.Events)
		}
	}
}

// apply applies one watch response's events to the followed networks.
func (h *advertHub) apply(evs []*clientv3.Event) {
	if len(evs) == 0 {
		return
	}
	c := h.c
	h.events.Add(int64(len(evs)))
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := map[*hubNet]bool{}
	for _, ev := range evs {
		h.bytes.Add(int64(len(ev.Kv.Key) + len(ev.Kv.Value)))
		key := string(ev.Kv.Key)
		n := h.nets[c.netOfAdvertKey(key)]
		if n == nil || !n.loaded {
			continue // nobody here follows that network (or its load will hold it)
		}
		h.applied.Add(1)
		changed[n] = true
		delete(n.ads, key)
		delete(n.mods, key)
		if ev.Type == clientv3.EventTypePut {
			n.mods[key] = ev.Kv.ModRevision
			if a, ok := c.decodeAdvertKV(ev.Kv); ok && a.NetworkID == n.id {
				n.ads[key] = a
			}
		}
	}
	h.rev = max(h.rev, evs[len(evs)-1].Kv.ModRevision)
	for n := range changed {
		n.gen++
		n.wakeLocked()
	}
}

// loadNew loads the sets of networks followed but not loaded yet, as of the
// hub's revision (the watch's later events apply on top).
func (h *advertHub) loadNew(ctx context.Context) error {
	h.mu.Lock()
	rev := h.rev
	var want []*hubNet
	for _, n := range h.nets {
		if !n.loaded {
			want = append(want, n)
		}
	}
	h.mu.Unlock()
	if len(want) == 0 {
		return nil
	}
	kvs, _, err := h.list(ctx, rev)
	if err != nil {
		return err
	}
	h.fill(kvs, want)
	return nil
}

// loadAll loads every followed network again at the store's current
// revision (after a compaction) and moves the hub there.
func (h *advertHub) loadAll(ctx context.Context) error {
	kvs, rev, err := h.list(ctx, 0)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.rev = rev
	all := make([]*hubNet, 0, len(h.nets))
	for _, n := range h.nets {
		all = append(all, n)
	}
	h.mu.Unlock()
	h.fill(kvs, all)
	return nil
}

// list reads the whole prefix at rev (0: now).
func (h *advertHub) list(ctx context.Context, rev int64) ([]*mvccpb.KeyValue, int64, error) {
	c := h.c
	h.loads.Add(1)
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := c.cli.Get(rctx, c.advertsPrefix(), opts...)
	if err != nil {
		return nil, 0, err
	}
	return resp.Kvs, resp.Header.Revision, nil
}

// fill replaces the sets of networks nets with what kvs hold of them.
func (h *advertHub) fill(kvs []*mvccpb.KeyValue, nets []*hubNet) {
	c := h.c
	byID := make(map[string]*hubNet, len(nets))
	fresh := make(map[*hubNet]map[string]Advert, len(nets))
	mods := make(map[*hubNet]map[string]int64, len(nets))
	for _, n := range nets {
		byID[n.id] = n
		fresh[n], mods[n] = map[string]Advert{}, map[string]int64{}
	}
	for _, kv := range kvs {
		n := byID[c.netOfAdvertKey(string(kv.Key))]
		if n == nil {
			continue
		}
		mods[n][string(kv.Key)] = kv.ModRevision
		if a, ok := c.decodeAdvertKV(kv); ok && a.NetworkID == n.id {
			fresh[n][string(kv.Key)] = a
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range nets {
		n.ads, n.mods, n.loaded = fresh[n], mods[n], true
		n.gen++
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
		rctx, rcancel := c.reqCtx(ctx)
		resp, err := c.cli.Get(rctx, c.advertsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(fromRev))
		rcancel()
		if err == nil {
			base = map[string]int64{}
			for _, kv := range resp.Kvs {
				if c.netOfAdvertKey(string(kv.Key)) == netID {
					base[string(kv.Key)] = kv.ModRevision
				}
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
	for {
		select {
		case <-ctx.Done():
			return c.watchEnd(ctx)
		case <-s.wake:
		}
		ads, mods, gen, rev, ok := h.snapshot(n)
		if !ok || gen == delivered {
			continue
		}
		delivered = gen
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
