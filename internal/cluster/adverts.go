package cluster

// Endpoint advertisements: what a host tells its peers about its endpoints
// on overlay networks. They live under the node lease.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxnet/vxnet/internal/model"
)

// Advert is one endpoint as its host advertises it to the other hosts of
// an overlay network.
type Advert struct {
	NetworkID  string
	EndpointID string
	IP         netip.Addr // invalid on an IPv6-only network
	MAC        net.HardwareAddr
	// IP6 is the endpoint's IPv6 address on a network with IPv6 (invalid
	// otherwise).
	IP6    netip.Addr
	VTEP   netip.Addr // underlay address of the host
	NodeID string
	// Name, Aliases and ContainerID are the container's name, network
	// aliases and ID, so peers on other hosts can resolve it (by its short
	// ID too). Advertisements of older versions have no ContainerID.
	Name        string
	Aliases     []string
	ContainerID string

	// Where the advertisement was read from (empty for one not read from
	// the store): its key, and the store revision that created it.
	key     string
	created int64
	rev     int64 // the revision that last wrote it
}

// Key is the store key the advertisement was read from ("" if it was not
// read from the store).
func (a Advert) Key() string { return a.key }

// advertJSON is the stored form (the MAC as text, not base64).
type advertJSON struct {
	NetworkID   string     `json:"NetworkID"`
	EndpointID  string     `json:"EndpointID"`
	IP          netip.Addr `json:"IP,omitzero"`
	IP6         netip.Addr `json:"IP6,omitzero"`
	MAC         string     `json:"MAC"`
	VTEP        netip.Addr `json:"VTEP"`
	NodeID      string     `json:"NodeID"`
	Name        string     `json:"Name,omitempty"`
	Aliases     []string   `json:"Aliases,omitempty"`
	ContainerID string     `json:"ContainerID,omitempty"`
}

func encodeAdvert(a Advert) []byte {
	b, _ := json.Marshal(advertJSON{a.NetworkID, a.EndpointID, a.IP, a.IP6, a.MAC.String(), a.VTEP, a.NodeID, a.Name, a.Aliases, a.ContainerID})
	return b
}

func decodeAdvert(b []byte) (Advert, error) {
	var j advertJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Advert{}, err
	}
	mac, err := net.ParseMAC(j.MAC)
	if err != nil {
		return Advert{}, err
	}
	return Advert{NetworkID: j.NetworkID, EndpointID: j.EndpointID, IP: j.IP, IP6: j.IP6, MAC: mac, VTEP: j.VTEP, NodeID: j.NodeID,
		Name: j.Name, Aliases: j.Aliases, ContainerID: j.ContainerID}, nil
}

// advertKey is the key of one of this node's advertisements, or with epID
// "" the prefix of its advertisements in a network.
func (c *Cluster) advertKey(netID, epID string) string {
	if epID == "" {
		return c.key("adverts", c.opts.NodeID, netID)
	}
	return c.key("adverts", c.opts.NodeID, netID, epID)
}

// advertsPrefix is the prefix of every node's advertisements.
func (c *Cluster) advertsPrefix() string { return c.key("adverts") + "/" }

// Advertise publishes an endpoint of this node under the node lease, so it
// disappears if the node dies. NodeID is filled in; VTEP defaults to the
// advertise address. Advertising again replaces the entry. The Cluster
// remembers what it advertised and publishes it again under a new lease
// after its lease was lost. If the store is unreachable now, Advertise
// returns an unavailable error but the advertisement is published once the
// store is back (Withdraw cancels it); likewise for a failed Withdraw.
func (c *Cluster) Advertise(ctx context.Context, a Advert) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if a.NetworkID == "" || a.EndpointID == "" || strings.Contains(a.NetworkID+a.EndpointID, "/") || !(a.IP.IsValid() || a.IP6.IsValid()) || len(a.MAC) != 6 {
		return fmt.Errorf("cluster: advertise: %w: need network and endpoint IDs without slashes, an IP (or IPv6 address) and a MAC", model.ErrInvalid)
	}
	a.NodeID = c.opts.NodeID
	if !a.VTEP.IsValid() {
		a.VTEP = c.opts.AdvertiseAddr
	}
	a.MAC = slices.Clone(a.MAC)
	k := c.advertKey(a.NetworkID, a.EndpointID)
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	c.adverts[k] = a
	delete(c.pendingDel, k)
	lease := c.lease
	c.mu.Unlock()
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	_, err := c.cli.Put(rctx, k, string(encodeAdvert(a)), clientv3.WithLease(lease))
	c.mu.Lock()
	if err != nil {
		c.pendingPut[k] = true
	} else {
		delete(c.pendingPut, k)
	}
	c.mu.Unlock()
	if err != nil {
		return unavailable("advertise endpoint", err)
	}
	return nil
}

