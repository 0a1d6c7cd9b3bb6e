package cluster

// Global IPAM: subnets of global networks are disjoint across the cluster;
// addresses are given out from per-host blocks (blocks.go).
//
// ipam/pools/<subnet>          -> network ID (one key per subnet in use)
// ipam/subnets/<netID>/<nnn>   -> ipam.Subnet JSON (the subnet's config), nnn its index
// ipam/blocks/<netID>/<block>  -> blockRecord JSON (affinity and owned addresses)
//
// Errors from the rules (overlap, exhausted, address in use, unknown
// network) are the ipam package's, as from its local Allocator, so the
// engine maps both scopes alike. Store failures are unavailable errors.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
)

func (c *Cluster) poolsPrefix() string { return c.key("ipam", "pools") + "/" }
func (c *Cluster) subnetsPrefix(netID string) string {
	return c.key("ipam", "subnets", netID) + "/"
}

// RequestPool reserves the subnets of a global network and returns their
// effective configs (gateway filled in). An empty cfgs, or a config with no
// subnet, takes the first /24 of 10.0.0.0/8 that overlaps no global subnet;
// a config whose subnet is ipam.DefaultIPv6Pool takes the first free /64 of
// the cluster's ULA /48 (clusterULA).
// Given subnets must overlap neither each other nor any global subnet (an
// error wrapping ipam.ErrPoolOverlap). The reservation is one transaction
// conditioned on the set of pools being unchanged since it was read, retried
// on contention. A network that already holds pools is ErrInvalid.
func (c *Cluster) RequestPool(ctx context.Context, netID string, cfgs []model.IPAMConfig) ([]model.IPAMConfig, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if netID == "" || strings.Contains(netID, "/") {
		return nil, fmt.Errorf("cluster: request pool: %w: network ID %q", ipam.ErrInvalid, netID)
	}
	if len(cfgs) == 0 {
		cfgs = []model.IPAMConfig{{}}
	}
	if len(cfgs) > 100 {
		return nil, fmt.Errorf("cluster: request pool: %w: too many subnets", ipam.ErrInvalid)
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	for attempt := range maxTxnRetries {
		cmps, ops, out, err := c.planPools(rctx, netID, cfgs)
		if err != nil {
			return nil, err
		}
		tr, err := c.cli.Txn(rctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return nil, unavailable("request pool", err)
		}
		if tr.Succeeded {
			return out, nil
		}
		if err := casPause(rctx, attempt); err != nil {
			return nil, unavailable("request pool", err)
		}
	}
	return nil, unavailable("request pool", errors.New("too much contention"))
}

// planPools reads the pools in use and returns the conditions and writes
// that reserve cfgs for netID, with the effective configs. The conditions
// hold while no pool changed since the read.
func (c *Cluster) planPools(rctx context.Context, netID string, cfgs []model.IPAMConfig) ([]clientv3.Cmp, []clientv3.Op, []model.IPAMConfig, error) {
	if len(cfgs) == 0 {
		cfgs = []model.IPAMConfig{{}}
	}
	if len(cfgs) > 100 {
		return nil, nil, nil, fmt.Errorf("cluster: request pool: %w: too many subnets", ipam.ErrInvalid)
	}
	resp, err := c.cli.Txn(rctx).Then(
		clientv3.OpGet(c.poolsPrefix(), clientv3.WithPrefix()),
		clientv3.OpGet(c.subnetsPrefix(netID), clientv3.WithPrefix(), clientv3.WithCountOnly()),
	).Commit()
	if err != nil {
		return nil, nil, nil, unavailable("request pool", err)
	}
	if resp.Responses[1].GetResponseRange().Count > 0 {
		return nil, nil, nil, fmt.Errorf("cluster: request pool: %w: network %s already holds pools", ipam.ErrInvalid, netID)
	}
	type owned struct {
		p     netip.Prefix
		netID string
	}
	var used []owned
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		p, err := netip.ParsePrefix(strings.TrimPrefix(string(kv.Key), c.poolsPrefix()))
		if err != nil {
			c.log.Warn("skipping malformed pool key", "key", string(kv.Key))
			continue
		}
		used = append(used, owned{p, string(kv.Value)})
	}
	subs := make([]*ipam.Subnet, len(cfgs))
	for i, cfg := range cfgs {
		if !cfg.Subnet.IsValid() || cfg.Subnet == ipam.DefaultIPv6Pool {
			if cfg.IPRange.IsValid() || cfg.Gateway.IsValid() || len(cfg.AuxAddress) > 0 {
				return nil, nil, nil, fmt.Errorf("cluster: request pool: %w: ip-range, gateway and aux-address need a subnet", ipam.ErrInvalid)
			}
			continue
		}
		s, err := ipam.NewSubnet(cfg)
		if err != nil {
			return nil, nil, nil, err
		}
		for _, u := range used {
			if s.Prefix().Overlaps(u.p) {
				if u.netID == netID {
					return nil, nil, nil, fmt.Errorf("%w: %s overlaps %s of the same request", ipam.ErrPoolOverlap, s.Prefix(), u.p)
				}
				return nil, nil, nil, fmt.Errorf("%w: %s overlaps %s of network %s", ipam.ErrPoolOverlap, s.Prefix(), u.p, u.netID)
			}
		}
		used = append(used, owned{s.Prefix(), netID})
		subs[i] = s
	}
	for i := range cfgs {
		if subs[i] != nil {
			continue
		}
		avoid := make([]netip.Prefix, len(used))
		for j, u := range used {
			avoid[j] = u.p
		}
		pools := ipam.DefaultGlobalPools()
		if cfgs[i].Subnet == ipam.DefaultIPv6Pool {
			pools = ipam.ULAPools(clusterULA(resp.Header.ClusterId))
		}
		p, err := ipam.PickPool(pools, nil, avoid)
		if err != nil {
			return nil, nil, nil, err
		}
		if subs[i], err = ipam.NewSubnet(model.IPAMConfig{Subnet: p, Auto: true}); err != nil {
			return nil, nil, nil, err
		}
		used = append(used, owned{p, netID})
	}
	rev := resp.Header.Revision
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(c.poolsPrefix()), "<", rev+1).WithPrefix(),
		clientv3.Compare(clientv3.CreateRevision(c.subnetsPrefix(netID)), "=", 0).WithPrefix(),
	}
	var ops []clientv3.Op
	out := make([]model.IPAMConfig, len(subs))
	for i, s := range subs {
		b, err := json.Marshal(s)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("cluster: request pool: %w", err)
		}
		ops = append(ops,
			clientv3.OpPut(c.poolsPrefix()+s.Prefix().String(), netID),
			clientv3.OpPut(c.subnetsPrefix(netID)+fmt.Sprintf("%03d", i), string(b)))
		out[i] = s.Config()
	}
	return cmps, ops, out, nil
}

