package cluster

// The owners of global addresses, as this member knows them: for each
// network followed with FollowOwners (the engine follows those it watches
// the advertisements of), the network's address blocks
// (ipam/blocks/<network>/), read once and then kept from a watch of that
// prefix, applied event by event. CheckAdverts judges each advertisement
// against them: an address is advertised by the node (and endpoint, when
// the record names one) that global IPAM gave it to, or the advertisement
// is ignored.
//
// Order. A host writes its address block (the allocation) before it
// advertises the address, so in the store's revision order the owner record
// always comes first. The two reach this member on different watches,
// though, and the owner watch may lag the advertisement watch. So each
// network's owners carry the revision they are known to be complete at; an
// advertisement whose address has no owner record here and which was
// written after that revision is not judged from the cache: the network's
// blocks are read once (one store call for the whole set being checked,
// not one per advertisement), and the decision is taken on that fresh
// read. A legitimate advertisement is therefore never rejected for a lag,
// and on the hot path (owner already known) no store call is made. When
// owner records change, OnOwners tells the engine, which checks the
// network's last advertisement set again (an address released by its node
// and given to another is then no longer accepted from the first).

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// netOwners is what this member knows of one network's address owners.
type netOwners struct {
	blocks    map[string][]netip.Addr // block key -> its addresses
	addrs     map[netip.Addr]AddrOwner
	nodes     map[string]int // owner node -> addresses it holds here
	rev       int64          // complete as of this revision (0: nothing read yet)
	followers int            // followers (FollowOwners calls, the advertisement hub)
	stop      context.CancelFunc
}

// ownerCache holds the address owners of the followed networks.
type ownerCache struct {
	mu   sync.Mutex
	nets map[string]*netOwners
	cbs  map[int]func(netID string)
	next int
}

func newOwnerCache() *ownerCache {
	return &ownerCache{nets: map[string]*netOwners{}, cbs: map[int]func(string){}}
}

// decodeBlockOwners decodes a block record read from the store into its
// owners. A block that is not where its contents say, or an address
// outside the block, is skipped (and logged): untrusted input.
func (c *Cluster) decodeBlockOwners(netID string, kv *mvccpb.KeyValue) map[netip.Addr]AddrOwner {
	var r blockRecord
	err := json.Unmarshal(kv.Value, &r)
	if err == nil && (!r.Block.IsValid() || string(kv.Key) != c.blockKey(netID, r.Block)) {
		err = badf("block %v stored under another key", r.Block)
	}
	if err != nil {
		c.logInvalid(string(kv.Key), kv.ModRevision, "address block", err)
		return nil
	}
	out := make(map[netip.Addr]AddrOwner, len(r.Addrs))
	for a, o := range r.Addrs {
		if r.Block.Contains(a) {
			out[a] = o
		}
	}
	return out
}

// setBlock replaces (owners nil: removes) one block of a network and
// reports whether the set of owner nodes changed; the caller holds oc.mu.
func (no *netOwners) setBlock(key string, owners map[netip.Addr]AddrOwner) bool {
	moved := false
	for _, a := range no.blocks[key] {
		if o, ok := no.addrs[a]; ok {
			if no.nodes[o.Node]--; no.nodes[o.Node] <= 0 {
				delete(no.nodes, o.Node)
				moved = true
			}
		}
		delete(no.addrs, a)
	}
	delete(no.blocks, key)
	if len(owners) == 0 {
		return moved
	}
	as := make([]netip.Addr, 0, len(owners))
	for a, o := range owners {
		if _, dup := no.addrs[a]; dup {
			continue // in two blocks: untrusted input; the first one holds
		}
		no.addrs[a] = o
		if no.nodes[o.Node]++; no.nodes[o.Node] == 1 {
			moved = true
		}
		as = append(as, a)
	}
	no.blocks[key] = as
	return moved
}

func (oc *ownerCache) netLocked(netID string) *netOwners {
	no := oc.nets[netID]
	if no == nil {
		no = &netOwners{blocks: map[string][]netip.Addr{}, addrs: map[netip.Addr]AddrOwner{}, nodes: map[string]int{}}
		oc.nets[netID] = no
	}
	return no
}

// FollowOwners keeps the owners of network netID's addresses from a watch
// of its blocks until ctx is done (then forgets them), so CheckAdverts
// judges the network's advertisements without store calls. The engine
// runs it for every network it watches the advertisements of; for a
// network nobody follows, CheckAdverts reads the owners when it needs them.
// The advertisement hub follows the owners of the networks it watches too
// (it watches the advertisements of the owner nodes only); all followers
// of a network share one watch. It returns when ctx is done or the
// Cluster closes.
func (c *Cluster) FollowOwners(ctx context.Context, netID string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	release := c.followOwners(netID)
	defer release()
	select {
	case <-ctx.Done():
	case <-c.ctx.Done():
	}
	return c.watchEnd(ctx)
}

