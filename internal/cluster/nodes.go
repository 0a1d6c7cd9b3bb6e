package cluster

// Node identity, the node lease and membership.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxnet/vxnet/internal/model"
)

// Node is one host of the cluster as the store knows it.
type Node struct {
	ID       string     `json:"ID"`
	Hostname string     `json:"Hostname"`
	Addr     netip.Addr `json:"Addr"`
	// State is "up" while the node holds its lease, else "down".
	State string `json:"State"`
	// LastSeen is when the node last refreshed its last-seen time (at
	// most one lease TTL ago while it is up).
	LastSeen time.Time `json:"LastSeen"`
	// Role is "voter" or "learner" for hosts running an etcd member,
	// "client" for the others (and for every host on an external store).
	Role string `json:"Role"`
	// CertExpiry is when the node's cluster certificate runs out (zero on
	// an external store); nodes renew it before.
	CertExpiry time.Time `json:"CertExpiry"`
	// Stale is set when the store did not answer and this is the last
	// view read from it, at AsOf.
	Stale bool      `json:"Stale,omitempty"`
	AsOf  time.Time `json:"AsOf"`
}

// nodeRecord is the durable record under nodes/<id>.
type nodeRecord struct {
	ID       string     `json:"ID"`
	Hostname string     `json:"Hostname"`
	Addr     netip.Addr `json:"Addr"`
	Role     string     `json:"Role"`
	LastSeen time.Time  `json:"LastSeen"`
	// JoinPort is the port of the node's join service (voting members).
	JoinPort   int       `json:"JoinPort,omitempty"`
	CertExpiry time.Time `json:"CertExpiry,omitzero"`
}

// recordNow is the node record as it is now.
func (c *Cluster) recordNow() nodeRecord {
	role := RoleClient
	if c.etcd != nil {
		role = RoleVoter
		if c.etcd.Server.IsLearner() {
			role = RoleLearner
		}
	}
	r := nodeRecord{
		ID: c.opts.NodeID, Hostname: c.opts.Hostname, Addr: c.opts.AdvertiseAddr,
		Role: role, LastSeen: time.Now().UTC(), CertExpiry: c.CertExpiry().UTC(),
	}
	if c.admin != nil {
		r.JoinPort = c.opts.JoinPort
	}
	return r
}

// sameRecord reports whether two node records differ in nothing but
// LastSeen.
func sameRecord(a, b nodeRecord) bool {
	a.LastSeen, b.LastSeen = time.Time{}, time.Time{}
	return a.ID == b.ID && a.Hostname == b.Hostname && a.Addr == b.Addr && a.Role == b.Role &&
		a.JoinPort == b.JoinPort && a.CertExpiry.Equal(b.CertExpiry)
}

