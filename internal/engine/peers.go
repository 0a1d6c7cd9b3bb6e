package engine

import (
	"context"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/engine/peerctl"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// The engine's side of the overlay peer controller: for every global
// network with a local endpoint, this host advertises its endpoints (under
// its node lease) and has the peer controller (package peerctl, its own
// state and lock) watch the advertisements of the others. The controller
// validates each set, keeps it (in memory and, through save, in the local
// store), hands the remote part to the driver's SetPeers (the kernel half,
// overlay.PeerController, diffs it against the kernel) and tells the
// engine, which renders the set into the DNS server's view and the
// firewall's VXLAN filter. The engine reads the sets from the
// controller's snapshot (no lock). The controller's lock is a leaf: the
// engine may call Unwatch under Engine.mu, and the controller never calls
// the engine while holding it.

// PeerSetter is the overlay driver's peer programming ability.
type PeerSetter interface {
	SetPeers(ctx context.Context, n model.Network, peers []Peer) error
	Resync(ctx context.Context) error
}

// Peer is a remote endpoint as the overlay driver programs it.
type Peer = cluster.Advert

// programmedReader is the overlay driver's listing of what the kernel
// holds: FDB ("MAC@VTEP") and neighbour ("IP@MAC") entries.
type programmedReader interface {
	ProgrammedEntries(ctx context.Context, n model.Network) (fdb, neigh []string, err error)
}

// newPeerController builds the peer controller on the engine's drivers,
// view and local store.
func (e *Engine) newPeerController() *peerctl.Controller {
	return peerctl.New(e.ctx, peerctl.Config{
		NodeID: e.opts.NodeID,
		Source: func() peerctl.Source {
			if s := e.adverts(); s != nil {
				return s
			}
			return nil
		},
		Kernel: func(n model.Network) (peerctl.Kernel, bool) {
			ps, ok := e.drivers[n.Driver].(PeerSetter)
			if !ok {
				return nil, false
			}
			return driverKernel{ps}, true
		},
		Network: func(id string) (model.Network, bool) {
			e.mu.Lock()
			defer e.mu.Unlock()
			n, ok := e.networks[id]
			return n, ok
		},
		Save: func(netID string, ads []peerctl.Advert) error {
			return e.opts.Store.Put(store.Peers, netID, ads)
		},
		Changed: func(string) {
			e.syncDNS()
			e.applyFirewall()
		},
		Status: func() cluster.StoreStatus {
			if g := e.cluster(); g != nil {
				return g.Status()
			}
			return cluster.StoreStatus{Reachable: true}
		},
		Log: e.log,
	})
}

// driverKernel is an overlay driver as the peer controller's Kernel.
type driverKernel struct{ PeerSetter }

func (k driverKernel) Programmed(ctx context.Context, n model.Network) (fdb, neigh []string, err error) {
	p, ok := k.PeerSetter.(programmedReader)
	if !ok {
		return nil, nil, nil
	}
	return p.ProgrammedEntries(ctx, n)
}

// afterJoin advertises a new overlay endpoint and starts watching the
// network's peers.
func (e *Engine) afterJoin(n model.Network, ep model.Endpoint) {
	if n.Scope != model.ScopeGlobal || e.cluster() == nil {
		return
	}
	e.advertise(e.ctx, n, ep)
	e.peers.Watch(n)
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
	// The check and the Unwatch are one step under mu (Unwatch takes only
	// the controller's leaf lock): an attach reserved after it watches
	// again after its join, and one reserved before it keeps the watch
	// (and ends it when it fails: doneAttachingLocked).
	e.mu.Lock()
	e.unwatchIfIdleLocked(n.ID)
	e.mu.Unlock()
}

// unwatchIfIdleLocked ends a global network's peer watch when it has no
// local endpoint and no attach in flight. e.mu held.
func (e *Engine) unwatchIfIdleLocked(netID string) {
	if n, ok := e.networks[netID]; ok && n.Scope != model.ScopeGlobal {
		return // never watched
	}
	if e.attaching[netID] > 0 {
		return
	}
	for _, ep := range e.endpoints {
		if ep.NetworkID == netID {
			return
		}
	}
	e.peers.Unwatch(netID)
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
	in := e.peers.Inspect(ctx, n)
	if in.LastError != nil {
		out["LastError"] = in.LastError.Error()
	}
	if in.StoreUnreachable != "" && e.cluster() != nil {
		out["StoreUnreachable"] = in.StoreUnreachable
	}
	if in.KernelError != nil {
		out["KernelError"] = in.KernelError.Error()
	}
	if in.Programming != "" {
		out["Programming"] = in.Programming
	}
	out["Peers"] = in.Peers
	out["KernelFDB"] = in.KernelFDB
	out["KernelNeigh"] = in.KernelNeigh
	if len(in.UnexpectedFDB) > 0 {
		out["UnexpectedFDB"] = in.UnexpectedFDB
	}
	return out
}
