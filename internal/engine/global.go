package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/firewall"
	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// Global-scope networks live in the cluster store (etcd). The engine keeps
// a copy of every global network in its view and in the local store, so a
// host re-creates its overlay data plane after a crash even while the
// cluster store is down. Endpoints on global networks are advertised under
// this node's lease; for every global network with a local endpoint the
// engine watches the advertisements of the others and hands the whole set
// to the driver (driver.PeerSetter), which reconciles the kernel. Watches
// only say when to reconcile; a periodic resync repairs drift.

// PeerSetter is the overlay driver's peer programming ability.
type PeerSetter interface {
	SetPeers(ctx context.Context, n model.Network, peers []Peer) error
	Resync(ctx context.Context) error
}

// Peer is a remote endpoint as the overlay driver programs it.
type Peer = cluster.Advert

// GatewayBridge is the local bridge network that gives overlay containers
// a way out (Docker's docker_gwbridge): masquerade on, ICC off.
const GatewayBridge = "vxnet_gwbridge"

func (e *Engine) createGlobalNetwork(ctx context.Context, d driver.Driver, n model.Network) (model.Network, error) {
	g := e.cluster()
	if g == nil && e.opts.ClusterPending {
		return model.Network{}, errf(model.ErrUnavailable, "cluster store unreachable: still connecting; try again")
	}
	if g == nil {
		return model.Network{}, errf(model.ErrForbidden,
			"%s networks need cluster mode: start the daemon with --cluster-init, --cluster-join ADDR or --cluster-store etcd://HOST:2379", n.Driver)
	}
	e.mu.Lock()
	for _, o := range e.networks {
		if o.Name == n.Name && o.Scope == model.ScopeLocal {
			e.mu.Unlock()
			return model.Network{}, errf(model.ErrConflict, "network with name %s already exists", n.Name)
		}
	}
	e.mu.Unlock()
	// The network and its pool in one transaction.
	created, err := g.CreateNetworkWithPool(ctx, n)
	if err != nil {
		if errors.Is(err, ipam.ErrPoolOverlap) || errors.Is(err, ipam.ErrInvalid) || errors.Is(err, ipam.ErrNoAvailablePool) {
			return model.Network{}, ipamClass(err)
		}
		if errors.Is(err, model.ErrConflict) {
			return model.Network{}, errf(model.ErrConflict, "network with name %s already exists", n.Name)
		}
		return model.Network{}, err
	}
	// The local copy follows the store write; if it fails, the network
	// watch records it again.
	if err := e.opts.Store.Put(store.Networks, created.ID, created); err != nil {
		e.log.Error("record global network locally; the network watch retries", "name", n.Name, "err", err)
	} else {
		e.mu.Lock()
		e.networks[created.ID] = created
		e.mu.Unlock()
	}
	e.log.Info("global network created", "name", n.Name, "id", n.ID[:12], "vni", created.VNI)
	return created, nil
}

// removeGlobalNetwork deletes a global network nobody uses any more; the
// caller has marked it as being removed.
func (e *Engine) removeGlobalNetwork(ctx context.Context, n model.Network) error {
	g := e.cluster()
	if g == nil {
		return errf(model.ErrUnavailable, "cluster store unreachable: not in cluster mode")
	}
	ads, _, err := g.Adverts(ctx, n.ID)
	if err != nil {
		return err
	}
	if len(ads) > 0 {
		return errf(model.ErrForbidden, "error while removing network: network %s id %s has active endpoints", n.Name, n.ID)
	}
	if err := g.DeleteNetwork(ctx, n.ID); err != nil && !errors.Is(err, model.ErrNotFound) {
		return err
	}
	return e.forgetGlobal(n)
}

// forgetGlobal drops a global network that is gone from the store: its
// watch, its kernel objects, its local records, then the view.
func (e *Engine) forgetGlobal(n model.Network) error {
	e.mu.Lock()
	e.stopPeerWatchLocked(n.ID)
	e.mu.Unlock()
	var errs []error
	if d, ok := e.drivers[n.Driver]; ok {
		if err := d.DeleteNetwork(e.ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
		}
	}
	err := e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Delete(store.Networks, n.ID); err != nil {
			return err
		}
		return tx.Delete(store.Peers, n.ID)
	})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("delete network record %s: %w", n.Name, err))...)
	}
	e.mu.Lock()
	delete(e.networks, n.ID)
	delete(e.cachedPeers, n.ID)
	e.mu.Unlock()
	errs = append(errs, e.applyFirewall())
	e.log.Info("global network removed", "name", n.Name, "id", n.ID[:12])
	return errors.Join(errs...)
}