// refreshRecord keeps the node's records current, once per TTL: the
// last-seen time goes to seen/<id>, a key nobody watches (so the refresh
// costs one write, not one event per member), and the node record, which
// every member watches, is written only when it changes (role,
// certificate expiry).
func (c *Cluster) refreshRecord(ctx context.Context) {
	c.recMu.Lock()
	defer c.recMu.Unlock()
	if c.leaving {
		return
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	r := c.recordNow()
	c.mu.Lock()
	same, denied := sameRecord(r, c.written), c.seenDenied
	c.mu.Unlock()
	if !denied {
		_, err := c.cli.Put(rctx, c.key("seen", c.opts.NodeID), r.LastSeen.Format(time.RFC3339Nano))
		if errors.Is(err, rpctypes.ErrPermissionDenied) {
			c.log.Info("this node's etcd role predates the seen/ key; refreshing the node record instead")
			c.mu.Lock()
			c.seenDenied = true
			c.mu.Unlock()
			denied = true
		} else if err != nil {
			c.log.Debug("refresh last-seen time", "err", err)
		}
	}
	if same && !denied {
		return
	}
	b, _ := json.Marshal(r)
	if _, err := c.cli.Put(rctx, c.key("nodes", c.opts.NodeID), string(b)); err != nil {
		c.log.Debug("refresh node record", "err", err)
		return
	}
	c.mu.Lock()
	c.written = r
	c.mu.Unlock()
}

// lastSeen parses seen/ keys (untrusted: a time that does not parse is
// skipped, one in the future counts as now).
func (c *Cluster) lastSeen(kvs []*mvccpb.KeyValue, now time.Time) map[string]time.Time {
	out := make(map[string]time.Time, len(kvs))
	p := c.key("seen") + "/"
	for _, kv := range kvs {
		t, err := time.Parse(time.RFC3339Nano, string(kv.Value))
		if err != nil {
			continue
		}
		if t.After(now) {
			t = now
		}
		out[strings.TrimPrefix(string(kv.Key), p)] = t.UTC()
	}
	return out
}

// checkUnderlayFamily refuses to register this node on an external store
// whose other nodes advertise addresses of the other family (embedded
// clusters refuse such a host at the join service, before it is added).
func (c *Cluster) checkUnderlayFamily(ctx context.Context) error {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	prefix := c.key("nodes") + "/"
	resp, err := c.cli.Get(rctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return unavailable("list nodes", err)
	}
	for _, kv := range resp.Kvs {
		var r nodeRecord
		if json.Unmarshal(kv.Value, &r) != nil || validateNode(strings.TrimPrefix(string(kv.Key), prefix), r) != nil || r.ID == c.opts.NodeID {
			continue // an invalid record is the watch's to log
		}
		if underlayFamily(c.opts.AdvertiseAddr, r.Addr) != nil {
			a := c.opts.AdvertiseAddr
			return fmt.Errorf("cluster: open: %w: advertise address %s is %s, but this cluster's hosts advertise %s addresses (node %s: %s): "+
				"a cluster cannot mix underlay address families (a VXLAN device has one local address family); give --advertise-addr an %s address",
				model.ErrInvalid, a, family(a), family(r.Addr), r.ID, r.Addr, family(r.Addr))
		}
	}
	return nil
}

// register grants a new lease, writes the node's leased and durable keys,
// re-publishes this node's advertisements under the new lease and makes it
// the current lease. Callers hold pubMu or run before Open returns.
func (c *Cluster) register(ctx context.Context) error {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	ttl := int64((c.opts.NodeTTL + time.Second - 1) / time.Second)
	g, err := c.cli.Grant(rctx, ttl)
	if err != nil {
		return unavailable("grant node lease", err)
	}
	rec := c.recordNow()
	b, _ := json.Marshal(rec)
	_, err = c.cli.Txn(rctx).Then(
		clientv3.OpPut(c.key("alive", c.opts.NodeID), c.opts.AdvertiseAddr.String(), clientv3.WithLease(g.ID)),
		clientv3.OpPut(c.key("nodes", c.opts.NodeID), string(b)),
	).Commit()
	if err != nil {
		return unavailable("register node", err)
	}
	c.mu.Lock()
	c.written = rec
	c.mu.Unlock()
	c.mu.Lock()
	ads := make([]Advert, 0, len(c.adverts))
	for _, a := range c.adverts {
		ads = append(ads, a)
	}
	c.mu.Unlock()
	for _, a := range ads {
		if _, err := c.cli.Put(rctx, c.advertKey(a.NetworkID, a.EndpointID), string(encodeAdvert(a)), clientv3.WithLease(g.ID)); err != nil {
			return unavailable("re-publish advertisements", err)
		}
	}
	c.mu.Lock()
	c.lease = g.ID
	clear(c.pendingPut) // all written just now
	c.mu.Unlock()
	c.contact()
	return nil
}

func (c *Cluster) currentLease() clientv3.LeaseID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lease
}

// OnLease registers fn to be called after the node lost its lease (a store
// outage longer than the node TTL) and registered again under a new one.
// Leased keys written by others on this node's behalf are gone by then and
// must be written again; advertisements made through Advertise are
// re-published by the Cluster itself before fn runs. fn runs on the lease
// goroutine and must not block for long. The returned func unregisters fn.
func (c *Cluster) OnLease(fn func(ctx context.Context)) (unregister func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.nextCB
	c.nextCB++
	c.callbacks[id] = fn
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.callbacks, id)
	}
}

// leaseLoop keeps the node lease alive, refreshes the node's last-seen time
// (refreshRecord),
// and registers again after the lease is lost. It runs until Close.
func (c *Cluster) leaseLoop(ctx context.Context) {
	for ctx.Err() == nil {
		if ka, err := c.cli.KeepAlive(ctx, c.currentLease()); err == nil {
			c.keepAlive(ctx, ka)
		}
		if ctx.Err() != nil {
			return
		}
		c.recoverLease(ctx)
	}
}

