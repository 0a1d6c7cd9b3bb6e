package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/firewall"
	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// Global-scope networks live in the cluster store (etcd). The engine keeps
// a copy of every global network in its view and in the local store, so a
// host re-creates its overlay data plane after a crash even while the
// cluster store is down. Their endpoints' advertisements and the peer
// programming are in peers.go; here are the networks themselves, global
// addresses, the VXLAN filter and the background watches and resync.

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
	e.peers.Unwatch(n.ID)
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
	e.mu.Unlock()
	e.peers.Forget(n.ID)
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
		if !e.peers.Watched(netID) && (n.Scope != model.ScopeGlobal || len(e.endpointsOnLocked(netID)) == 0) {
			continue
		}
		if n.VNI == 0 {
			continue
		}
		for _, a := range e.peers.Known(netID) {
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
		e.peers.Watch(u.n)
	}
	// A node registering (or changing address) may make advertisements
	// rejected for an unknown VTEP valid: reconcile the watched networks.
	// The callbacks run on the cluster's watch goroutine: KickAll and
	// Recheck take only the controller's leaf lock and start goroutines.
	unregister := g.OnNodes(e.peers.KickAll)
	context.AfterFunc(e.ctx, unregister)
	// The owners of a network's addresses changed: judge its last
	// advertisement set again (no store call).
	unregisterOwners := g.OnOwners(e.peers.Recheck)
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
			e.peers.ResyncAll(e.ctx)
			// The drivers skip a set they already programmed; their
			// Resync lists the kernel and repairs drift.
			for _, d := range e.drivers {
				if ps, ok := d.(PeerSetter); ok {
					if err := ps.Resync(e.ctx); err != nil && e.ctx.Err() == nil {
						e.log.Warn("overlay resync", "err", err)
					}
				}
			}
		}
	}()
}