// clusterULA is the global ID of the cluster's default IPv6 pool: a ULA
// /48 (RFC 4193) derived from the etcd cluster ID, so every member picks
// from the same /48 and two clusters most likely from different ones.
func clusterULA(id uint64) [5]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	h := sha256.Sum256(append([]byte("vxnet-ula:"), b[:]...))
	return [5]byte(h[:5])
}

// ReleasePool frees a global network's subnets and addresses. Releasing a
// network without pools is harmless. DeleteNetwork does this too.
func (c *Cluster) ReleasePool(ctx context.Context, netID string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.subnetsPrefix(netID), clientv3.WithPrefix())
	if err != nil {
		return unavailable("release pool", err)
	}
	ops := []clientv3.Op{clientv3.OpDelete(c.subnetsPrefix(netID), clientv3.WithPrefix()),
		clientv3.OpDelete(c.blocksPrefix(netID), clientv3.WithPrefix())}
	var cmps []clientv3.Cmp
	for _, kv := range resp.Kvs {
		var s ipam.Subnet
		if err := json.Unmarshal(kv.Value, &s); err != nil {
			continue
		}
		k := c.poolsPrefix() + s.Prefix().String()
		cmps = append(cmps, clientv3.Compare(clientv3.Value(k), "=", netID))
		ops = append(ops, clientv3.OpDelete(k))
	}
	// If a pool key no longer names this network, someone else owns it now:
	// delete only the subnets.
	if _, err := c.cli.Txn(rctx).If(cmps...).Then(ops...).Else(ops[0], ops[1]).Commit(); err != nil {
		return unavailable("release pool", err)
	}
	return nil
}

// Pools returns the effective configs of a global network's subnets, in
// order (ipam.ErrNotFound if it holds none).
func (c *Cluster) Pools(ctx context.Context, netID string) ([]model.IPAMConfig, error) {
	subs, _, err := c.loadSubnets(ctx, netID)
	if err != nil {
		return nil, err
	}
	out := make([]model.IPAMConfig, len(subs))
	for i, s := range subs {
		out[i] = s.sub.Config()
	}
	return out, nil
}

type storedSubnet struct {
	key string
	rev int64
	sub *ipam.Subnet
}

func (c *Cluster) loadSubnets(ctx context.Context, netID string) ([]storedSubnet, int64, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.subnetsPrefix(netID), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, unavailable("read pools", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("cluster: %w: network %s holds no pools", ipam.ErrNotFound, netID)
	}
	out := make([]storedSubnet, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		s := new(ipam.Subnet)
		if err := json.Unmarshal(kv.Value, s); err != nil {
			return nil, 0, fmt.Errorf("cluster: decode subnet %s: %w", kv.Key, err)
		}
		out = append(out, storedSubnet{string(kv.Key), kv.ModRevision, s})
	}
	return out, resp.Header.Revision, nil
}