// startLeaseLoop runs leaseLoop until stopLease (or Close).
func (c *Cluster) startLeaseLoop() {
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	c.mu.Lock()
	c.stopLease = func() { cancel(); <-done }
	c.mu.Unlock()
	go func() {
		defer close(done)
		c.leaseLoop(ctx)
	}()
}

// keepAlive consumes keepalive responses until the channel closes (lease
// gone or unreachable for a whole TTL) or the Cluster closes.
func (c *Cluster) keepAlive(ctx context.Context, ka <-chan *clientv3.LeaseKeepAliveResponse) {
	tick := time.NewTicker(c.opts.NodeTTL)
	defer tick.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-retry.C:
			if c.hasPending() {
				c.flushPending(ctx)
			}
		case _, ok := <-ka:
			if !ok {
				return
			}
			c.contact()
		case <-tick.C:
			c.refreshRecord(ctx)
			// Keep a recent view for node lists during an outage: read
			// every ten TTLs; nodes that come or go meanwhile are taken
			// from the node watch (staleNodes). Reading every node when
			// one joins would cost members² reads while a cluster forms.
			c.mu.Lock()
			due := time.Since(c.viewAt) >= 10*c.opts.NodeTTL
			c.mu.Unlock()
			if due {
				c.Nodes(ctx)
			}
		case <-ctx.Done():
			return
		}
	}
}

// recoverLease waits for the store, keeps the lease if it still lives, and
// otherwise registers under a new lease and tells the OnLease callbacks.
func (c *Cluster) recoverLease(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			if sleepCtx(ctx, time.Duration(min(200*attempt, 2000))*time.Millisecond) != nil {
				return
			}
		}
		rctx, cancel := c.reqCtx(ctx)
		ttl, err := c.cli.TimeToLive(rctx, c.currentLease())
		cancel()
		if err != nil {
			c.contactFailed(err)
			c.log.Debug("check node lease", "err", err)
			continue
		}
		c.contact()
		if ttl.TTL > 0 {
			return // still alive: keep it
		}
		c.pubMu.Lock()
		err = c.register(ctx)
		c.pubMu.Unlock()
		if err != nil {
			c.log.Debug("register node again", "err", err)
			continue
		}
		c.log.Info("node lease lost; registered again", "lease", fmt.Sprintf("%x", c.currentLease()))
		c.mu.Lock()
		cbs := make([]func(context.Context), 0, len(c.callbacks))
		for _, id := range slices.Sorted(maps.Keys(c.callbacks)) {
			cbs = append(cbs, c.callbacks[id])
		}
		c.mu.Unlock()
		for _, fn := range cbs {
			fn(ctx)
		}
		return
	}
}

// Nodes lists every node with a record, sorted by hostname then ID. When the
// store does not answer, it returns the last list it read, every node marked
// Stale (AsOf says when it was read); without one it fails with an
// unavailable error.
func (c *Cluster) Nodes(ctx context.Context) ([]Node, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	out, err := c.readNodes(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.lastNodes = slices.Clone(out)
		c.viewAt = time.Now()
		return out, nil
	}
	if c.lastNodes == nil || !errors.Is(err, model.ErrUnavailable) {
		return nil, err
	}
	return c.staleNodesLocked(), nil
}

// nodeSeen is a node record as the node watch delivered it, and when.
type nodeSeen struct {
	r  nodeRecord
	at time.Time
}

