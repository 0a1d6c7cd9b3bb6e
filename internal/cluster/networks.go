package cluster

// Global network definitions and their VNIs.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxnet/vxnet/internal/model"
)

// VNI range handed out to global networks.
const (
	MinVNI = 4096
	MaxVNI = 1<<24 - 1
)

// maxTxnRetries bounds optimistic-concurrency retries of one operation.
const maxTxnRetries = 50

func (c *Cluster) netIDKey(id string) string     { return c.key("networks", "id", id) }
func (c *Cluster) netNameKey(name string) string { return c.key("networks", "name", name) }
func (c *Cluster) vniKey(v uint32) string        { return c.key("vni", strconv.FormatUint(uint64(v), 10)) }

// checkCreate refuses a network create on a closed Cluster, and a network
// without an ID (or with a slash in it), without a name or with a VNI set
// outside MinVNI-MaxVNI.
func (c *Cluster) checkCreate(n model.Network) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if n.ID == "" || n.Name == "" || strings.Contains(n.ID, "/") {
		return fmt.Errorf("cluster: create network: %w: network needs an ID without slashes and a name", model.ErrInvalid)
	}
	if n.VNI != 0 && (n.VNI < MinVNI || n.VNI > MaxVNI) {
		return fmt.Errorf("cluster: create network %s: %w: VNI %d outside %d-%d", n.Name, model.ErrInvalid, n.VNI, MinVNI, MaxVNI)
	}
	return nil
}

// CreateNetwork stores a global network. Its name must be unused across the
// cluster (else an error wrapping model.ErrConflict, "network with name NAME
// already exists"), and so must its ID. Unless n.VNI is set, it allocates the
// lowest free VNI from 4096 up; the name, ID and VNI keys are written in one
// transaction. It returns the network as stored (with its VNI).
func (c *Cluster) CreateNetwork(ctx context.Context, n model.Network) (model.Network, error) {
	if err := c.checkCreate(n); err != nil {
		return model.Network{}, err
	}
	n.Scope = model.ScopeGlobal
	wantVNI := n.VNI
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	for range maxTxnRetries {
		if wantVNI == 0 {
			v, err := c.freeVNI(rctx)
			if err != nil {
				return model.Network{}, err
			}
			n.VNI = v
		}
		b, err := json.Marshal(n)
		if err != nil {
			return model.Network{}, fmt.Errorf("cluster: create network %s: %w", n.Name, err)
		}
		nameK, idK, vniK := c.netNameKey(n.Name), c.netIDKey(n.ID), c.vniKey(n.VNI)
		resp, err := c.cli.Txn(rctx).If(
			clientv3.Compare(clientv3.CreateRevision(nameK), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(idK), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(vniK), "=", 0),
		).Then(
			clientv3.OpPut(nameK, n.ID),
			clientv3.OpPut(idK, string(b)),
			clientv3.OpPut(vniK, n.ID),
		).Else(
			clientv3.OpGet(nameK, clientv3.WithCountOnly()),
			clientv3.OpGet(idK, clientv3.WithCountOnly()),
		).Commit()
		if err != nil {
			return model.Network{}, unavailable("create network", err)
		}
		if resp.Succeeded {
			return n, nil
		}
		switch {
		case resp.Responses[0].GetResponseRange().Count > 0:
			return model.Network{}, fmt.Errorf("%w: network with name %s already exists", model.ErrConflict, n.Name)
		case resp.Responses[1].GetResponseRange().Count > 0:
			return model.Network{}, fmt.Errorf("%w: network with ID %s already exists", model.ErrConflict, n.ID)
		case wantVNI != 0:
			return model.Network{}, fmt.Errorf("%w: VNI %d is in use by another network", model.ErrConflict, wantVNI)
		}
		// Another network took the VNI meanwhile: pick again.
	}
	return model.Network{}, unavailable("create network", fmt.Errorf("too much contention allocating a VNI"))
}

// vniSpread is how many of the lowest free VNIs freeVNI chooses among.
// Hosts creating networks at the same moment then rarely pick the same VNI,
// so the create transaction seldom loses and retries (always taking the
// lowest made n concurrent creates cost n*(n-1)/2 failed transactions).
const vniSpread = 32