// allocateSingleKey is the allocator before address blocks (one key per
// subnet holding every allocation, CAS on it), kept for the benchmark that
// compares both (Options.singleKeyIPAM). A valid static address goes to the
// subnet containing it; otherwise the subnets are tried in order, each
// serially.
func (c *Cluster) allocateSingleKey(ctx context.Context, netID string, static netip.Addr) (netip.Prefix, error) {
	if err := c.checkOpen(); err != nil {
		return netip.Prefix{}, err
	}
	// One allocation at a time from this host: CAS contention is then only
	// between hosts.
	unlock, err := c.lockIPAM(ctx)
	if err != nil {
		return netip.Prefix{}, unavailable("allocate address", err)
	}
	defer unlock()
	// Each store call has the usual short deadline, so an outage fails
	// fast; losing compare-and-swap races to other hosts (the store is
	// answering) may go on longer, so many hosts allocating at once do not
	// time out.
	actx, cancel := context.WithTimeout(ctx, 5*c.opts.RequestTimeout)
	defer cancel()
	for attempt := range 4 * maxTxnRetries {
		rctx, rcancel := c.reqCtx(actx)
		subs, _, err := c.loadSubnets(rctx, netID)
		rcancel()
		if err != nil {
			return netip.Prefix{}, err
		}
		var (
			chosen *storedSubnet
			ip     netip.Addr
			last   error
		)
		for i := range subs {
			s := &subs[i]
			if static.IsValid() && !s.sub.Contains(static) {
				continue
			}
			a, err := s.sub.Allocate(static)
			if err == nil {
				chosen, ip = s, a
				break
			}
			if static.IsValid() || !errors.Is(err, ipam.ErrNoAvailableAddress) {
				return netip.Prefix{}, err
			}
			last = err
		}
		if chosen == nil {
			if last == nil {
				return netip.Prefix{}, fmt.Errorf("%w: no configured subnet contains IP address %s", ipam.ErrInvalid, static)
			}
			return netip.Prefix{}, last
		}
		rctx, rcancel = c.reqCtx(actx)
		ok, err := c.casSubnet(rctx, *chosen)
		rcancel()
		if err != nil {
			return netip.Prefix{}, unavailable("allocate address", err)
		}
		if ok {
			return netip.PrefixFrom(ip, chosen.sub.Prefix().Bits()), nil
		}
		c.casLost.Add(1)
		if err := casPause(actx, attempt); err != nil {
			return netip.Prefix{}, unavailable("allocate address", err)
		}
	}
	return netip.Prefix{}, unavailable("allocate address", errors.New("too much contention"))
}

// releaseSingleKey frees an address allocated by allocateSingleKey.
func (c *Cluster) releaseSingleKey(ctx context.Context, netID string, addr netip.Addr) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	unlock, err := c.lockIPAM(ctx)
	if err != nil {
		return unavailable("release address", err)
	}
	defer unlock()
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	for attempt := range maxTxnRetries {
		subs, _, err := c.loadSubnets(rctx, netID)
		if err != nil {
			return err
		}
		var chosen *storedSubnet
		for i := range subs {
			if subs[i].sub.Contains(addr) {
				chosen = &subs[i]
				break
			}
		}
		if chosen == nil {
			return fmt.Errorf("cluster: release address %s: %w: no subnet of network %s contains it", addr, ipam.ErrInvalid, netID)
		}
		if !chosen.sub.Allocated(addr) {
			return nil
		}
		if err := chosen.sub.Release(addr); err != nil {
			return err
		}
		ok, err := c.casSubnet(rctx, *chosen)
		if err != nil {
			return unavailable("release address", err)
		}
		if ok {
			return nil
		}
		if err := casPause(rctx, attempt); err != nil {
			return unavailable("release address", err)
		}
	}
	return unavailable("release address", errors.New("too much contention"))
}

// casSubnet writes s back if its key is unchanged since it was read.
func (c *Cluster) casSubnet(ctx context.Context, s storedSubnet) (bool, error) {
	b, err := json.Marshal(s.sub)
	if err != nil {
		return false, err
	}
	tr, err := c.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(s.key), "=", s.rev),
	).Then(clientv3.OpPut(s.key, string(b))).Commit()
	if err != nil {
		return false, err
	}
	return tr.Succeeded, nil
}

// lockIPAM takes the host's IPAM lock, giving up with ctx.
func (c *Cluster) lockIPAM(ctx context.Context) (func(), error) {
	select {
	case c.ipamLock <- struct{}{}:
		return func() { <-c.ipamLock }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, errors.New("cluster connection closed")
	}
}

// casPause waits a little, with jitter, before retrying a lost CAS.
func casPause(ctx context.Context, attempt int) error {
	d := time.Duration(1+rand.IntN(5*min(attempt+1, 10))) * time.Millisecond
	return sleepCtx(ctx, d)
}
