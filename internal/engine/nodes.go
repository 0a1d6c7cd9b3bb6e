package engine

import (
	"context"
	"sort"
	"strings"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

func (e *Engine) notClustered() error {
	return errf(model.ErrUnavailable, "this daemon is not in cluster mode: start it with --cluster-init, --cluster-join ADDR or --cluster-store etcd://HOST:2379")
}

// Nodes lists the cluster's hosts.
func (e *Engine) Nodes(ctx context.Context) ([]api.Node, error) {
	g := e.cluster()
	if g == nil {
		return nil, e.notClustered()
	}
	nodes, err := g.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Node, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, api.Node{ID: n.ID, Hostname: n.Hostname, Addr: n.Addr.String(), State: n.State,
			LastSeen: n.LastSeen, Role: n.Role, Self: n.ID == g.NodeID(), CertExpiry: n.CertExpiry,
			Stale: n.Stale, AsOf: n.AsOf})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out, nil
}

// JoinToken returns the cluster's join token (rotate: a new secret first).
func (e *Engine) JoinToken(ctx context.Context, rotate bool) (api.JoinToken, error) {
	g := e.cluster()
	if g == nil {
		return api.JoinToken{}, e.notClustered()
	}
	tok, err := g.JoinToken(ctx, rotate)
	if err != nil {
		return api.JoinToken{}, err
	}
	return api.JoinToken{Token: tok, JoinAddr: g.JoinAddr()}, nil
}

// RemoveNode removes a host (by ID, unique ID prefix or hostname) from the
// cluster: its etcd user, lease, membership and records. force removes a
// host that is up.
func (e *Engine) RemoveNode(ctx context.Context, ref string, force bool) error {
	g := e.cluster()
	if g == nil {
		return e.notClustered()
	}
	nodes, err := g.Nodes(ctx)
	if err != nil {
		return err
	}
	var match []string
	for _, n := range nodes {
		if n.ID == ref || n.Hostname == ref || n.Addr.String() == ref {
			match = []string{n.ID}
			break
		}
		if strings.HasPrefix(n.ID, ref) {
			match = append(match, n.ID)
		}
	}
	switch len(match) {
	case 0:
		return errf(model.ErrNotFound, "node %s not found", ref)
	case 1:
	default:
		return errf(model.ErrInvalid, "node %s is ambiguous: %d nodes match", ref, len(match))
	}
	if match[0] == g.NodeID() {
		return errf(model.ErrForbidden, "node %s is this host: stop its daemon with a clean leave instead", ref)
	}
	return g.RemoveNode(ctx, match[0], force)
}

// Leave is a clean leave of the cluster: this node's lease and record go,
// its etcd membership is removed, and then the daemon stops (its cluster
// connection is gone; restart it with or without cluster flags). Refused
// while containers are attached to global networks here.
func (e *Engine) Leave(ctx context.Context) error {
	g := e.cluster()
	if g == nil {
		return e.notClustered()
	}
	e.mu.Lock()
	for _, ep := range e.endpoints {
		if n, ok := e.networks[ep.NetworkID]; ok && n.Scope == model.ScopeGlobal {
			e.mu.Unlock()
			return errf(model.ErrForbidden, "cannot leave the cluster: container %s is attached to global network %s", ep.Name, n.Name)
		}
	}
	e.mu.Unlock()
	if err := g.Leave(ctx); err != nil {
		return err
	}
	e.log.Info("left the cluster; stopping")
	if e.opts.OnLeave != nil {
		e.opts.OnLeave()
	}
	return nil
}

var _ api.ClusterBackend = (*Engine)(nil)