// Withdraw removes an advertisement of this node. Withdrawing what is not
// advertised is not an error.
func (c *Cluster) Withdraw(ctx context.Context, netID, endpointID string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	k := c.advertKey(netID, endpointID)
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	delete(c.adverts, k)
	delete(c.pendingPut, k)
	c.mu.Unlock()
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	_, err := c.cli.Delete(rctx, k)
	c.mu.Lock()
	if err != nil {
		c.pendingDel[k] = true
	} else {
		delete(c.pendingDel, k)
	}
	c.mu.Unlock()
	if err != nil {
		return unavailable("withdraw endpoint", err)
	}
	return nil
}

// hasPending reports whether advertisements wait to be written.
func (c *Cluster) hasPending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pendingPut)+len(c.pendingDel) > 0
}

// flushPending writes the advertisements and withdrawals that failed
// earlier (the store was unreachable). The lease goroutine calls it.
func (c *Cluster) flushPending(ctx context.Context) {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	lease := c.lease
	puts := make(map[string]Advert)
	for k := range c.pendingPut {
		puts[k] = c.adverts[k]
	}
	dels := slices.Collect(maps.Keys(c.pendingDel))
	c.mu.Unlock()
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	for k, a := range puts {
		if _, err := c.cli.Put(rctx, k, string(encodeAdvert(a)), clientv3.WithLease(lease)); err != nil {
			c.log.Debug("publish pending advertisement", "key", k, "err", err)
			return
		}
		c.mu.Lock()
		delete(c.pendingPut, k)
		c.mu.Unlock()
	}
	for _, k := range dels {
		if _, err := c.cli.Delete(rctx, k); err != nil {
			c.log.Debug("withdraw pending advertisement", "key", k, "err", err)
			return
		}
		c.mu.Lock()
		delete(c.pendingDel, k)
		c.mu.Unlock()
	}
}

// Adverts lists the advertisements of a network, sorted by IP, and the
// revision the list reflects (a starting point for WatchAdverts): those of
// this node and of every node holding addresses of the network in global
// IPAM (the only ones CheckAdverts can accept; see WatchAdverts). A network
// this Cluster watches is served from the watch's set, without a store
// call. Otherwise it reads the network's address blocks, then each owner
// node's advertisements in the network (adverts/<owner>/<network>/) as of
// that read, in one transaction per 100 owners: the cost is the network's
// size, not the cluster's.
func (c *Cluster) Adverts(ctx context.Context, netID string) ([]Advert, int64, error) {
	if err := c.checkOpen(); err != nil {
		return nil, 0, err
	}
	if ads, rev, ok := c.hub.cached(netID); ok {
		return ads, rev, nil
	}
	kvs, rev, err := c.readNetAdverts(ctx, netID, 0)
	if err != nil {
		return nil, 0, unavailable("list advertisements", err)
	}
	out := make([]Advert, 0, len(kvs))
	for _, kv := range kvs {
		if a, ok := c.decodeAdvertKV(kv); ok && a.NetworkID == netID {
			out = append(out, a)
		}
	}
	sortAdverts(out)
	return out, rev, nil
}

// readNetAdverts reads the advertisement records of a network's owner
// nodes (and this node's) as of rev (0: now): the network's blocks, then
// adverts/<owner>/<network>/ of each owner at the blocks' revision, in one
// transaction per 100 owners. It returns the records and the revision.
func (c *Cluster) readNetAdverts(ctx context.Context, netID string, rev int64) ([]*mvccpb.KeyValue, int64, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := c.cli.Get(rctx, c.blocksPrefix(netID), opts...)
	if err != nil {
		return nil, 0, err
	}
	if rev == 0 {
		rev = resp.Header.Revision
	}
	nodes := map[string]bool{c.opts.NodeID: true}
	for _, kv := range resp.Kvs {
		for _, o := range c.decodeBlockOwners(netID, kv) {
			if ValidHexID(o.Node, NodeIDLen) {
				nodes[o.Node] = true
			}
		}
	}
	var ops []clientv3.Op
	for _, id := range slices.Sorted(maps.Keys(nodes)) {
		ops = append(ops, clientv3.OpGet(c.key("adverts", id, netID)+"/", clientv3.WithPrefix(), clientv3.WithRev(rev)))
	}
	var kvs []*mvccpb.KeyValue
	for chunk := range slices.Chunk(ops, 100) {
		tr, err := c.cli.Txn(rctx).Then(chunk...).Commit()
		if err != nil {
			return nil, 0, err
		}
		for _, r := range tr.Responses {
			kvs = append(kvs, r.GetResponseRange().Kvs...)
		}
	}
	return kvs, rev, nil
}