func (e *Engine) globalInUse(ctx context.Context, n model.Network) bool {
	if e.cluster() == nil {
		return true
	}
	ads, _, err := e.cluster().Adverts(ctx, n.ID)
	return err != nil || len(ads) > 0
}

func (e *Engine) allocateGlobal(ctx context.Context, n model.Network, static netip.Addr, epID string) (netip.Prefix, error) {
	if e.cluster() == nil {
		return netip.Prefix{}, errf(model.ErrUnavailable, "cluster store unreachable: not in cluster mode")
	}
	p, err := e.cluster().AllocateAddressFor(ctx, n.ID, static, epID)
	if err != nil {
		return netip.Prefix{}, ipamClass(err)
	}
	return p, nil
}

// allocateGlobal6 is allocateGlobal in the network's IPv6 subnets.
func (e *Engine) allocateGlobal6(ctx context.Context, n model.Network, static netip.Addr, epID string) (netip.Prefix, error) {
	if e.cluster() == nil {
		return netip.Prefix{}, errf(model.ErrUnavailable, "cluster store unreachable: not in cluster mode")
	}
	p, err := e.cluster().AllocateAddress6For(ctx, n.ID, static, epID)
	if err != nil {
		return netip.Prefix{}, ipamClass(err)
	}
	return p, nil
}

func (e *Engine) releaseGlobal(ctx context.Context, n model.Network, a netip.Addr) error {
	if e.cluster() == nil {
		return errf(model.ErrUnavailable, "cluster store unreachable: not in cluster mode")
	}
	if err := e.cluster().ReleaseAddress(ctx, n.ID, a); err != nil {
		e.log.Warn("release global address", "network", n.Name, "addr", a, "err", err)
		return err
	}
	return nil
}

// restoreGlobal refreshes the global networks from the cluster store,
// keeping the local copies when the store is unreachable, and re-creates
// the kernel objects of those with local endpoints.
func (e *Engine) restoreGlobal(ctx context.Context) {
	g := e.cluster()
	if g == nil {
		return
	}
	nets, _, err := g.ListNetworks(ctx)
	if err != nil {
		e.log.Warn("cluster store unreachable at start; using the local copy of global networks", "err", err)
	} else {
		e.syncGlobal(nets)
	}
	e.mu.Lock()
	var used []model.Network
	for _, n := range e.networks {
		if n.Scope == model.ScopeGlobal && len(e.endpointsOnLocked(n.ID)) > 0 {
			used = append(used, n)
		}
	}
	e.mu.Unlock()
	for _, n := range used {
		if err := e.drivers[n.Driver].CreateNetwork(ctx, n); err != nil {
			e.log.Warn("restore overlay network", "name", n.Name, "err", err)
		}
	}
}

// syncGlobal makes the view's global networks match the store's.
func (e *Engine) syncGlobal(nets []model.Network) {
	seen := map[string]bool{}
	var put, same, forget []model.Network
	e.mu.Lock()
	local := map[string]bool{}
	for _, n := range e.networks {
		if n.Scope != model.ScopeGlobal {
			local[n.Name] = true
		}
	}
	for _, n := range nets {
		if old, ok := e.networks[n.ID]; (ok && old.Scope != model.ScopeGlobal) || local[n.Name] {
			e.log.Warn("skipping global network that clashes with a local one", "name", n.Name, "id", n.ID)
			continue
		}
		seen[n.ID] = true
		if old, ok := e.networks[n.ID]; !ok || old.Name != n.Name {
			put = append(put, n)
		} else {
			same = append(same, n)
		}
	}
	for id, n := range e.networks {
		if n.Scope != model.ScopeGlobal || seen[id] || e.removingNets[id] {
			continue
		}
		if len(e.endpointsOnLocked(id)) > 0 || e.attaching[id] > 0 {
			continue // still in use here; keep until the endpoints go
		}
		forget = append(forget, n)
	}
	e.mu.Unlock()
	for _, n := range put {
		if err := e.opts.Store.Put(store.Networks, n.ID, n); err != nil {
			e.log.Error("record global network locally", "name", n.Name, "err", err)
			continue
		}
		same = append(same, n)
	}
	e.mu.Lock()
	for _, n := range same {
		e.networks[n.ID] = n
	}
	e.mu.Unlock()
	for _, n := range forget {
		if err := e.forgetGlobal(n); err != nil {
			e.log.Warn("forget global network", "name", n.Name, "err", err)
		}
	}
}