// followOwners adds a follower of a network's owners, starting the
// network's block watch for the first; release removes it (the last one
// stops the watch and forgets the owners).
func (c *Cluster) followOwners(netID string) (release func()) {
	oc := c.owners
	oc.mu.Lock()
	no := oc.netLocked(netID)
	if no.followers++; no.followers == 1 {
		ctx, cancel := context.WithCancel(c.ctx)
		no.stop = cancel
		c.bg.Add(1)
		go func() {
			defer c.bg.Done()
			c.watchOwners(ctx, netID, no)
		}()
	}
	oc.mu.Unlock()
	return sync.OnceFunc(func() {
		oc.mu.Lock()
		defer oc.mu.Unlock()
		if no.followers--; no.followers == 0 {
			no.stop()
			if oc.nets[netID] == no {
				delete(oc.nets, netID)
			}
		}
	})
}

// watchOwners keeps no (network netID's owners) until ctx is done: a watch
// of the network's blocks, a first listing, then the events one by one.
func (c *Cluster) watchOwners(ctx context.Context, netID string, no *netOwners) {
	oc := c.owners
	prefix := c.blocksPrefix(netID)
	first := true
	watchPrefix(ctx, c, prefix, 0, func(kvs []*mvccpb.KeyValue, rev int64) {
		// The first listing is not news for OnOwners; a listing after a
		// compaction may be.
		c.setOwners(netID, kvs, rev, !first)
		first = false
	}, func(evs []*clientv3.Event, rev int64) {
		c.ownerEvents.Add(int64(len(evs)))
		oc.mu.Lock()
		if oc.nets[netID] != no {
			oc.mu.Unlock()
			return
		}
		changed, moved := false, false
		for _, ev := range evs {
			if ev.Kv.ModRevision <= no.rev {
				continue // a fresh read already holds it
			}
			var owners map[netip.Addr]AddrOwner
			if ev.Type == clientv3.EventTypePut {
				owners = c.decodeBlockOwners(netID, ev.Kv)
			}
			moved = no.setBlock(string(ev.Kv.Key), owners) || moved
			changed = true
		}
		no.rev = max(no.rev, rev)
		cbs := oc.callbacksLocked()
		oc.mu.Unlock()
		if moved {
			c.hub.ownersMoved(netID)
		}
		if changed {
			for _, fn := range cbs {
				fn(netID)
			}
		}
	})
}

// ownerNodes returns the nodes holding addresses of a followed network,
// and false while they are not known yet (or the network is not followed).
func (c *Cluster) ownerNodes(netID string) ([]string, bool) {
	oc := c.owners
	oc.mu.Lock()
	defer oc.mu.Unlock()
	no := oc.nets[netID]
	if no == nil || no.rev == 0 {
		return nil, false
	}
	return slices.Collect(maps.Keys(no.nodes)), true
}

// setOwners replaces a network's owners with a listing made at rev if it
// is newer than what is held, and reports whether it was taken. With
// notify, the OnOwners callbacks hear of it.
func (c *Cluster) setOwners(netID string, kvs []*mvccpb.KeyValue, rev int64, notify bool) bool {
	blocks := make(map[string]map[netip.Addr]AddrOwner, len(kvs))
	for _, kv := range kvs {
		blocks[string(kv.Key)] = c.decodeBlockOwners(netID, kv)
	}
	oc := c.owners
	oc.mu.Lock()
	no := oc.nets[netID]
	if no == nil || rev <= no.rev {
		oc.mu.Unlock()
		return false
	}
	old, oldNodes, first := no.addrs, no.nodes, no.rev == 0
	no.blocks, no.addrs, no.nodes, no.rev = map[string][]netip.Addr{}, map[netip.Addr]AddrOwner{}, map[string]int{}, rev
	for k, owners := range blocks {
		no.setBlock(k, owners)
	}
	changed := !maps.Equal(old, no.addrs)
	moved := first || !sameKeys(oldNodes, no.nodes)
	cbs := oc.callbacksLocked()
	oc.mu.Unlock()
	if moved {
		c.hub.ownersMoved(netID)
	}
	if notify && changed {
		for _, fn := range cbs {
			fn(netID)
		}
	}
	return true
}

