package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// Start loads the local store, makes sure the predefined networks exist,
// reconciles the kernel with the store (re-creating what is missing,
// sweeping what carries our marks but is unknown) and resumes watching
// running containers. It is safe after a crash (kill -9): records that
// lost their owner in a crash window (endpoints and sandboxes without a
// container) are deleted, and the kernel objects, namespaces and runtime
// containers that no record names are swept.
func (e *Engine) Start(ctx context.Context) error {
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
	xs, err := store.List[model.External](s, store.Externals)
	if err != nil {
		return err
	}
	orphans, err := e.dropOrphanRecords(nets, ctrs, xs, sbs, eps)
	if err != nil {
		return err
	}
	e.mu.Lock()
	for _, n := range nets {
		e.networks[n.ID] = n
	}
	for _, ep := range eps {
		if !orphans[ep.ID] {
			e.endpoints[ep.ID] = ep
		}
	}
	for _, c := range ctrs {
		e.containers[c.ID] = c
	}
	for _, sb := range sbs {
		if !orphans[sb.ContainerID+"/sandbox"] {
			e.sandboxes[sb.ContainerID] = sb
		}
	}
	e.mu.Unlock()
	if err := e.loadPeers(); err != nil {
		return err
	}

	// IPAM state first, so nothing is handed out twice: the addresses in
	// use are exactly those of the endpoints that exist.
	for _, n := range nets {
		if n.Scope != model.ScopeLocal || len(n.IPAM) == 0 {
			continue
		}
		var state []byte
		if err := s.Get(store.IPAM, n.ID, &state); err != nil && !errors.Is(err, model.ErrNotFound) {
			return err
		}
		var inUse []netip.Addr
		for _, ep := range eps {
			if ep.NetworkID == n.ID && !orphans[ep.ID] {
				inUse = append(inUse, epAddrs(ep)...)
			}
		}
		if err := e.opts.IPAM.Restore(n.ID, n.IPAM, state, inUse); err != nil {
			return fmt.Errorf("restore address state of %s: %w", n.Name, err)
		}
	}
	if err := e.ensurePredefined(ctx); err != nil {
		return err
	}

	var errs []error
	e.mu.Lock()
	sorted := e.sortedNetworksLocked()
	e.mu.Unlock()
	for _, n := range sorted {
		if n.Scope != model.ScopeLocal {
			continue
		}
		if err := e.drivers[n.Driver].CreateNetwork(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("restore network %s: %w", n.Name, err))
		}
	}
	// The VXLAN filter, from the peers kept in the local store, is in place
	// before restoreGlobal brings any VXLAN device up (after a reboot the
	// kernel holds no table at all).
	errs = append(errs, e.applyFirewall())
	e.restoreGlobal(ctx)
	errs = append(errs, e.sweepHeld(ctx))
	errs = append(errs, e.restoreExternals(ctx, xs))

	// Containers: refresh state, re-plumb sandboxes, watch running ones.
	silent := false // the runtime did not answer for a previous container
	for _, c := range ctrs {
		st, err := e.stateAtStart(ctx, c.ID, silent)
		silent = err != nil && !errors.Is(err, model.ErrNotFound)
		running := err == nil && st.Status == "running"
		if silent {
			// Not known: the record stays as it is (a running
			// container keeps its ports) and the exit watcher finds
			// out once the runtime answers.
			e.log.Warn("container state unknown at start; keeping its record", "name", c.Name, "err", err)
			running, st.Paused = c.State == model.StateRunning, c.Paused
		} else if c.State == model.StateRunning && !running {
			code, finished := 0, time.Time{}
			if err == nil {
				code, finished = st.ExitCode, st.FinishedAt
			}
			e.setExited(c.ID, code, finished)
		}
		if !running {
			e.releasePorts(c.ID) // the firewall is applied below
		} else if st.Paused != c.Paused {
			e.setPausedRecord(c.ID, st.Paused)
		}
		if err := e.ensureSandbox(ctx, c); err != nil {
			errs = append(errs, err)
		}
		if running {
			e.mu.Lock()
			e.watchExitLocked(c.ID)
			e.mu.Unlock()
		}
	}
	e.mu.Lock()
	var autoRemove []model.Container
	for _, c := range e.containers {
		if c.AutoRemove && c.State == model.StateExited {
			autoRemove = append(autoRemove, c)
		}
	}
	e.mu.Unlock()
	for _, c := range autoRemove {
		unlock := e.ctrOps.lock(c.ID)
		errs = append(errs, e.removeContainer(ctx, c, true))
		unlock()
	}
	errs = append(errs, e.sweep(ctx))
	e.mu.Lock()
	var ids []string
	for id := range e.containers {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	e.namesChanged(ids...)
	errs = append(errs, e.applyFirewall())
	e.startBackground()
	// Restart policies act in the background: the API answers meanwhile.
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.restartAtStart(e.ctx)
	}()
	if err := errors.Join(errs...); err != nil {
		e.log.Warn("restore finished with errors", "err", err)
	}
	e.mu.Lock()
	nn, nc := len(e.networks), len(e.containers)
	e.mu.Unlock()
	e.log.Info("engine started", "networks", nn, "containers", nc)
	return nil
}

