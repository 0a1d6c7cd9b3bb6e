package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"

	"github.com/moby/moby/api/types/events"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// DefaultBridgeName is the device of the predefined bridge network.
const DefaultBridgeName = "vxnet0"

func isPredefinedName(name string) bool {
	return name == model.NetBridge || name == model.NetHost || name == model.NetNone
}

// CreateNetwork validates, reserves addresses, builds kernel objects and
// records a new network. A failure at any step undoes the earlier ones.
func (e *Engine) CreateNetwork(ctx context.Context, req api.NetworkCreate) (model.Network, error) {
	if req.Driver == "" {
		req.Driver = "bridge"
	}
	if req.Name == "" {
		return model.Network{}, errf(model.ErrInvalid, "network name must not be empty")
	}
	if !cluster.ValidNetworkName(req.Name) {
		return model.Network{}, errf(model.ErrInvalid, "invalid network name %q: printable characters only, no '/', at most 255 bytes", req.Name)
	}
	if isPredefinedName(req.Name) {
		return model.Network{}, errf(model.ErrForbidden, "operation is not permitted on predefined %s network", req.Name)
	}
	d, ok := e.drivers[req.Driver]
	if req.Driver == "overlay" && e.cluster() == nil && e.opts.ClusterPending {
		return model.Network{}, errf(model.ErrUnavailable, "cluster store unreachable: still connecting; try again")
	}
	if !ok && req.Driver == "overlay" && e.cluster() == nil {
		return model.Network{}, errf(model.ErrForbidden,
			"overlay networks need cluster mode: start the daemon with --cluster-init, --cluster-join ADDR or --cluster-store etcd://HOST:2379")
	}
	if !ok {
		return model.Network{}, errf(model.ErrNotFound, "plugin %q not found", req.Driver)
	}
	if req.Driver == "host" || req.Driver == "null" {
		return model.Network{}, errf(model.ErrForbidden, "only one instance of %q network is allowed", map[string]string{"host": "host", "null": "none"}[req.Driver])
	}
	if v, ok := d.(driver.OptionValidator); ok {
		if err := v.ValidateOptions(req.Options); err != nil {
			return model.Network{}, classify(err, model.ErrInvalid)
		}
	}
	ipamCfg, err := e.ipv6Config(req)
	if err != nil {
		return model.Network{}, err
	}
	n := model.Network{
		ID: newID(), Name: req.Name, Driver: req.Driver, Scope: d.Scope(), Created: e.now(),
		Internal: req.Internal, Attachable: req.Attachable, Labels: req.Labels, Options: req.Options,
		IPAM: ipamCfg, EnableIPv6: req.EnableIPv6, DisableIPv4: req.DisableIPv4,
	}
	if d.Scope() == model.ScopeGlobal {
		gn, err := e.createGlobalNetwork(ctx, d, n)
		if err == nil {
			e.networkEvent(gn, events.ActionCreate, "")
		}
		return gn, err
	}

	e.mu.Lock()
	for _, o := range e.networks {
		if o.Name == n.Name {
			e.mu.Unlock()
			return model.Network{}, errf(model.ErrConflict, "network with name %s already exists", n.Name)
		}
	}
	if e.pendingNetNames[n.Name] {
		e.mu.Unlock()
		return model.Network{}, errf(model.ErrConflict, "network with name %s already exists", n.Name)
	}
	e.pendingNetNames[n.Name] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.pendingNetNames, n.Name)
		e.mu.Unlock()
	}()
	if err := e.createLocalNetwork(ctx, d, &n); err != nil {
		return model.Network{}, err
	}
	if err := e.applyFirewall(); err != nil {
		// Docker's rule: a network whose isolation could not be set up is
		// not created.
		if rerr := e.removeNetwork(context.WithoutCancel(ctx), n.ID); rerr != nil {
			e.log.Warn("undo network create", "name", n.Name, "err", rerr)
		}
		return model.Network{}, fmt.Errorf("create network %s: %w", n.Name, err)
	}
	e.networkEvent(n, events.ActionCreate, "")
	return n, nil
}