// staleNodesLocked is the last node list read, every node marked Stale,
// brought up to date with the node watch: nodes whose records were deleted
// since are left out, and nodes that registered since (or whose records
// changed) are taken from the watch, up as of when it saw them. The caller
// holds mu.
func (c *Cluster) staleNodesLocked() []Node {
	out := make([]Node, 0, len(c.lastNodes))
	known := map[string]bool{}
	for _, n := range c.lastNodes {
		s, ok := c.nodeRecs[n.ID]
		if c.nodeRecs != nil && !ok {
			continue // its record is gone
		}
		known[n.ID] = true
		if ok && s.at.After(n.AsOf) {
			n.Hostname, n.Addr, n.CertExpiry = s.r.Hostname, s.r.Addr, s.r.CertExpiry
		}
		n.Stale = true
		out = append(out, n)
	}
	for id, s := range c.nodeRecs {
		if known[id] || !s.at.After(c.viewAt) {
			continue
		}
		out = append(out, Node{ID: id, Hostname: s.r.Hostname, Addr: s.r.Addr, Role: s.r.Role, State: StateUp,
			LastSeen: s.r.LastSeen, CertExpiry: s.r.CertExpiry, Stale: true, AsOf: s.at})
	}
	slices.SortFunc(out, func(a, b Node) int {
		return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// FreshNodes is Nodes without the stale fallback: it fails when the store
// does not answer.
func (c *Cluster) FreshNodes(ctx context.Context) ([]Node, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	return c.readNodes(ctx)
}

func (c *Cluster) readNodes(ctx context.Context) ([]Node, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Txn(rctx).Then(
		clientv3.OpGet(c.key("nodes")+"/", clientv3.WithPrefix()),
		clientv3.OpGet(c.key("alive")+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(c.key("seen")+"/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, unavailable("list nodes", err)
	}
	seen := c.lastSeen(resp.Responses[2].GetResponseRange().Kvs, time.Now())
	var members []*etcdserverpb.Member
	if ml, err := c.cli.MemberList(rctx); err == nil {
		members = ml.Members
	}
	now := time.Now().UTC()
	alive := make(map[string]bool)
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		alive[strings.TrimPrefix(string(kv.Key), c.key("alive")+"/")] = true
	}
	var out []Node
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		r, ok := c.decodeNode(kv)
		if !ok {
			continue
		}
		if t := seen[r.ID]; t.After(r.LastSeen) {
			r.LastSeen = t
		}
		n := Node{ID: r.ID, Hostname: r.Hostname, Addr: r.Addr, LastSeen: r.LastSeen, Role: r.Role, State: StateDown, CertExpiry: r.CertExpiry, AsOf: now}
		if alive[r.ID] {
			n.State = StateUp
		}
		if members != nil {
			n.Role = roleOf(members, r.ID)
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int {
		return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// RemoveNode forgets a node: its etcd user (so its certificate can
// neither read nor write any more), its lease with every advertisement,
// its etcd membership (if it ran a member) and its record. It refuses this
// node (use Leave) and, unless force, nodes that are up (stop them first).
// A node unknown to both the records and the etcd membership is not
// found. In an embedded cluster only voting members can remove nodes.
func (c *Cluster) RemoveNode(ctx context.Context, nodeID string, force bool) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if nodeID == c.opts.NodeID {
		return fmt.Errorf("cluster: remove node %s: %w: this is the local node; leave the cluster instead", nodeID, model.ErrInvalid)
	}
	admin := c.cli
	if c.id != nil {
		if c.admin == nil {
			return fmt.Errorf("cluster: remove node %s: %w: %v; run it on a voting member", nodeID, model.ErrForbidden, errNotVoter)
		}
		admin = c.admin
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := admin.Txn(rctx).Then(
		clientv3.OpGet(c.key("nodes", nodeID)),
		clientv3.OpGet(c.key("alive", nodeID)),
	).Commit()
	if err != nil {
		return unavailable("remove node", err)
	}
	alive := resp.Responses[1].GetResponseRange().Kvs
	if len(alive) > 0 && !force {
		return fmt.Errorf("cluster: remove node %s: %w: the node is up; stop it first or use --force", nodeID, model.ErrConflict)
	}
	ml, err := admin.MemberList(rctx)
	if err != nil {
		return unavailable("remove node", err)
	}
	isMember := roleOf(ml.Members, nodeID) != RoleClient
	if resp.Responses[0].GetResponseRange().Count == 0 && !isMember {
		return fmt.Errorf("cluster: remove node %s: %w", nodeID, model.ErrNotFound)
	}
	// The user first: from now on the node can change nothing.
	if c.id != nil {
		if err := c.revokeMember(rctx, admin, nodeID); err != nil {
			return unavailable("remove node", err)
		}
	}
	for _, kv := range alive {
		if kv.Lease == 0 {
			continue
		}
		if _, err := admin.Revoke(rctx, clientv3.LeaseID(kv.Lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return unavailable("remove node: revoke its lease", err)
		}
	}
	if isMember {
		if err := c.removeMember(ctx, nodeID); err != nil {
			if errors.Is(err, errLastMember) {
				return fmt.Errorf("cluster: remove node %s: %w: it is the last etcd member", nodeID, model.ErrForbidden)
			}
			return err
		}
	}
	adverts := c.key("adverts", nodeID) + "/"
	if _, err := admin.Txn(rctx).Then(
		clientv3.OpDelete(c.key("nodes", nodeID)),
		clientv3.OpDelete(c.key("alive", nodeID)),
		clientv3.OpDelete(c.key("seen", nodeID)),
		clientv3.OpDelete(adverts, clientv3.WithPrefix()),
	).Commit(); err != nil {
		return unavailable("remove node", err)
	}
	return nil
}

// Leave takes this node out of the cluster for good: it revokes the node
// lease (withdrawing every advertisement), deletes the node record, removes
// the etcd member if this host runs one (and its data directory), and closes
// the Cluster. On a store error nothing is closed, so Leave can be retried.
func (c *Cluster) Leave(ctx context.Context) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	// Stop the lease goroutine first, or it would register again as soon
	// as the lease is revoked.
	c.mu.Lock()
	stop := c.stopLease
	c.mu.Unlock()
	stop()
	// No record write from here on (the membership goroutine refreshes
	// the record when this host's role changes): one that raced the
	// delete below would leave the node listed, down, for good.
	c.recMu.Lock()
	c.leaving = true
	c.recMu.Unlock()
	ok := false
	defer func() {
		if !ok {
			c.recMu.Lock()
			c.leaving = false
			c.recMu.Unlock()
			c.startLeaseLoop()
		}
	}()
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	c.pubMu.Lock()
	c.mu.Lock()
	lease := c.lease
	c.mu.Unlock()
	_, err := c.cli.Revoke(rctx, lease)
	if err == nil {
		c.mu.Lock()
		c.adverts = make(map[string]Advert)
		c.mu.Unlock()
	}
	c.pubMu.Unlock()
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return unavailable("leave: revoke node lease", err)
	}
	if _, err := c.cli.Txn(rctx).Then(
		clientv3.OpDelete(c.key("nodes", c.opts.NodeID)),
		clientv3.OpDelete(c.key("seen", c.opts.NodeID)),
	).Commit(); err != nil {
		return unavailable("leave: delete node record", err)
	}
	if c.afterLeaveDelete != nil {
		c.afterLeaveDelete()
	}
	// The etcd user goes too, so this certificate is useless afterwards:
	// voting members delete it as root (before leaving etcd, while their
	// own member still answers), the others ask a voting member.
	if c.id != nil {
		var err error
		if c.admin != nil {
			err = c.revokeMember(rctx, c.admin, c.opts.NodeID)
		} else {
			err = c.callVoters(ctx, "/v1/leave", struct{}{}, nil)
		}
		if err != nil {
			c.log.Warn("leave: could not delete this node's etcd user", "err", err)
		}
	}
	if c.etcd != nil {
		if err := c.removeMember(ctx, c.opts.NodeID); err != nil && !errors.Is(err, errLastMember) {
			return err
		}
	}
	ok = true
	c.shutdown()
	if c.etcd != nil {
		if err := os.RemoveAll(c.opts.DataDir); err != nil {
			return fmt.Errorf("cluster: leave: remove etcd data: %w", err)
		}
	}
	if err := c.removePKI(); err != nil {
		return fmt.Errorf("cluster: leave: remove certificates: %w", err)
	}
	return nil
}

// decodeNode decodes and validates a node record; an invalid one is logged
// with its key and skipped.
func (c *Cluster) decodeNode(kv *mvccpb.KeyValue) (nodeRecord, bool) {
	key := string(kv.Key)
	var r nodeRecord
	err := json.Unmarshal(kv.Value, &r)
	if err == nil {
		err = validateNode(strings.TrimPrefix(key, c.key("nodes")+"/"), r)
	}
	if err == nil && r.ID != c.opts.NodeID {
		if ferr := underlayFamily(c.opts.AdvertiseAddr, r.Addr); ferr != nil {
			err = fmt.Errorf("%w: %w", errRecord, ferr)
		}
	}
	if err != nil {
		c.logInvalid(key, kv.ModRevision, "node record", err)
		return nodeRecord{}, false
	}
	return r, true
}

// NodeAddrs returns the registered address of every node with a valid
// record, from a watch the Cluster keeps (no store call).
func (c *Cluster) NodeAddrs() map[string]netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.nodeAddrs)
}

// nodeAddrsOf returns the registered addresses of the nodes named by ads
// (copying every node's would cost the cluster's size per check).
func (c *Cluster) nodeAddrsOf(ads []Advert) map[string]netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]netip.Addr{}
	for _, a := range ads {
		if addr, ok := c.nodeAddrs[a.NodeID]; ok {
			out[a.NodeID] = addr
		}
	}
	return out
}

// OnNodes registers fn to be called when the registered node addresses
// change (a node registers, goes or changes address): advertisements
// rejected for an unknown node or VTEP may be valid now. fn runs on the
// watch goroutine and must not block for long. The returned func
// unregisters fn.
func (c *Cluster) OnNodes(fn func()) (unregister func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.nextCB
	c.nextCB++
	c.nodeCBs[id] = fn
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.nodeCBs, id)
	}
}