// stateAtStart asks the runtime for a container's state, again a few times
// (about 3 s in all) while it does not answer: at start it may still be
// busy, and a running container taken for exited would lose its ports.
// once asks only once (the runtime did not answer for the previous
// container: a start with many containers does not wait 3 s for each).
func (e *Engine) stateAtStart(ctx context.Context, id string, once bool) (RuntimeState, error) {
	wait := 100 * time.Millisecond
	for i := 0; ; i++ {
		st, err := e.opts.Runtime.State(ctx, id)
		if err == nil || errors.Is(err, model.ErrNotFound) || i == 5 || once {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// dropOrphanRecords deletes, in one transaction, the records a crash left
// without their owner: endpoints whose container (or external attachment)
// is not recorded, and sandboxes whose container is not. Their kernel objects are swept with the other unknown ones;
// their global addresses are released after the local delete. It returns
// the IDs dropped (endpoint IDs, and "<container ID>/sandbox").
func (e *Engine) dropOrphanRecords(nets []model.Network, ctrs []model.Container, xs []model.External, sbs []model.Sandbox, eps []model.Endpoint) (map[string]bool, error) {
	have := map[string]bool{}
	for _, c := range ctrs {
		have[c.ID] = true
	}
	owners := map[string]bool{}
	for _, x := range xs {
		owners[x.ID] = true
	}
	drop := map[string]bool{}
	var dropEps []model.Endpoint
	for _, ep := range eps {
		if !have[ep.ContainerID] && !owners[ep.ContainerID] {
			drop[ep.ID] = true
			dropEps = append(dropEps, ep)
		}
	}
	var dropSbs []string
	for _, sb := range sbs {
		if !have[sb.ContainerID] {
			drop[sb.ContainerID+"/sandbox"] = true
			dropSbs = append(dropSbs, sb.ContainerID)
		}
	}
	if len(drop) == 0 {
		return drop, nil
	}
	byID := map[string]model.Network{}
	for _, n := range nets {
		byID[n.ID] = n
	}
	err := e.opts.Store.Update(func(tx *store.Tx) error {
		for _, ep := range dropEps {
			if err := tx.Delete(store.Endpoints, ep.ID); err != nil {
				return err
			}
			// Its global address is released by sweepHeld.
			if err := holdTx(tx, byID[ep.NetworkID], ep); err != nil {
				return err
			}
		}
		for _, id := range dropSbs {
			if err := tx.Delete(store.Sandboxes, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("drop orphaned records: %w", err)
	}
	for _, ep := range dropEps {
		e.log.Info("dropped endpoint without container", "endpoint", ep.ID[:12], "addr", ep.Addr)
	}
	for _, id := range dropSbs {
		e.log.Info("dropped sandbox without container", "container", id[:12])
	}
	return drop, nil
}

func (e *Engine) sortedNetworksLocked() []model.Network {
	var out []model.Network
	for _, n := range e.networks {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// ensurePredefined creates bridge, host and none once per host; their
// IDs are kept in the store. Start runs it before anything else can.
func (e *Engine) ensurePredefined(ctx context.Context) error {
	have := map[string]model.Network{}
	e.mu.Lock()
	for _, n := range e.networks {
		if n.Predefined {
			have[n.Name] = n
		}
	}
	e.mu.Unlock()
	// The default bridge follows --bip: if it changed, re-make the network.
	if br, ok := have[model.NetBridge]; ok {
		want := e.opts.BridgeIP
		if len(br.IPAM) == 0 || br.IPAM[0].Gateway != want.Addr() || br.IPAM[0].Subnet != want.Masked() {
			e.mu.Lock()
			inUse := len(e.endpointsOnLocked(br.ID)) > 0
			e.mu.Unlock()
			if !inUse {
				if err := e.drivers["bridge"].DeleteNetwork(ctx, br); err != nil {
					return fmt.Errorf("remake default bridge: %w", err)
				}
				err := e.opts.Store.Update(func(tx *store.Tx) error {
					if err := tx.Delete(store.Networks, br.ID); err != nil {
						return err
					}
					return tx.Delete(store.IPAM, br.ID)
				})
				if err != nil {
					return fmt.Errorf("remake default bridge: %w", err)
				}
				e.opts.IPAM.ReleasePool(br.ID)
				e.mu.Lock()
				delete(e.networks, br.ID)
				e.mu.Unlock()
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
			if err := e.createLocalNetwork(ctx, e.drivers["bridge"], &n); err != nil {
				return fmt.Errorf("create default bridge: %w", err)
			}
			continue
		}
		if err := e.opts.Store.Put(store.Networks, n.ID, n); err != nil {
			return err
		}
		e.mu.Lock()
		e.networks[n.ID] = n
		e.mu.Unlock()
	}
	return nil
}

// sweep removes kernel objects, namespaces and runtime containers that
// carry our marks but that the store does not know (crash leftovers).
func (e *Engine) sweep(ctx context.Context) error {
	var errs []error
	var nets []model.Network
	var eps []model.Endpoint
	known := map[string]bool{}
	ctrs := map[string]bool{}
	e.mu.Lock()
	for _, n := range e.networks {
		nets = append(nets, n)
	}
	for _, ep := range e.endpoints {
		eps = append(eps, ep)
	}
	for _, sb := range e.sandboxes {
		if sb.NetnsPath != "" {
			known[filepath.Base(sb.NetnsPath)] = true
		}
	}
	for id := range e.containers {
		ctrs[id] = true
	}
	e.mu.Unlock()
	for _, d := range e.drivers {
		if sw, ok := d.(driver.Sweeper); ok {
			errs = append(errs, sw.Sweep(ctx, nets, eps))
		}
	}
	// Namespaces drivers pin in the same directory (overlay's ov-*) are
	// theirs: the driver's Sweep above already removed those of unknown
	// networks.
	for _, n := range nets {
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
		if !ctrs[id] {
			e.log.Info("sweeping unknown runtime container", "id", id)
			errs = append(errs, e.opts.Runtime.Delete(ctx, id))
		}
	}
	return errors.Join(errs...)
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

// loadPeers reads the cached advertisement sets of global networks.
func (e *Engine) loadPeers() error {
	e.mu.Lock()
	var ids []string
	for id, n := range e.networks {
		if n.Scope == model.ScopeGlobal {
			ids = append(ids, id)
		}
	}
	e.mu.Unlock()
	for _, id := range ids {
		var ads []cluster.Advert
		if err := e.opts.Store.Get(store.Peers, id, &ads); err == nil {
			e.peers.Restore(id, ads)
		} else if !errors.Is(err, model.ErrNotFound) {
			return err
		}
	}
	return nil
}