// ipv6Config checks the IPv6 part of a network create and returns the IPAM
// request: with --ipv6 and no IPv6 subnet, a default ULA /64 is asked for
// (from the host's pool for a bridge, the cluster's for an overlay)
// (and a default IPv4 pool when only an IPv6 subnet was given, unless the
// network is IPv6-only: --ipv4=false). IPv6 is refused where vxnet does not
// do it.
func (e *Engine) ipv6Config(req api.NetworkCreate) ([]model.IPAMConfig, error) {
	var has4, has6 bool
	for _, c := range req.IPAM {
		if c.Subnet.Addr().Is6() {
			has6 = true
		} else {
			has4 = true
		}
	}
	if req.DisableIPv4 {
		switch {
		case !req.EnableIPv6:
			return nil, errf(model.ErrInvalid, "IPv4 or IPv6 must be enabled")
		case has4:
			return nil, errf(model.ErrInvalid, "an IPv4 subnet needs IPv4 enabled (the network was created with --ipv4=false)")
		}
	}
	if !req.EnableIPv6 {
		if has6 {
			return nil, errf(model.ErrInvalid, "an IPv6 subnet needs --ipv6 (EnableIPv6)")
		}
		return req.IPAM, nil
	}
	if req.Driver != "bridge" && req.Driver != "overlay" {
		return nil, errf(model.ErrInvalid, "vxnet does not support IPv6 on %s networks yet", req.Driver)
	}
	if _, ok := e.opts.IPAM.(IPAM6); !ok && req.Driver == "bridge" {
		return nil, errf(model.ErrInvalid, "vxnet does not support IPv6 with this address allocator")
	}
	out := slices.Clone(req.IPAM)
	if !has4 && !req.DisableIPv4 {
		out = append([]model.IPAMConfig{{}}, out...)
	}
	if !has6 {
		out = append(out, model.IPAMConfig{Subnet: ipam.DefaultIPv6Pool})
	}
	return out, nil
}

// createLocalNetwork reserves the pool, makes the kernel objects and
// persists the network, undoing everything on failure. The caller has
// reserved the name.
func (e *Engine) createLocalNetwork(ctx context.Context, d driver.Driver, n *model.Network) error {
	var routes []netip.Prefix
	if e.opts.HostRoutes != nil {
		r, err := e.opts.HostRoutes()
		if err != nil {
			e.log.Warn("list host routes", "err", err)
		}
		routes = r
	}
	if n.Driver == "bridge" || n.Driver == "macvlan" || len(n.IPAM) > 0 {
		cfgs, err := e.opts.IPAM.RequestPool(n.ID, n.IPAM, routes)
		if err != nil {
			return classify(err, model.ErrInvalid)
		}
		n.IPAM = cfgs
	}
	undo := func() { e.opts.IPAM.ReleasePool(n.ID) }
	if err := d.CreateNetwork(ctx, *n); err != nil {
		undo()
		d.DeleteNetwork(context.WithoutCancel(ctx), *n)
		return fmt.Errorf("create network %s: %w", n.Name, err)
	}
	state, err := e.opts.IPAM.Snapshot(n.ID)
	if err == nil {
		err = e.opts.Store.Update(func(tx *store.Tx) error {
			if err := tx.Put(store.Networks, n.ID, n); err != nil {
				return err
			}
			if state == nil {
				return nil
			}
			return tx.Put(store.IPAM, n.ID, state)
		})
	}
	if err != nil {
		d.DeleteNetwork(context.WithoutCancel(ctx), *n)
		undo()
		return fmt.Errorf("record network %s: %w", n.Name, err)
	}
	e.mu.Lock()
	e.networks[n.ID] = *n
	e.mu.Unlock()
	e.log.Info("network created", "name", n.Name, "id", n.ID[:12], "driver", n.Driver)
	return nil
}

// saveIPAM persists the allocator state of a local network in tx.
func (e *Engine) saveIPAM(tx *store.Tx, n model.Network) error {
	if n.ID == "" || n.Scope != model.ScopeLocal {
		return nil
	}
	state, err := e.opts.IPAM.Snapshot(n.ID)
	if err != nil {
		return fmt.Errorf("snapshot address state of %s: %w", n.Name, err)
	}
	if state == nil {
		return nil
	}
	return tx.Put(store.IPAM, n.ID, state)
}

