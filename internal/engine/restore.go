package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/driver/bridge"
	"github.com/vxnet/vxnet/internal/firewall"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// Start loads the local store, makes sure the predefined networks exist,
// reconciles the kernel with the store (re-creating what is missing,
// sweeping what carries our marks but is unknown) and resumes watching
// running containers. It is safe after a crash (kill -9).
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.opts.Store
	nets, err := store.List[model.Network](s, store.Networks)
	if err != nil {
		return err
	}
	eps, err := store.List[model.Endpoint](s, store.Endpoints)
	if err != nil {
		return err
	}
	ctrs, err := store.List[model.Container](s, store.Containers)
	if err != nil {
		return err
	}
	sbs, err := store.List[model.Sandbox](s, store.Sandboxes)
	if err != nil {
		return err
	}
	for _, n := range nets {
		e.networks[n.ID] = n
	}
	for _, ep := range eps {
		e.endpoints[ep.ID] = ep
	}
	for _, c := range ctrs {
		e.containers[c.ID] = c
	}
	for _, sb := range sbs {
		e.sandboxes[sb.ContainerID] = sb
	}
	if err := e.loadPeersLocked(); err != nil {
		return err
	}

	// IPAM state first, so nothing is handed out twice.
	for _, n := range e.networks {
		if n.Scope != model.ScopeLocal || len(n.IPAM) == 0 {
			continue
		}
		var state []byte
		if err := s.Get(store.IPAM, n.ID, &state); err != nil && !errors.Is(err, model.ErrNotFound) {
			return err
		}
		if err := e.opts.IPAM.Restore(n.ID, n.IPAM, state); err != nil {
			return fmt.Errorf("restore address state of %s: %w", n.Name, err)
		}
		// Endpoints written after the last snapshot still hold their addresses.
		for _, ep := range e.endpoints {
			if ep.NetworkID == n.ID {
				e.opts.IPAM.Allocate(n.ID, ep.Addr.Addr())
			}
		}
	}
	if err := e.ensurePredefinedLocked(ctx); err != nil {
		return err
	}

	var errs []error
	for _, n := range e.sortedNetworksLocked() {
		if n.Scope != model.ScopeLocal {
			continue
		}
		if err := e.drivers[n.Driver].CreateNetwork(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("restore network %s: %w", n.Name, err))
		}
	}
	e.restoreGlobalLocked(ctx)
	errs = append(errs, e.restoreExternalsLocked(ctx))

	// Containers: refresh state, re-plumb sandboxes, watch running ones.
	for _, c := range e.containers {
		st, err := e.opts.Runtime.State(ctx, c.ID)
		running := err == nil && st.Status == "running"
		if c.State == model.StateRunning && !running {
			c.State, c.Pid = model.StateExited, 0
			if err == nil {
				c.ExitCode, c.FinishedAt = st.ExitCode, st.FinishedAt
			}
			if c.FinishedAt.IsZero() {
				c.FinishedAt = e.now()
			}
			e.containers[c.ID] = c
			s.Put(store.Containers, c.ID, c)
		}
		if err := e.ensureSandboxLocked(ctx, c); err != nil {
			errs = append(errs, err)
		}
		if running {
			e.watchExitLocked(c.ID)
		}
	}
	for _, c := range e.containers {
		if c.AutoRemove && c.State == model.StateExited {
			errs = append(errs, e.removeContainerLocked(ctx, c, true))
		}
	}
	errs = append(errs, e.sweepLocked(ctx))
	for netID := range e.networks {
		e.refreshHostsLocked(netID)
	}
	for _, c := range e.containers {
		if len(e.endpointsOfLocked(c.ID)) == 0 {
			e.writeSandboxFiles(c, e.sandboxes[c.ID], nil)
		}
	}
	e.applyFirewallLocked(ctx)
	e.startBackgroundLocked()
	if err := errors.Join(errs...); err != nil {
		e.log.Warn("restore finished with errors", "err", err)
	}
	e.log.Info("engine started", "networks", len(e.networks), "containers", len(e.containers))
	return nil
}

