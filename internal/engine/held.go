package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// A global address lives in two stores: allocated in etcd, used by an
// endpoint recorded in bbolt. Between the two writes a crash would leak it
// (allocated, no endpoint) or, released first, give it to two containers.
// So the engine records every global address it holds without an endpoint
// record in the local store (bucket Held): written after the allocation,
// deleted in the transaction that records the endpoint; written in the
// transaction that deletes the endpoint, deleted after the global release.
// At start (and when the cluster store is reached) every address still
// held is released. Only the instant between etcd's commit and the local
// write remains; the cluster's owner records cover it.

type heldAddr struct {
	NetworkID string
	Addr      netip.Addr
}

func heldKey(netID string, a netip.Addr) string { return netID + "/" + a.String() }

// hold records that this node holds a global address without an endpoint.
func (e *Engine) hold(n model.Network, a netip.Addr) error {
	if err := e.opts.Store.Put(store.Held, heldKey(n.ID, a), heldAddr{n.ID, a}); err != nil {
		return fmt.Errorf("record held address %s: %w", a, err)
	}
	return nil
}

// holdTx is hold inside the transaction that deletes an endpoint record;
// unholdTx is its opposite, inside the one that writes it.
func holdTx(tx *store.Tx, n model.Network, ep model.Endpoint) error {
	if n.Scope != model.ScopeGlobal {
		return nil
	}
	for _, a := range epAddrs(ep) {
		if err := tx.Put(store.Held, heldKey(n.ID, a), heldAddr{n.ID, a}); err != nil {
			return err
		}
	}
	return nil
}

func unholdTx(tx *store.Tx, n model.Network, ep model.Endpoint) error {
	if n.Scope != model.ScopeGlobal {
		return nil
	}
	for _, a := range epAddrs(ep) {
		if err := tx.Delete(store.Held, heldKey(n.ID, a)); err != nil {
			return err
		}
	}
	return nil
}

// epAddrs are an endpoint's addresses: IPv4 (none on an IPv6-only
// network), and IPv6 if it has one.
func epAddrs(ep model.Endpoint) []netip.Addr {
	var out []netip.Addr
	if ep.Addr.IsValid() {
		out = append(out, ep.Addr.Addr())
	}
	if ep.Addr6.IsValid() {
		out = append(out, ep.Addr6.Addr())
	}
	return out
}

// releaseHeld releases a held global address and forgets it; if the store
// is unreachable the record stays for the next sweep.
func (e *Engine) releaseHeld(ctx context.Context, n model.Network, a netip.Addr) {
	if err := e.release(ctx, n, a); err != nil {
		return
	}
	if err := e.opts.Store.Delete(store.Held, heldKey(n.ID, a)); err != nil {
		e.log.Warn("forget held address", "network", n.Name, "addr", a, "err", err)
	}
}

// sweepHeld releases every global address held without an endpoint (left
// by a crash), unless an endpoint holds it after all.
func (e *Engine) sweepHeld(ctx context.Context) error {
	if e.cluster() == nil {
		return nil
	}
	held, err := store.List[heldAddr](e.opts.Store, store.Held)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range held {
		e.mu.Lock()
		n, ok := e.networks[h.NetworkID]
		used := false
		for _, ep := range e.endpoints {
			if ep.NetworkID == h.NetworkID && slices.Contains(epAddrs(ep), h.Addr) {
				used = true
			}
		}
		e.mu.Unlock()
		if used || !ok {
			// In use after all, or the network is gone (its pool with it).
			errs = append(errs, e.opts.Store.Delete(store.Held, heldKey(h.NetworkID, h.Addr)))
			continue
		}
		e.log.Info("releasing global address held without an endpoint", "network", n.Name, "addr", h.Addr)
		if err := e.release(ctx, n, h.Addr); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, e.opts.Store.Delete(store.Held, heldKey(h.NetworkID, h.Addr)))
	}
	return errors.Join(errs...)
}
