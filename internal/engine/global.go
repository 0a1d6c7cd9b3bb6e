package engine

import (
	"context"
	"net/netip"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/firewall"
	"github.com/vxnet/vxnet/internal/model"
)

// Global is the cluster store for global-scope (overlay) networks. It is
// nil when the daemon runs without cluster mode.
type Global interface {
	CreateNetwork(ctx context.Context, n model.Network) (model.Network, error)
	DeleteNetwork(ctx context.Context, id string) error
	ListNetworks(ctx context.Context) ([]model.Network, error)
	AllocateAddress(ctx context.Context, netID string, static netip.Addr) (netip.Prefix, error)
	ReleaseAddress(ctx context.Context, netID string, addr netip.Addr) error
}

func (e *Engine) createGlobalNetwork(ctx context.Context, d driver.Driver, n model.Network) (model.Network, error) {
	if e.opts.Global == nil {
		return model.Network{}, errf(model.ErrForbidden,
			"%s networks need cluster mode: start the daemon with --cluster-init, --cluster-join ADDR or --cluster-store etcd://HOST:2379", n.Driver)
	}
	created, err := e.opts.Global.CreateNetwork(ctx, n)
	if err != nil {
		return model.Network{}, err
	}
	e.mu.Lock()
	e.networks[created.ID] = created
	e.mu.Unlock()
	return created, nil
}

func (e *Engine) removeGlobalNetworkLocked(ctx context.Context, n model.Network) error {
	if err := e.opts.Global.DeleteNetwork(ctx, n.ID); err != nil {
		return err
	}
	e.drivers[n.Driver].DeleteNetwork(ctx, n)
	delete(e.networks, n.ID)
	return nil
}

func (e *Engine) globalInUse(ctx context.Context, n model.Network) bool { return false }

func (e *Engine) allocateGlobal(ctx context.Context, n model.Network, static netip.Addr) (netip.Prefix, error) {
	if e.opts.Global == nil {
		return netip.Prefix{}, errf(model.ErrUnavailable, "cluster store unreachable: not in cluster mode")
	}
	return e.opts.Global.AllocateAddress(ctx, n.ID, static)
}

func (e *Engine) releaseGlobal(ctx context.Context, n model.Network, a netip.Addr) {
	if e.opts.Global != nil {
		if err := e.opts.Global.ReleaseAddress(ctx, n.ID, a); err != nil {
			e.log.Warn("release global address", "network", n.Name, "addr", a, "err", err)
		}
	}
}

// restoreGlobalLocked loads global networks into the engine's view.
func (e *Engine) restoreGlobalLocked(ctx context.Context) {
	if e.opts.Global == nil {
		return
	}
	nets, err := e.opts.Global.ListNetworks(ctx)
	if err != nil {
		e.log.Warn("list global networks", "err", err)
		return
	}
	for _, n := range nets {
		e.networks[n.ID] = n
	}
}

// afterJoinLocked and beforeReleaseLocked are hooks for the overlay control
// plane (advertise and withdraw endpoints).
func (e *Engine) afterJoinLocked(ctx context.Context, n model.Network, ep model.Endpoint)     {}
func (e *Engine) beforeReleaseLocked(ctx context.Context, n model.Network, ep model.Endpoint) {}

func (e *Engine) verbose(ctx context.Context, n model.Network) map[string]any { return nil }

func (e *Engine) startBackgroundLocked() {}

// overlayFirewallLocked adds the overlay's underlay protection.
func (e *Engine) overlayFirewallLocked(cfg *firewall.Config) {}