func (e *Engine) sortedNetworksLocked() []model.Network {
	var out []model.Network
	for _, n := range e.networks {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// ensurePredefinedLocked creates bridge, host and none once per host; their
// IDs are kept in the store.
func (e *Engine) ensurePredefinedLocked(ctx context.Context) error {
	have := map[string]model.Network{}
	for _, n := range e.networks {
		if n.Predefined {
			have[n.Name] = n
		}
	}
	// The default bridge follows --bip: if it changed, re-make the network.
	if br, ok := have[model.NetBridge]; ok {
		want := e.opts.BridgeIP
		if len(br.IPAM) == 0 || br.IPAM[0].Gateway != want.Addr() || br.IPAM[0].Subnet != want.Masked() {
			if len(e.endpointsOnLocked(br.ID)) == 0 {
				e.drivers["bridge"].DeleteNetwork(ctx, br)
				e.opts.IPAM.ReleasePool(br.ID)
				s := e.opts.Store
				s.Delete(store.Networks, br.ID)
				s.Delete(store.IPAM, br.ID)
				delete(e.networks, br.ID)
				delete(have, model.NetBridge)
			} else {
				e.log.Warn("--bip differs from the default bridge in use; keeping the old one until its containers are gone")
			}
		}
	}
	for _, spec := range []struct{ name, drv string }{{model.NetBridge, "bridge"}, {model.NetHost, "host"}, {model.NetNone, "null"}} {
		if _, ok := have[spec.name]; ok {
			continue
		}
		n := model.Network{ID: newID(), Name: spec.name, Driver: spec.drv, Scope: model.ScopeLocal,
			Created: e.now(), Predefined: true}
		if spec.drv == "bridge" {
			n.IPAM = []model.IPAMConfig{{Subnet: e.opts.BridgeIP.Masked(), Gateway: e.opts.BridgeIP.Addr()}}
			n.Options = map[string]string{
				model.OptBridgeName: DefaultBridgeName, model.OptDefaultBridge: "true",
				model.OptICC: "true", model.OptMasquerade: "true", model.OptMTU: "1500",
			}
			if err := e.createLocalNetworkLocked(ctx, e.drivers["bridge"], &n); err != nil {
				return fmt.Errorf("create default bridge: %w", err)
			}
			continue
		}
		if err := e.opts.Store.Put(store.Networks, n.ID, n); err != nil {
			return err
		}
		e.networks[n.ID] = n
	}
	return nil
}

// sweepLocked removes kernel objects, namespaces and runc containers that
// carry our marks but that the store does not know (crash leftovers).
func (e *Engine) sweepLocked(ctx context.Context) error {
	var errs []error
	var nets []model.Network
	var eps []model.Endpoint
	for _, n := range e.networks {
		nets = append(nets, n)
	}
	for _, ep := range e.endpoints {
		eps = append(eps, ep)
	}
	for _, d := range e.drivers {
		if sw, ok := d.(driver.Sweeper); ok {
			errs = append(errs, sw.Sweep(ctx, nets, eps))
		}
	}
	known := map[string]bool{}
	for _, sb := range e.sandboxes {
		if sb.NetnsPath != "" {
			known[filepath.Base(sb.NetnsPath)] = true
		}
	}
	// Namespaces drivers pin in the same directory (overlay's ov-*) are
	// theirs: the driver's Sweep above already removed those of unknown
	// networks.
	for _, n := range e.networks {
		if p, ok := e.drivers[n.Driver].(interface{ NetnsPath(model.Network) string }); ok {
			known[filepath.Base(p.NetnsPath(n))] = true
		}
	}
	entries, _ := os.ReadDir(e.netnsDir())
	for _, de := range entries {
		if !known[de.Name()] {
			e.log.Info("sweeping unknown sandbox namespace", "name", de.Name())
			errs = append(errs, e.deleteNetns(filepath.Join(e.netnsDir(), de.Name())))
		}
	}
	ids, err := e.opts.Runtime.List(ctx)
	errs = append(errs, err)
	for _, id := range ids {
		if _, ok := e.containers[id]; !ok {
			e.log.Info("sweeping unknown runc container", "id", id)
			errs = append(errs, e.opts.Runtime.Delete(ctx, id))
		}
	}
	return errors.Join(errs...)
}

// applyFirewallLocked renders the firewall from the bridge networks.
func (e *Engine) applyFirewallLocked(ctx context.Context) {
	if e.opts.Firewall == nil {
		return
	}
	var cfg firewall.Config
	for _, n := range e.sortedNetworksLocked() {
		if n.Driver != "bridge" {
			continue
		}
		f := firewall.Network{ID: n.ID, Bridge: bridge.BridgeName(n), Internal: n.Internal,
			ICC: bridgeOpt(n, model.OptICC, true), Masquerade: bridgeOpt(n, model.OptMasquerade, true)}
		for _, c := range n.IPAM {
			f.Subnets = append(f.Subnets, c.Subnet)
		}
		cfg.Networks = append(cfg.Networks, f)
	}
	e.overlayFirewallLocked(&cfg)
	if err := e.opts.Firewall.Apply(ctx, cfg); err != nil {
		e.log.Error("apply firewall", "err", err)
	}
}

// mtuFor is the container MTU on a network.
func (e *Engine) mtuFor(ctx context.Context, n model.Network) int {
	if v, err := strconv.Atoi(n.Options[model.OptMTU]); err == nil && v > 0 {
		return v
	}
	if m, ok := e.drivers[n.Driver].(interface {
		MTU(model.Network) (int, error)
	}); ok {
		if v, err := m.MTU(n); err == nil {
			return v
		}
	}
	return 1500
}

// loadPeersLocked reads the cached advertisement sets of global networks.
func (e *Engine) loadPeersLocked() error {
	for id := range e.networks {
		if e.networks[id].Scope != model.ScopeGlobal {
			continue
		}
		var ads []cluster.Advert
		if err := e.opts.Store.Get(store.Peers, id, &ads); err == nil {
			e.cachedPeers[id] = ads
		} else if !errors.Is(err, model.ErrNotFound) {
			return err
		}
	}
	return nil
}