// loadNodes fills the node address cache from a fresh list and returns the
// revision it reflects.
func (c *Cluster) loadNodes(ctx context.Context) (int64, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.key("nodes")+"/", clientv3.WithPrefix())
	if err != nil {
		return 0, unavailable("list nodes", err)
	}
	rs := make([]nodeRecord, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if r, ok := c.decodeNode(kv); ok {
			rs = append(rs, r)
		}
	}
	c.setNodes(rs)
	return resp.Header.Revision, nil
}

// watchNodes keeps the node address cache until the Cluster closes,
// applying the watch's events one by one (rebuilding the whole set per
// event would cost the cluster's size per event). Records change only when
// a node registers, leaves or changes role or address: the periodic
// last-seen refresh goes to seen/<id>, which nobody watches.
func (c *Cluster) watchNodes(fromRev int64) {
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		prefix := c.key("nodes") + "/"
		watchPrefix(c.ctx, c, prefix, fromRev, func(kvs []*mvccpb.KeyValue, _ int64) {
			rs := make([]nodeRecord, 0, len(kvs))
			for _, kv := range kvs {
				if r, ok := c.decodeNode(kv); ok {
					rs = append(rs, r)
				}
			}
			c.setNodes(rs)
		}, func(evs []*clientv3.Event, _ int64) {
			c.nodeEvents.Add(int64(len(evs)))
			// Decoded outside mu (an invalid record is logged under it).
			type upd struct {
				id string
				r  nodeRecord
				ok bool
			}
			us := make([]upd, 0, len(evs))
			for _, ev := range evs {
				u := upd{id: strings.TrimPrefix(string(ev.Kv.Key), prefix)}
				if ev.Type == clientv3.EventTypePut {
					u.r, u.ok = c.decodeNode(ev.Kv)
				}
				us = append(us, u)
			}
			now := time.Now()
			c.mu.Lock()
			m := c.nodeAddrs
			changed := false
			for _, u := range us {
				id := u.id
				old, had := m[id]
				if u.ok {
					c.nodeRecs[id] = nodeSeen{u.r, now}
					if !had || old != u.r.Addr {
						m[id], changed = u.r.Addr, true
					}
					continue
				}
				delete(c.nodeRecs, id)
				if had {
					delete(m, id)
					changed = true
				}
			}
			var cbs []func()
			if changed {
				cbs = c.nodeCallbacksLocked()
			}
			c.mu.Unlock()
			for _, fn := range cbs {
				fn()
			}
		})
	}()
}