// afterJoin advertises a new overlay endpoint and starts watching the
// network's peers.
func (e *Engine) afterJoin(n model.Network, ep model.Endpoint) {
	if n.Scope != model.ScopeGlobal || e.cluster() == nil {
		return
	}
	e.advertise(e.ctx, n, ep)
	e.startPeerWatch(n)
}

func (e *Engine) advertise(ctx context.Context, n model.Network, ep model.Endpoint) {
	err := e.cluster().Advertise(ctx, cluster.Advert{NetworkID: n.ID, EndpointID: ep.ID,
		IP: ep.Addr.Addr(), IP6: ep.Addr6.Addr(), MAC: ep.MAC, VTEP: e.opts.VTEP, Name: ep.Name, Aliases: ep.Aliases,
		ContainerID: ep.ContainerID})
	if err != nil {
		// The cluster publishes it once the store is back.
		e.log.Warn("advertise endpoint", "network", n.Name, "ip", ep.Addr.Addr(), "ip6", ep.Addr6.Addr(), "err", err)
	}
}

// beforeRelease withdraws an overlay endpoint (already gone from the view)
// and stops watching the network when no local endpoint is left.
func (e *Engine) beforeRelease(ctx context.Context, n model.Network, ep model.Endpoint) {
	if n.Scope != model.ScopeGlobal || e.cluster() == nil {
		return
	}
	if err := e.cluster().Withdraw(ctx, n.ID, ep.ID); err != nil {
		e.log.Warn("withdraw endpoint", "network", n.Name, "err", err)
	}
	e.mu.Lock()
	if len(e.endpointsOnLocked(n.ID)) == 0 && e.attaching[n.ID] == 0 {
		e.stopPeerWatchLocked(n.ID)
	}
	e.mu.Unlock()
}

// peerWatch is the watch of one global network's advertisements.
type peerWatch struct {
	cancel context.CancelFunc
	// prog serialises the programming of this network (store cache,
	// netlink); taken before Engine.mu. The fields below are under mu.
	prog  sync.Mutex
	peers []cluster.Advert // last set seen (all nodes, this one included)
	rev   int64            // store revision of peers
	err   error            // last programming error
	// raw is the last set read from the store, before the checks, so a
	// change of address owners can have it judged again without a store
	// call; rechecking is set while such a recheck is queued.
	raw        []cluster.Advert
	rawRev     int64
	rechecking bool
}

// startPeerWatch starts watching a network's advertisements (or asks the
// running watch for a reconcile).
func (e *Engine) startPeerWatch(n model.Network) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.peerWatches[n.ID]; ok {
		e.kickLocked(n.ID)
		return
	}
	ctx, cancel := context.WithCancel(e.ctx)
	e.peerWatches[n.ID] = &peerWatch{cancel: cancel}
	e.wg.Add(2)
	go func() {
		// The owners of the network's addresses, which the
		// advertisements are judged against.
		defer e.wg.Done()
		e.adverts().FollowOwners(ctx, n.ID)
	}()
	go func() {
		defer e.wg.Done()
		// A first reconcile from a fresh list, then one per change.
		e.resyncNetwork(ctx, n.ID)
		err := e.adverts().WatchAdverts(ctx, n.ID, 0, func(ads []cluster.Advert, rev int64) {
			e.programPeers(ctx, n.ID, ads, rev)
		})
		if err != nil && ctx.Err() == nil {
			e.log.Warn("watch advertisements ended", "network", n.Name, "err", err)
		}
	}()
}

