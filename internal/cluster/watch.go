package cluster

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchSet follows the set of keys under prefix (those keep accepts; nil
// keeps all) and calls fn with the whole
// decoded set and the revision it reflects, each time the set changes. It
// never gives up: after a disconnect it resumes from the last revision seen,
// and if etcd compacted past that revision it lists the set again and calls
// fn. It returns when ctx is done or the Cluster closes.
//
// With fromRev == 0 it lists the set first and calls fn with it. With
// fromRev > 0 the caller already holds the set as of fromRev (from a list
// call): fn is called only for later changes, or at once if fromRev was
// compacted (the caller may have missed changes).
func watchSet[T any](ctx context.Context, c *Cluster, prefix string, keep func(string) bool, fromRev int64,
	decode func(kv *mvccpb.KeyValue) (T, bool), fn func([]T, int64)) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	if keep == nil {
		keep = func(string) bool { return true }
	}
	state := make(map[string]*mvccpb.KeyValue)
	var rev int64
	// Each record is decoded once per revision, not on every delivery.
	type decoded struct {
		mod int64
		t   T
		ok  bool
	}
	cache := make(map[string]decoded)
	deliver := func() {
		out := make([]T, 0, len(state))
		for k, kv := range state {
			d, hit := cache[k]
			if !hit || d.mod != kv.ModRevision {
				d.mod = kv.ModRevision
				d.t, d.ok = decode(kv)
				cache[k] = d
			}
			if d.ok {
				out = append(out, d.t)
			}
		}
		if len(cache) > 2*len(state)+16 {
			for k := range cache {
				if _, ok := state[k]; !ok {
					delete(cache, k)
				}
			}
		}
		fn(out, rev)
	}
	// load fills state as of at (0: now). It reports whether the state is
	// new to the caller.
	load := func(at int64) error {
		rctx, rcancel := c.reqCtx(ctx)
		defer rcancel()
		opts := []clientv3.OpOption{clientv3.WithPrefix()}
		if at > 0 {
			opts = append(opts, clientv3.WithRev(at))
		}
		resp, err := c.cli.Get(rctx, prefix, opts...)
		if err != nil {
			return err
		}
		clear(state)
		for _, kv := range resp.Kvs {
			if keep(string(kv.Key)) {
				state[string(kv.Key)] = kv
			}
		}
		rev = resp.Header.Revision
		if at > 0 {
			rev = at
		}
		return nil
	}

	needList := fromRev <= 0
	if !needList {
		for attempt := 0; ; attempt++ {
			err := load(fromRev)
			if err == nil {
				break
			}
			if errors.Is(err, rpctypes.ErrCompacted) {
				needList = true
				c.countRelist()
				break
			}
			if err := backoff(ctx, attempt); err != nil {
				return c.watchEnd(ctx)
			}
		}
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if needList {
			if err := load(0); err != nil {
				c.log.Debug("watch: list", "prefix", prefix, "err", err)
				if backoff(ctx, attempt) != nil {
					break
				}
				continue
			}
			needList = false
			deliver()
		}
		compacted, err := c.follow(ctx, prefix, keep, &rev, state, deliver)
		if compacted {
			c.countRelist()
			needList = true
			attempt = -1
			continue
		}
		if err != nil {
			c.log.Debug("watch: interrupted", "prefix", prefix, "rev", rev, "err", err)
		}
		if backoff(ctx, attempt) != nil {
			break
		}
	}
	return c.watchEnd(ctx)
}

// follow applies watch events after *rev to state until the watch breaks.
// It reports whether etcd compacted past *rev.
func (c *Cluster) follow(ctx context.Context, prefix string, keep func(string) bool, rev *int64, state map[string]*mvccpb.KeyValue, deliver func()) (bool, error) {
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	wch := c.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(*rev+1))
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return true, nil
		}
		if err := resp.Err(); err != nil {
			return false, err
		}
		changed := false
		for _, ev := range resp.Events {
			*rev = ev.Kv.ModRevision
			if !keep(string(ev.Kv.Key)) {
				continue
			}
			changed = true
			switch ev.Type {
			case clientv3.EventTypePut:
				state[string(ev.Kv.Key)] = ev.Kv
			case clientv3.EventTypeDelete:
				delete(state, string(ev.Kv.Key))
			}
		}
		if changed {
			deliver()
		}
	}
	return false, ctx.Err()
}

func (c *Cluster) countRelist() {
	c.mu.Lock()
	c.relists++
	c.mu.Unlock()
}

// watchEnd returns why a watch ended.
func (c *Cluster) watchEnd(ctx context.Context) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	return ctx.Err()
}

// backoff sleeps before retry number attempt (growing to 2 s).
func backoff(ctx context.Context, attempt int) error {
	return sleepCtx(ctx, time.Duration(min(100<<min(attempt, 5), 2000))*time.Millisecond)
}