// freeVNI returns a VNI without a key: one of the vniSpread lowest free ones
// from MinVNI up, picked at random.
func (c *Cluster) freeVNI(ctx context.Context) (uint32, error) {
	resp, err := c.cli.Get(ctx, c.key("vni")+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, unavailable("allocate VNI", err)
	}
	used := make(map[uint32]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		v, err := strconv.ParseUint(strings.TrimPrefix(string(kv.Key), c.key("vni")+"/"), 10, 32)
		if err == nil {
			used[uint32(v)] = true
		}
	}
	free := make([]uint32, 0, vniSpread)
	for v := uint32(MinVNI); v <= MaxVNI && len(free) < vniSpread; v++ {
		if !used[v] {
			free = append(free, v)
		}
	}
	if len(free) == 0 {
		return 0, fmt.Errorf("cluster: allocate VNI: %w: all VNIs are in use", model.ErrUnavailable)
	}
	return free[rand.IntN(len(free))], nil
}

// GetNetwork returns a global network by ID (model.ErrNotFound if none).
func (c *Cluster) GetNetwork(ctx context.Context, id string) (model.Network, error) {
	if err := c.checkOpen(); err != nil {
		return model.Network{}, err
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.netIDKey(id))
	if err != nil {
		return model.Network{}, unavailable("get network", err)
	}
	if len(resp.Kvs) == 0 {
		return model.Network{}, fmt.Errorf("cluster: get network %s: %w", id, model.ErrNotFound)
	}
	n, ok := c.decodeNetwork(resp.Kvs[0])
	if !ok {
		return model.Network{}, fmt.Errorf("cluster: get network %s: %w: the stored record is invalid", id, model.ErrNotFound)
	}
	return n, nil
}

// ListNetworks returns every global network, sorted by name, and the store
// revision the list reflects (a starting point for WatchNetworks).
func (c *Cluster) ListNetworks(ctx context.Context) ([]model.Network, int64, error) {
	if err := c.checkOpen(); err != nil {
		return nil, 0, err
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.key("networks", "id")+"/", clientv3.WithPrefix())
	if err != nil {
		return nil, 0, unavailable("list networks", err)
	}
	out := make([]model.Network, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if n, ok := c.decodeNetwork(kv); ok {
			out = append(out, n)
		}
	}
	sortNetworks(out)
	return out, resp.Header.Revision, nil
}

func sortNetworks(ns []model.Network) {
	slices.SortFunc(ns, func(a, b model.Network) int { return strings.Compare(a.Name, b.Name) })
}

// decodeNetwork decodes and validates a network record; an invalid one is
// logged with its key and skipped.
func (c *Cluster) decodeNetwork(kv *mvccpb.KeyValue) (model.Network, bool) {
	key := string(kv.Key)
	var n model.Network
	err := json.Unmarshal(kv.Value, &n)
	if err == nil {
		err = ValidateNetwork(strings.TrimPrefix(key, c.key("networks", "id")+"/"), n)
	}
	if err != nil {
		c.logInvalid(key, kv.ModRevision, "network", err)
		return model.Network{}, false
	}
	return n, true
}

// DeleteNetwork removes a global network with its name, its VNI, its IPAM
// pools and allocations, and any advertisements left in it, in one
// transaction. It returns an error wrapping model.ErrNotFound if there is no
// such network. Whether endpoints still use it is the caller's business.
func (c *Cluster) DeleteNetwork(ctx context.Context, id string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	for range maxTxnRetries {
		resp, err := c.cli.Txn(rctx).Then(
			clientv3.OpGet(c.netIDKey(id)),
			clientv3.OpGet(c.key("ipam", "pools")+"/", clientv3.WithPrefix()),
		).Commit()
		if err != nil {
			return unavailable("delete network", err)
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return fmt.Errorf("cluster: delete network %s: %w", id, model.ErrNotFound)
		}
		var n model.Network
		if err := json.Unmarshal(kvs[0].Value, &n); err != nil {
			return fmt.Errorf("cluster: delete network %s: decode: %w", id, err)
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(c.netIDKey(id)), "=", kvs[0].ModRevision)}
		ops := []clientv3.Op{
			clientv3.OpDelete(c.netIDKey(id)),
			clientv3.OpDelete(c.key("ipam", "subnets", id)+"/", clientv3.WithPrefix()),
			clientv3.OpDelete(c.blocksPrefix(id), clientv3.WithPrefix()),
			// This node's own advertisements; the others' are theirs to
			// withdraw (and vanish with their leases).
			clientv3.OpDelete(c.advertKey(id, "")+"/", clientv3.WithPrefix()),
		}
		// The name and VNI keys go only if they still point at this network.
		nameK, vniK := c.netNameKey(n.Name), c.vniKey(n.VNI)
		nameResp, err := c.cli.Txn(rctx).Then(clientv3.OpGet(nameK), clientv3.OpGet(vniK)).Commit()
		if err != nil {
			return unavailable("delete network", err)
		}
		for i, k := range []string{nameK, vniK} {
			got := nameResp.Responses[i].GetResponseRange().Kvs
			if len(got) == 1 && string(got[0].Value) == id {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", got[0].ModRevision))
				ops = append(ops, clientv3.OpDelete(k))
			}
		}
		for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
			if string(kv.Value) == id {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
				ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			}
		}
		tr, err := c.cli.Txn(rctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return unavailable("delete network", err)
		}
		if tr.Succeeded {
			return nil
		}
	}
	return unavailable("delete network", fmt.Errorf("too much contention"))
}

