package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/model"
)

// member is one host of an embedded test cluster.
type member struct {
	opts Options
	c    *Cluster
}

// embeddedOpts returns options for host i of a test cluster: it starts the
// cluster if seed is nil, else joins through seed's join service with its
// current token.
func embeddedOpts(t *testing.T, root string, i int, seed *Cluster) Options {
	p := freePorts(t, 4)
	o := baseOpts(t, fmt.Sprintf("node%d", i))
	o.DataDir = filepath.Join(root, fmt.Sprintf("n%d", i), "etcd")
	o.ClientPort, o.PeerPort, o.JoinPort, o.ClientHTTPPort = p[0], p[1], p[2], p[3]
	if seed == nil {
		o.Init = true
	} else {
		o.Join = fmt.Sprintf("127.0.0.1:%d", seed.opts.JoinPort)
		tok, err := seed.JoinToken(context.Background(), false)
		if err != nil {
			t.Fatalf("join token of %s: %v", seed.opts.NodeID, err)
		}
		o.JoinToken = tok
	}
	t.Cleanup(func() { checkPortsFree(t, p...) })
	return o
}

func memberCount(t *testing.T, c *Cluster) (voters, learners int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ml, err := c.cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ml.Members {
		if m.IsLearner {
			learners++
		} else {
			voters++
		}
	}
	return
}