// stopPeerWatchLocked ends a network's watch. Its callers re-render the
// firewall once the endpoint or network is gone, so the network's remote
// VTEPs stop being accepted at once.
func (e *Engine) stopPeerWatchLocked(netID string) {
	if w, ok := e.peerWatches[netID]; ok {
		w.cancel()
		delete(e.peerWatches, netID)
	}
}

// kickLocked asks for a reconcile of one network soon.
func (e *Engine) kickLocked(netID string) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.resyncNetwork(e.ctx, netID)
	}()
}

// resyncNetwork lists the network's advertisements and reprograms the
// kernel. If the store is unreachable the data plane is left as it is.
func (e *Engine) resyncNetwork(ctx context.Context, netID string) {
	ads, rev, err := e.adverts().Adverts(ctx, netID)
	if err != nil {
		e.log.Debug("resync: store unreachable, data plane left as it is", "err", err)
		return
	}
	e.programPeers(ctx, netID, ads, rev)
}

// programPeers hands the advertised set as of store revision rev to the
// driver and refreshes the firewall's list of member VTEPs. The watch and
// the fresh lists of resyncNetwork race each other (and a busy watch lags
// behind): a set older than the one applied last is dropped, else it would
// remove newer peers from the kernel until the next change. The network's
// prog lock orders the programmings; mu is held only to read and record.
func (e *Engine) programPeers(ctx context.Context, netID string, ads []cluster.Advert, rev int64) {
	e.mu.Lock()
	w, ok := e.peerWatches[netID]
	e.mu.Unlock()
	if !ok {
		return
	}
	w.prog.Lock()
	defer w.prog.Unlock()
	e.mu.Lock()
	cur, ok := e.peerWatches[netID]
	n, nok := e.networks[netID]
	if !ok || cur != w || !nok || rev < w.rev {
		e.mu.Unlock()
		return
	}
	w.raw, w.rawRev = ads, rev
	e.mu.Unlock()
	// Records are untrusted: keep only what is valid together (addresses
	// in the subnet and allocated to the advertising node in global IPAM,
	// VTEPs of registered nodes, no address claimed twice; owners the
	// cluster's watch has not delivered yet are read from the store, so
	// outside mu).
	ads = e.adverts().CheckAdverts(ctx, n, ads)
	e.mu.Lock()
	if cur, ok := e.peerWatches[netID]; !ok || cur != w {
		e.mu.Unlock()
		return
	}
	w.peers, w.rev = ads, rev
	changed := !sameAdverts(e.cachedPeers[netID], ads)
	e.mu.Unlock()
	if changed {
		// Keep the last set in the local store (a restart during a store
		// outage keeps peer names and the VXLAN filter).
		if err := e.opts.Store.Put(store.Peers, netID, ads); err != nil {
			e.log.Warn("cache peers", "err", err)
		} else {
			e.mu.Lock()
			e.cachedPeers[netID] = ads
			e.mu.Unlock()
		}
	}
	e.syncDNS()
	ps, ok := e.drivers[n.Driver].(PeerSetter)
	if !ok {
		return
	}
	var remote []Peer
	for _, a := range ads {
		if a.NodeID != e.opts.NodeID {
			remote = append(remote, a)
		}
	}
	err := ps.SetPeers(ctx, n, remote)
	e.mu.Lock()
	w.err = err
	e.mu.Unlock()
	if err != nil {
		e.log.Warn("program overlay peers; will retry", "network", n.Name, "err", err)
		e.retrySoon(netID)
	}
	e.applyFirewall()
}

// retrySoon re-runs a network's reconcile after a netlink error.
func (e *Engine) retrySoon(netID string) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		select {
		case <-time.After(time.Second):
			e.resyncNetwork(e.ctx, netID)
		case <-e.ctx.Done():
		}
	}()
}

