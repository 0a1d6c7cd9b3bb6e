package cluster

// The address garbage collector. One member at a time runs it, elected with
// etcd's concurrency election under ipam/gc-leader/ (a session lease: when
// the elected host dies, another takes over within a node TTL). Every
// Options.IPAMGCInterval it frees the addresses whose owner is gone:
//
//   - the owner node has no record any more (node rm, leave);
//   - the owner node is down (no liveness key) and was last seen longer than
//     Options.IPAMGrace ago;
//   - the owner node is up, the address was allocated longer than IPAMGrace
//     ago for an endpoint, and that endpoint has no advertisement (the host
//     lost it without releasing the address).
//
// It deletes blocks left empty, and empty blocks whose host is gone.

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// startIPAMGC runs the election and the collector until Close.
func (c *Cluster) startIPAMGC() {
	done := make(chan struct{})
	c.mu.Lock()
	c.gcDone = done
	c.mu.Unlock()
	go func() {
		defer close(done)
		for c.ctx.Err() == nil {
			if err := c.runIPAMGC(c.ctx); err != nil && c.ctx.Err() == nil {
				c.log.Debug("ipam gc", "err", err)
			}
			if sleepCtx(c.ctx, time.Second) != nil {
				return
			}
		}
	}()
}

// runIPAMGC campaigns, then collects until the session ends or ctx does.
func (c *Cluster) runIPAMGC(ctx context.Context) error {
	ttl := int((c.opts.NodeTTL + time.Second - 1) / time.Second)
	s, err := concurrency.NewSession(c.cli, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer s.Close()
	e := concurrency.NewElection(s, c.key("ipam", "gc-leader"))
	if err := e.Campaign(ctx, c.opts.NodeID); err != nil {
		return err
	}
	c.log.Debug("elected address garbage collector")
	defer func() {
		rctx, cancel := c.reqCtx(context.Background())
		e.Resign(rctx)
		cancel()
	}()
	t := time.NewTicker(c.opts.IPAMGCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.Done():
			return nil
		case <-t.C:
		}
		n, err := c.CollectAddresses(ctx)
		if err != nil {
			c.log.Debug("ipam gc run", "err", err)
		} else if n > 0 {
			c.log.Info("freed addresses of gone owners", "addresses", n)
		}
	}
}

// CollectAddresses runs one garbage collection (see the file comment) and
// returns how many addresses it freed. The elected member calls it every
// IPAMGCInterval; it is safe to call from anywhere (every write is a
// compare-and-swap).
func (c *Cluster) CollectAddresses(ctx context.Context) (int, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Txn(rctx).Then(
		clientv3.OpGet(c.key("nodes")+"/", clientv3.WithPrefix()),
		clientv3.OpGet(c.key("alive")+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(c.key("adverts")+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(c.key("ipam", "blocks")+"/", clientv3.WithPrefix()),
		clientv3.OpGet(c.key("seen")+"/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return 0, unavailable("collect addresses", err)
	}
	lastSeen := map[string]time.Time{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var r nodeRecord
		if json.Unmarshal(kv.Value, &r) == nil {
			lastSeen[strings.TrimPrefix(string(kv.Key), c.key("nodes")+"/")] = r.LastSeen
		}
	}
	for id, t := range c.lastSeen(resp.Responses[4].GetResponseRange().Kvs, time.Now()) {
		if old, ok := lastSeen[id]; ok && t.After(old) {
			lastSeen[id] = t // a removed node (no record) stays removed
		}
	}
	alive := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		alive[strings.TrimPrefix(string(kv.Key), c.key("alive")+"/")] = true
	}
	adverts := map[string]bool{} // node/net/ep
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		adverts[strings.TrimPrefix(string(kv.Key), c.key("adverts")+"/")] = true
	}
	now := time.Now()
	nodeGone := func(n string) bool {
		seen, ok := lastSeen[n]
		if !ok {
			return true // removed
		}
		return !alive[n] && now.Sub(seen) > c.opts.IPAMGrace
	}
	freed := 0
	for _, kv := range resp.Responses[3].GetResponseRange().Kvs {
		var r blockRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil || !r.Block.IsValid() {
			continue
		}
		netID := strings.SplitN(strings.TrimPrefix(string(kv.Key), c.key("ipam", "blocks")+"/"), "/", 2)[0]
		var drop []netip.Addr
		for a, o := range r.Addrs {
			switch {
			case nodeGone(o.Node):
			case alive[o.Node] && o.Endpoint != "" && now.Sub(o.Since) > c.opts.IPAMGrace &&
				!adverts[o.Node+"/"+netID+"/"+o.Endpoint]:
			default:
				continue
			}
			drop = append(drop, a)
		}
		emptyOrphan := len(r.Addrs) == 0 && nodeGone(r.Node)
		if len(drop) == 0 && !emptyOrphan {
			continue
		}
		for _, a := range drop {
			delete(r.Addrs, a)
		}
		// A lost race (the block changed meanwhile) waits for the next run.
		ok, err := c.casBlock(ctx, &storedBlock{key: string(kv.Key), rev: kv.ModRevision, rec: r})
		if err != nil {
			return freed, unavailable("collect addresses", err)
		}
		if ok {
			freed += len(drop)
		}
	}
	return freed, nil
}