// setNodes replaces the node address cache and tells the OnNodes callbacks
// if it changed.
func (c *Cluster) setNodes(rs []nodeRecord) {
	m := make(map[string]netip.Addr, len(rs))
	now := time.Now()
	recs := make(map[string]nodeSeen, len(rs))
	for _, r := range rs {
		m[r.ID] = r.Addr
		recs[r.ID] = nodeSeen{r, now}
	}
	c.mu.Lock()
	changed := !maps.Equal(m, c.nodeAddrs)
	c.nodeAddrs = m
	for id, s := range c.nodeRecs {
		if n, ok := recs[id]; ok && sameRecord(n.r, s.r) {
			recs[id] = s // unchanged: keep when it was first seen
		}
	}
	c.nodeRecs = recs
	var cbs []func()
	if changed {
		cbs = c.nodeCallbacksLocked()
	}
	c.mu.Unlock()
	for _, fn := range cbs {
		fn()
	}
}

// nodeCallbacksLocked returns the OnNodes callbacks in registration-ID
// order, to be called after mu is released. The caller holds mu.
func (c *Cluster) nodeCallbacksLocked() []func() {
	cbs := make([]func(), 0, len(c.nodeCBs))
	for _, id := range slices.Sorted(maps.Keys(c.nodeCBs)) {
		cbs = append(cbs, c.nodeCBs[id])
	}
	return cbs
}