// overlayFirewallLocked adds the underlay protection: VXLAN is accepted
// only from a VTEP with endpoints in one of our overlay networks, and only
// with that network's VNI. The peers are the last validated advertisement
// sets (kept in the local store, so the filter is whole again right after
// a restart, before any VXLAN device comes up).
func (e *Engine) overlayFirewallLocked(cfg *firewall.Config) {
	if e.cluster() == nil && !e.opts.ClusterPending {
		return
	}
	cfg.VXLANPort = e.opts.VXLANPort
	seen := map[firewall.VXLANPeer]bool{}
	for netID, n := range e.networks {
		if _, watched := e.peerWatches[netID]; !watched && (n.Scope != model.ScopeGlobal || len(e.endpointsOnLocked(netID)) == 0) {
			continue
		}
		if n.VNI == 0 {
			continue
		}
		for _, a := range e.knownPeersLocked(netID) {
			p := firewall.VXLANPeer{Addr: a.VTEP, VNI: n.VNI}
			if a.NodeID != e.opts.NodeID && a.VTEP.IsValid() && !seen[p] {
				seen[p] = true
				cfg.VXLANPeers = append(cfg.VXLANPeers, p)
			}
		}
	}
	sort.Slice(cfg.VXLANPeers, func(i, j int) bool {
		x, y := cfg.VXLANPeers[i], cfg.VXLANPeers[j]
		if c := x.Addr.Compare(y.Addr); c != 0 {
			return c < 0
		}
		return x.VNI < y.VNI
	})
}

// startBackground advertises the local overlay endpoints, starts their
// networks' watches, the global-network watch and the periodic resync of
// the overlay data plane.
func (e *Engine) startBackground() {
	g := e.cluster()
	if g == nil {
		return
	}
	type netEps struct {
		n   model.Network
		eps []model.Endpoint
	}
	var used []netEps
	e.mu.Lock()
	for _, n := range e.networks {
		if eps := e.endpointsOnLocked(n.ID); n.Scope == model.ScopeGlobal && len(eps) > 0 {
			used = append(used, netEps{n, eps})
		}
	}
	e.mu.Unlock()
	for _, u := range used {
		for _, ep := range u.eps {
			e.advertise(e.ctx, u.n, ep)
		}
		e.startPeerWatch(u.n)
	}
	// A node registering (or changing address) may make advertisements
	// rejected for an unknown VTEP valid: reconcile the watched networks.
	// The callback runs on the cluster's watch goroutine: never wait for
	// the engine lock there.
	unregister := g.OnNodes(func() {
		go func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.ctx.Err() != nil {
				return
			}
			for id := range e.peerWatches {
				e.kickLocked(id)
			}
		}()
	})
	context.AfterFunc(e.ctx, unregister)
	// The owners of a network's addresses changed: judge its last
	// advertisement set again (no store call).
	unregisterOwners := g.OnOwners(func(netID string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if w, ok := e.peerWatches[netID]; ok && !w.rechecking && w.rev > 0 && e.ctx.Err() == nil {
			w.rechecking = true
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				e.mu.Lock()
				w.rechecking = false
				raw, rev := w.raw, w.rawRev
				e.mu.Unlock()
				e.programPeers(e.ctx, netID, raw, rev)
			}()
		}
	})
	context.AfterFunc(e.ctx, unregisterOwners)
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		err := g.WatchNetworks(e.ctx, 0, func(nets []model.Network, rev int64) {
			e.syncGlobal(nets)
		})
		if err != nil && e.ctx.Err() == nil {
			e.log.Warn("watch global networks ended", "err", err)
		}
	}()
	go func() {
		defer e.wg.Done()
		every := e.opts.ResyncInterval
		if every <= 0 {
			every = 30 * time.Second
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-e.ctx.Done():
				return
			case <-t.C:
			}
			e.mu.Lock()
			var ids []string
			for id := range e.peerWatches {
				ids = append(ids, id)
			}
			e.mu.Unlock()
			for _, id := range ids {
				e.resyncNetwork(e.ctx, id)
			}
		}
	}()
}