// ListNetworks returns every network with its local endpoints.
func (e *Engine) ListNetworks(ctx context.Context) ([]api.NetworkView, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []api.NetworkView
	for _, n := range e.networks {
		out = append(out, e.viewLocked(n))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Network.Name < out[j].Network.Name })
	return out, nil
}

func (e *Engine) viewLocked(n model.Network) api.NetworkView {
	return api.NetworkView{Network: n, Endpoints: e.endpointsOnLocked(n.ID)}
}

// InspectNetwork returns one network.
func (e *Engine) InspectNetwork(ctx context.Context, ref string, verbose bool) (api.NetworkView, error) {
	e.mu.Lock()
	n, err := e.networkLocked(ref)
	if err != nil {
		e.mu.Unlock()
		return api.NetworkView{}, err
	}
	v := e.viewLocked(n)
	e.mu.Unlock()
	if verbose {
		v.Verbose = e.verbose(ctx, n)
	}
	return v, nil
}

// RemoveNetwork deletes a user-defined network without endpoints.
func (e *Engine) RemoveNetwork(ctx context.Context, ref string) error {
	e.mu.Lock()
	n, err := e.networkLocked(ref)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return e.removeNetwork(ctx, n.ID)
}

// removeNetwork marks the network as being removed (new attaches refuse),
// deletes its kernel objects and records, then forgets it.
func (e *Engine) removeNetwork(ctx context.Context, id string) error {
	e.mu.Lock()
	n, ok := e.networks[id]
	switch {
	case !ok || e.removingNets[id]:
		e.mu.Unlock()
		return errf(model.ErrNotFound, "network %s not found", id)
	case n.Predefined:
		e.mu.Unlock()
		return errf(model.ErrForbidden, "%s is a pre-defined network and cannot be removed", n.Name)
	case len(e.endpointsOnLocked(n.ID)) > 0 || e.attaching[n.ID] > 0:
		e.mu.Unlock()
		return errf(model.ErrForbidden, "error while removing network: network %s id %s has active endpoints", n.Name, n.ID)
	}
	e.removingNets[id] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.removingNets, id)
		e.mu.Unlock()
	}()
	if n.Scope == model.ScopeGlobal {
		return e.removeGlobalNetwork(ctx, n)
	}
	if err := e.drivers[n.Driver].DeleteNetwork(ctx, n); err != nil {
		return fmt.Errorf("remove network %s: %w", n.Name, err)
	}
	err := e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Delete(store.Networks, n.ID); err != nil {
			return err
		}
		return tx.Delete(store.IPAM, n.ID)
	})
	if err != nil {
		return fmt.Errorf("delete network record %s: %w", n.Name, err)
	}
	e.mu.Lock()
	delete(e.networks, n.ID)
	e.mu.Unlock()
	e.opts.IPAM.ReleasePool(n.ID)
	e.log.Info("network removed", "name", n.Name, "id", n.ID[:12])
	e.networkEvent(n, events.ActionDestroy, "")
	return e.applyFirewall()
}

// PruneNetworks removes every user-defined network without endpoints.
func (e *Engine) PruneNetworks(ctx context.Context) ([]string, error) {
	e.mu.Lock()
	var cands []model.Network
	for _, n := range e.networks {
		if n.Predefined || len(e.endpointsOnLocked(n.ID)) > 0 || e.attaching[n.ID] > 0 {
			continue
		}
		cands = append(cands, n)
	}
	e.mu.Unlock()
	var names []string
	var errs []error
	for _, n := range cands {
		if n.Scope == model.ScopeGlobal && e.globalInUse(ctx, n) {
			continue
		}
		if err := e.removeNetwork(ctx, n.ID); err != nil {
			if !errors.Is(err, model.ErrForbidden) && !errors.Is(err, model.ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		names = append(names, n.Name)
	}
	sort.Strings(names)
	return names, errors.Join(errs...)
}

// bridgeOpt reads a boolean bridge option with a default.
func bridgeOpt(n model.Network, key string, def bool) bool {
	v, ok := n.Options[key]
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return def
	}
	return b
}