// decodeAdvertKV decodes and validates an advertisement read from the
// store; an invalid one is logged with its key and skipped.
func (c *Cluster) decodeAdvertKV(kv *mvccpb.KeyValue) (Advert, bool) {
	key := string(kv.Key)
	a, err := decodeAdvert(kv.Value)
	if err == nil {
		parts := strings.SplitN(strings.TrimPrefix(key, c.advertsPrefix()), "/", 3)
		for len(parts) < 3 {
			parts = append(parts, "")
		}
		err = ValidateAdvert(parts[0], parts[1], parts[2], a)
	}
	if err != nil {
		c.logInvalid(key, kv.ModRevision, "advertisement", err)
		return Advert{}, false
	}
	a.key, a.created, a.rev = key, kv.CreateRevision, kv.ModRevision
	return a, true
}

func sortAdverts(as []Advert) {
	slices.SortFunc(as, func(a, b Advert) int {
		return cmp.Or(a.IP.Compare(b.IP), cmp.Compare(a.EndpointID, b.EndpointID))
	})
}

// WatchAdverts calls fn with the advertisements of a network (sorted by
// IP) and the revision each time they change, until ctx is done or the
// Cluster closes: the trigger for the overlay's reconciler. The set holds
// the advertisements of this node and of every node holding addresses of
// the network in global IPAM (the only ones CheckAdverts can accept): the
// Cluster watches adverts/<node>/<network>/ of each such node, learned
// from the network's address blocks, so an advertisement reaches only the
// members of its network. fromRev is 0 to start with the current set, or
// the revision from Adverts to see only later changes. All watches of one
// network share the same store watches, applied as deltas (hub.go); a
// burst of changes may reach fn as one call with the latest set.
// Disconnects resume from the last revision; compaction past it makes it
// read again and call fn. fn runs on the caller's goroutine.
func (c *Cluster) WatchAdverts(ctx context.Context, netID string, fromRev int64, fn func([]Advert, int64)) error {
	return c.watchAdverts(ctx, netID, fromRev, fn)
}

// CheckAdverts returns the advertisements of network n that can be
// trusted together (see FilterAdverts), judged against the registered node
// addresses and the owners of the network's global addresses this Cluster
// keeps (FollowOwners, owners.go): each advertisement of another node must
// claim an address global IPAM gave to that node (and endpoint). Only when
// an advertisement claims an address with no owner record here and was
// written after the owners were last known complete (the owner watch lags,
// or the network is not followed) are the network's blocks read, once,
// bounded by the request timeout. If
// that read fails, such advertisements are left out unlogged for now; the
// owner watch's OnOwners callback has them judged again. The rejected ones
// are logged with their keys, once per key and revision.
func (c *Cluster) CheckAdverts(ctx context.Context, n model.Network, ads []Advert) []Advert {
	// An advertisement naming this node that this node did not make is
	// forged: it must not win conflicts as "ours".
	c.mu.Lock()
	mine := make([]Advert, 0, len(ads))
	var forged []Rejected
	for _, a := range ads {
		if a.NodeID == c.opts.NodeID {
			if _, ok := c.adverts[a.key]; !ok {
				forged = append(forged, Rejected{Key: a.key, Advert: a, Reason: badf("names this node, which does not advertise it (stale or forged)")})
				continue
			}
		}
		mine = append(mine, a)
	}
	c.mu.Unlock()
	var owners map[netip.Addr]AddrOwner
	unverified := map[string]bool{}
	if !c.opts.singleKeyIPAM { // the test-only allocator records no owners
		var known int64
		owners, known = c.ownersOf(n.ID)
		lagging := func() bool {
			clear(unverified)
			for _, a := range mine {
				if _, has := owners[a.IP]; !has && a.NodeID != c.opts.NodeID && a.rev > known {
					unverified[a.key] = true
				}
			}
			return len(unverified) > 0
		}
		if lagging() {
			c.ownerReads.Add(1)
			fresh, kvs, rev, err := c.readOwners(ctx, n.ID)
			if err != nil {
				c.log.Debug("read address owners to judge advertisements", "network", n.ID, "err", err)
			} else {
				c.setOwners(n.ID, kvs, rev, false)
				owners, known = fresh, rev
			}
			lagging()
		}
	}
	kept, rejected := FilterAdverts(n, mine, c.nodeAddrsOf(mine), c.opts.NodeID, owners)
	rejected = append(rejected, forged...)
	for _, r := range rejected {
		if unverified[r.Key] {
			c.log.Debug("advertisement left out until its address's owner is known", "key", r.Key)
			continue
		}
		c.logInvalid(r.Key, r.Advert.rev, "advertisement", r.Reason)
	}
	return kept
}