// verbose is what inspect -v adds for an overlay network: the VNI, the
// overlay namespace, this host's desired peer table and what the kernel
// holds, with any difference marked.
func (e *Engine) verbose(ctx context.Context, n model.Network) map[string]any {
	if n.Scope != model.ScopeGlobal {
		return nil
	}
	out := map[string]any{"VNI": n.VNI}
	if p, ok := e.drivers[n.Driver].(interface{ NetnsPath(model.Network) string }); ok {
		out["Namespace"] = p.NetnsPath(n)
	}
	e.mu.Lock()
	var desired []cluster.Advert
	if w, ok := e.peerWatches[n.ID]; ok {
		desired = w.peers
		if w.err != nil {
			out["LastError"] = w.err.Error()
		}
	}
	self := ""
	var store cluster.StoreStatus
	if g := e.cluster(); g != nil {
		self = e.opts.NodeID
		store = g.Status()
	}
	e.mu.Unlock()
	if self != "" && !store.Reachable {
		out["StoreUnreachable"] = store.Unreachable()
	}
	type peerRow struct {
		IP, MAC, VTEP, Node string
		IP6                 string `json:",omitempty"`
		Local               bool   `json:",omitempty"`
		Status              string // programmed, MISSING, local, unverified since T
	}
	fdb, neigh, err := e.programmed(ctx, n)
	if err != nil {
		out["KernelError"] = err.Error()
	}
	var rows []peerRow
	wantFDB := map[string]bool{}
	for _, a := range desired {
		r := peerRow{IP: a.IP.String(), MAC: a.MAC.String(), VTEP: a.VTEP.String(), Node: a.NodeID}
		if a.IP6.IsValid() {
			r.IP6 = a.IP6.String()
		}
		if a.NodeID == self {
			r.Local, r.Status = true, "local"
		} else {
			key := a.MAC.String() + "@" + a.VTEP.String()
			wantFDB[key] = true
			switch {
			case !(fdb[key] && neigh[a.IP.String()+"@"+a.MAC.String()]) ||
				(a.IP6.IsValid() && !neigh[a.IP6.String()+"@"+a.MAC.String()]):
				r.Status = "MISSING"
			case !store.Reachable:
				// The kernel holds the entry, but whether the peer
				// still exists is unknown until the store answers.
				r.Status = "unverified since " + store.LastContact.UTC().Format(time.RFC3339)
			default:
				r.Status = "programmed"
			}
		}
		rows = append(rows, r)
	}
	var extra []string
	for k := range fdb {
		if !wantFDB[k] && len(k) > 17 && k[:17] != "00:00:00:00:00:00" {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	out["Peers"] = rows
	out["KernelFDB"] = keys(fdb)
	out["KernelNeigh"] = keys(neigh)
	if len(extra) > 0 {
		out["UnexpectedFDB"] = extra
	}
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// programmed reads the kernel's FDB ("MAC@VTEP") and neighbour
// ("IP@MAC") entries of an overlay network through the driver.
func (e *Engine) programmed(ctx context.Context, n model.Network) (map[string]bool, map[string]bool, error) {
	fdb, neigh := map[string]bool{}, map[string]bool{}
	p, ok := e.drivers[n.Driver].(programmedReader)
	if !ok {
		return fdb, neigh, nil
	}
	f, nb, err := p.ProgrammedEntries(ctx, n)
	if err != nil {
		return fdb, neigh, fmt.Errorf("read kernel entries: %w", err)
	}
	for _, x := range f {
		fdb[x] = true
	}
	for _, x := range nb {
		neigh[x] = true
	}
	return fdb, neigh, nil
}

type programmedReader interface {
	ProgrammedEntries(ctx context.Context, n model.Network) (fdb, neigh []string, err error)
}

// knownPeersLocked is the last advertisement set of a global network: from
// its watch once that has delivered, else the copy kept in the local store
// (so a daemon restarted while the store is down keeps its peers' names
// and its VXLAN filter).
func (e *Engine) knownPeersLocked(netID string) []cluster.Advert {
	if w, ok := e.peerWatches[netID]; ok && w.rev > 0 {
		return w.peers
	}
	return e.cachedPeers[netID]
}

func sameAdverts(a, b []cluster.Advert) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.EndpointID != y.EndpointID || x.IP != y.IP || x.IP6 != y.IP6 || x.VTEP != y.VTEP || x.MAC.String() != y.MAC.String() ||
			x.Name != y.Name || strings.Join(x.Aliases, ",") != strings.Join(y.Aliases, ",") || x.ContainerID != y.ContainerID {
			return false
		}
	}
	return true
}