func (oc *ownerCache) callbacksLocked() []func(string) {
	var out []func(string)
	for _, id := range slices.Sorted(maps.Keys(oc.cbs)) {
		out = append(out, oc.cbs[id])
	}
	return out
}

// OnOwners registers fn to be called with a network's ID when the owners of
// its global addresses change (an address is allocated, released or
// collected) in a network followed with FollowOwners: advertisements of
// the network may need judging again. fn runs on the watch goroutine and
// must not block for long. The returned func unregisters fn.
func (c *Cluster) OnOwners(fn func(netID string)) (unregister func()) {
	oc := c.owners
	oc.mu.Lock()
	defer oc.mu.Unlock()
	id := oc.next
	oc.next++
	oc.cbs[id] = fn
	return func() {
		oc.mu.Lock()
		defer oc.mu.Unlock()
		delete(oc.cbs, id)
	}
}

// ownersOf returns a copy of a network's address owners and the revision
// they are complete at (0 when the network is not followed).
func (c *Cluster) ownersOf(netID string) (map[netip.Addr]AddrOwner, int64) {
	oc := c.owners
	oc.mu.Lock()
	defer oc.mu.Unlock()
	no := oc.nets[netID]
	if no == nil {
		return map[netip.Addr]AddrOwner{}, 0
	}
	return maps.Clone(no.addrs), no.rev
}

// readOwners reads a network's address owners from the store (one call).
func (c *Cluster) readOwners(ctx context.Context, netID string) (map[netip.Addr]AddrOwner, []*mvccpb.KeyValue, int64, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.blocksPrefix(netID), clientv3.WithPrefix())
	if err != nil {
		return nil, nil, 0, unavailable("read address owners", err)
	}
	out := map[netip.Addr]AddrOwner{}
	for _, kv := range resp.Kvs {
		maps.Copy(out, c.decodeBlockOwners(netID, kv))
	}
	return out, resp.Kvs, resp.Header.Revision, nil
}

// watchPrefix follows every key under prefix event by event: apply gets
// each watch response's events and the revision they bring the caller's
// state to; reset gets a whole listing (first, when fromRev is 0, and
// after etcd compacted past the last revision seen, so changes may have
// been missed). With fromRev > 0 the caller holds the state as of fromRev.
// It never gives up: a broken watch resumes from the last revision seen.
// It returns when ctx is done or the Cluster closes.
//
// A listing is made after the watch is created (etcd confirms it with the
// store's revision), and the watch's events up to the listing's revision
// are skipped: the watch starts at the store's current revision, so etcd
// counts it among its synced watchers at once. A watch created from a past
// revision (a read, then a watch from the read's revision) starts unsynced:
// etcd catches it up from its backend under the lock its writes take, which
// with many members creating watches while others write stalls every
// write.
func watchPrefix(ctx context.Context, c *Cluster, prefix string, fromRev int64,
	reset func(kvs []*mvccpb.KeyValue, rev int64), apply func(evs []*clientv3.Event, rev int64)) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	rev := fromRev // 0: list once the watch is created
	for attempt := 0; ctx.Err() == nil; attempt++ {
		compacted, err := func() (bool, error) {
			wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			defer wcancel()
			opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCreatedNotify()}
			if rev > 0 {
				opts = append(opts, clientv3.WithRev(rev+1))
			}
			for resp := range c.cli.Watch(wctx, prefix, opts...) {
				if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
					return true, nil
				}
				if err := resp.Err(); err != nil {
					return false, err
				}
				if resp.Created {
					if rev > 0 {
						continue
					}
					rctx, rcancel := c.reqCtx(ctx)
					got, err := c.cli.Get(rctx, prefix, clientv3.WithPrefix())
					rcancel()
					if err != nil {
						return false, err
					}
					rev = got.Header.Revision
					reset(got.Kvs, rev)
					attempt = 0
					continue
				}
				evs := resp.Events
				for len(evs) > 0 && evs[0].Kv.ModRevision <= rev {
					evs = evs[1:] // the listing holds it
				}
				if len(evs) == 0 {
					continue
				}
				rev = evs[len(evs)-1].Kv.ModRevision
				apply(evs, rev)
				attempt = 0
			}
			return false, ctx.Err()
		}()
		if compacted {
			c.countRelist()
			rev = 0
			attempt = -1
			continue
		}
		if err != nil {
			c.log.Debug("watch: interrupted", "prefix", prefix, "rev", rev, "err", err)
		}
		if backoff(ctx, attempt) != nil {
			break
		}
	}
	return c.watchEnd(ctx)
}

// sameKeys reports whether two maps have the same keys.
func sameKeys[K comparable, V any](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}