func TestEmbeddedCluster(t *testing.T) {
	top := t // subtests' cleanups run at their end; hosts live as long as the test
	root := t.TempDir()
	ms := make([]*member, 5)
	for i := 1; i <= 4; i++ {
		var seed *Cluster
		if i > 1 {
			seed = ms[1].c
		}
		o := embeddedOpts(t, root, i, seed)
		ms[i] = &member{opts: o, c: open(t, o)}
	}
	c1, c2, c3, c4 := ms[1].c, ms[2].c, ms[3].c, ms[4].c
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)

	t.Run("roles", func(t *testing.T) {
		// Voters 1 -> 3 (two learners promoted), the fourth a spare.
		eventually(t, 20*time.Second, "three voters and a learner", wantMembers(ctx, c1, 3, 1))
		if c4.etcd == nil || !c4.etcd.Server.IsLearner() {
			t.Fatal("fourth host is not a learner")
		}
		nodes, err := c4.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{nid("node1"): RoleVoter, nid("node2"): RoleVoter, nid("node3"): RoleVoter, nid("node4"): RoleLearner}
		if len(nodes) != 4 {
			t.Fatalf("nodes %+v", nodes)
		}
		for _, n := range nodes {
			if n.State != StateUp || n.Role != want[n.ID] || n.Addr != loopback || n.Hostname != "host-"+n.ID {
				t.Errorf("node %+v, want up %s", n, want[n.ID])
			}
		}
	})
	t.Run("networks", func(t *testing.T) { scenarioNetworks(t, c1, c3) })
	t.Run("concurrent-name", func(t *testing.T) { scenarioConcurrentName(t, c1, c2) })
	t.Run("vnis", func(t *testing.T) { scenarioVNIs(t, c1, c2, c3) })
	t.Run("ipam", func(t *testing.T) { scenarioIPAM(t, c1, c2, c3) })
	t.Run("adverts", func(t *testing.T) { scenarioAdverts(t, c2, c4) })
	t.Run("compaction", func(t *testing.T) { scenarioWatchCompaction(t, c3) })
	t.Run("lease-loss", func(t *testing.T) { scenarioLeaseLoss(t, c4, c1) })
	t.Run("crash-learner", func(t *testing.T) {
		ms[4].c = scenarioCrash(t, c1, c4, func() *Cluster { return open(top, ms[4].opts) })
		c4 = ms[4].c
		if c4.etcd == nil || !c4.etcd.Server.IsLearner() {
			t.Error("reopened learner is not a learner")
		}
	})

	t.Run("quorum", func(t *testing.T) {
		// A watch across the outage must see what happens after it.
		var (
			mu   sync.Mutex
			last []model.Network
		)
		seen := make(chan struct{}, 100)
		wctx, wcancel := context.WithCancel(ctx)
		wdone := make(chan error, 1)
		go func() {
			wdone <- c1.WatchNetworks(wctx, 0, func(ns []model.Network, _ int64) {
				mu.Lock()
				last = ns
				mu.Unlock()
				seen <- struct{}{}
			})
		}()
		defer func() { wcancel(); <-wdone }()
		<-seen

		ms[3].c.Close()
		if _, err := c1.CreateNetwork(ctx, testNet("q1")); err != nil {
			t.Fatalf("write with 2 of 3 voters: %v", err)
		}
		ms[2].c.Close()
		start := time.Now()
		_, err := c1.CreateNetwork(ctx, testNet("q2"))
		wantUnavailable(t, err)
		t.Logf("write without quorum failed after %s", time.Since(start).Round(10*time.Millisecond))
		if d := time.Since(start); d > 2*c1.opts.RequestTimeout+time.Second {
			t.Errorf("write without quorum failed after %s, want about %s", d, c1.opts.RequestTimeout)
		}
		_, _, err = c4.ListNetworks(ctx)
		wantUnavailable(t, err)
		t.Logf("without quorum: %v", err)

		// Restart both: each rejoins with its data.
		start = time.Now()
		done := make(chan *Cluster, 2)
		for _, i := range []int{2, 3} {
			o := ms[i].opts
			go func() {
				c, err := Open(context.Background(), o)
				if err != nil {
					t.Errorf("restart node%d: %v", i, err)
				}
				done <- c
			}()
		}
		for range 2 {
			if c := <-done; c != nil {
				top.Cleanup(func() { c.Close() })
				if c.NodeID() == nid("node2") {
					ms[2].c = c
				} else {
					ms[3].c = c
				}
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		t.Logf("members restarted in %s", time.Since(start).Round(10*time.Millisecond))
		if v, _ := memberCount(t, c1); v != 3 {
			t.Fatalf("%d voters after restart, want 3 (no new members)", v)
		}
		eventually(t, 15*time.Second, "writes work again", func() error {
			_, err := c1.CreateNetwork(ctx, testNet("q2"))
			return err
		})
		ns, _, err := ms[3].c.ListNetworks(ctx)
		if err != nil || len(ns) != 2 {
			t.Fatalf("networks after restart %v %v", ns, err)
		}
		eventually(t, 10*time.Second, "watch resumed after the outage", func() error {
			for {
				select {
				case <-seen:
					continue
				default:
				}
				break
			}
			mu.Lock()
			defer mu.Unlock()
			if len(last) != 2 {
				return fmt.Errorf("watch saw %d networks, want 2", len(last))
			}
			return nil
		})
		for _, i := range []int{1, 2, 3, 4} {
			eventually(t, 10*time.Second, "all up", wantState(ctx, ms[1].c, nid(fmt.Sprintf("node%d", i)), StateUp))
		}
		for _, id := range []string{oid("id-q1"), oid("id-q2")} {
			if err := c1.DeleteNetwork(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	})
	if t.Failed() {
		return
	}

	t.Run("remove-and-leave", func(t *testing.T) {
		c1, c2, c3, c4 := ms[1].c, ms[2].c, ms[3].c, ms[4].c
		if err := c1.RemoveNode(ctx, nid("node3"), false); !errors.Is(err, model.ErrConflict) {
			t.Fatalf("remove an up node: %v, want conflict", err)
		}
		if err := c1.RemoveNode(ctx, nid("node1"), false); !errors.Is(err, model.ErrInvalid) {
			t.Fatalf("remove self: %v, want invalid", err)
		}
		c3.Close()
		eventually(t, 5*time.Second, "node3 down", wantState(ctx, c1, nid("node3"), StateDown))
		if err := c1.RemoveNode(ctx, nid("node3"), false); err != nil {
			t.Fatal(err)
		}
		if err := c1.RemoveNode(ctx, nid("node3"), false); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("remove twice: %v, want not found", err)
		}
		// Two voters is even: the spare is promoted.
		eventually(t, 20*time.Second, "three voters after removing node3", wantMembers(ctx, c1, 3, 0))
		if err := c4.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c2.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(ms[2].opts.DataDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("data dir of the leaving member: %v, want removed", err)
		}
		if v, _ := memberCount(t, c1); v != 1 {
			t.Fatalf("%d voters after node2 left, want 1", v)
		}
		nodes, err := c1.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) != 1 || nodes[0].ID != nid("node1") {
			t.Fatalf("nodes after leaving %+v, want node1 only", nodes)
		}
		if _, err := c2.Nodes(ctx); !errors.Is(err, model.ErrUnavailable) {
			t.Fatalf("use after leave: %v, want unavailable", err)
		}
		// The single member still writes, and a new host joins as a
		// learner (two voters would be worse than one).
		if _, err := c1.CreateNetwork(ctx, testNet("after")); err != nil {
			t.Fatal(err)
		}
		o := embeddedOpts(top, root, 5, ms[1].c)
		c5 := open(top, o)
		if c5.etcd == nil || !c5.etcd.Server.IsLearner() {
			t.Fatal("new host is not a learner")
		}
		if v, l := memberCount(t, c1); v != 1 || l != 1 {
			t.Fatalf("%d voters %d learners, want 1 and 1", v, l)
		}
		if _, err := c5.GetNetwork(ctx, oid("id-after")); err != nil {
			t.Fatal(err)
		}
	})
}