// WatchNetworks calls fn with every global network (sorted by name) and the
// revision each time the set changes, until ctx is done or the Cluster
// closes. fromRev is 0 to start with the current set, or the revision from
// ListNetworks to see only later changes; see watchSet for how outages and
// compaction are handled. fn runs on the caller's goroutine.
func (c *Cluster) WatchNetworks(ctx context.Context, fromRev int64, fn func([]model.Network, int64)) error {
	return watchSet(ctx, c, c.key("networks", "id")+"/", nil, fromRev, c.decodeNetwork, func(ns []model.Network, rev int64) {
		sortNetworks(ns)
		fn(ns, rev)
	})
}

// CreateNetworkWithPool stores a global network and reserves its subnets
// (n.IPAM, as RequestPool takes them) in the same transaction, so a network
// never exists without its pool nor a pool without its network. It checks
// the block-size options (OptBlockSize, OptBlockSize6). It returns the network as stored,
// with its VNI and effective IPAM configs.
func (c *Cluster) CreateNetworkWithPool(ctx context.Context, n model.Network) (model.Network, error) {
	if err := c.checkCreate(n); err != nil {
		return model.Network{}, err
	}
	if _, err := ParseBlockSize(n.Options); err != nil {
		return model.Network{}, err
	}
	if _, err := ParseBlockSize6(n.Options); err != nil {
		return model.Network{}, err
	}
	n.Scope = model.ScopeGlobal
	wantVNI, wantIPAM := n.VNI, n.IPAM
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	for attempt := range maxTxnRetries {
		pcmps, pops, cfgs, err := c.planPools(rctx, n.ID, wantIPAM)
		if err != nil {
			return model.Network{}, err
		}
		n.IPAM = cfgs
		if wantVNI == 0 {
			if n.VNI, err = c.freeVNI(rctx); err != nil {
				return model.Network{}, err
			}
		}
		b, err := json.Marshal(n)
		if err != nil {
			return model.Network{}, fmt.Errorf("cluster: create network %s: %w", n.Name, err)
		}
		nameK, idK, vniK := c.netNameKey(n.Name), c.netIDKey(n.ID), c.vniKey(n.VNI)
		cmps := append([]clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(nameK), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(idK), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(vniK), "=", 0),
		}, pcmps...)
		ops := append([]clientv3.Op{
			clientv3.OpPut(nameK, n.ID),
			clientv3.OpPut(idK, string(b)),
			clientv3.OpPut(vniK, n.ID),
		}, pops...)
		resp, err := c.cli.Txn(rctx).If(cmps...).Then(ops...).Else(
			clientv3.OpGet(nameK, clientv3.WithCountOnly()),
			clientv3.OpGet(idK, clientv3.WithCountOnly()),
			clientv3.OpGet(vniK, clientv3.WithCountOnly()),
		).Commit()
		if err != nil {
			return model.Network{}, unavailable("create network", err)
		}
		if resp.Succeeded {
			return n, nil
		}
		switch {
		case resp.Responses[0].GetResponseRange().Count > 0:
			return model.Network{}, fmt.Errorf("%w: network with name %s already exists", model.ErrConflict, n.Name)
		case resp.Responses[1].GetResponseRange().Count > 0:
			return model.Network{}, fmt.Errorf("%w: network with ID %s already exists", model.ErrConflict, n.ID)
		case wantVNI != 0 && resp.Responses[2].GetResponseRange().Count > 0:
			return model.Network{}, fmt.Errorf("%w: VNI %d is in use by another network", model.ErrConflict, wantVNI)
		}
		// Another network took the VNI or a pool meanwhile: plan again.
		if err := casPause(rctx, attempt); err != nil {
			return model.Network{}, unavailable("create network", err)
		}
	}
	return model.Network{}, unavailable("create network", fmt.Errorf("too much contention"))
}
