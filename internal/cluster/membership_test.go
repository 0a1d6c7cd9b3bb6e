package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/vxnet/vxnet/internal/model"
)

func TestPlanMembership(t *testing.T) {
	v := func(id uint64, up, gone bool) memberState {
		return memberState{ID: id, Name: fmt.Sprint("n", id), Up: up, Gone: gone}
	}
	l := func(id uint64, up, gone bool) memberState {
		m := v(id, up, gone)
		m.Learner = true
		return m
	}
	for _, tc := range []struct {
		name   string
		ms     []memberState
		voters int
		kind   string
		id     uint64
		warn   bool
	}{
		{"single voter", []memberState{v(1, true, false)}, 3, "", 0, false},
		{"one learner: stay at one voter", []memberState{v(1, true, false), l(2, true, false)}, 3, "", 0, false},
		{"two learners: promote the first", []memberState{v(1, true, false), l(3, true, false), l(2, true, false)}, 3, "promote", 2, false},
		{"even voters: promote", []memberState{v(1, true, false), v(2, true, false), l(3, true, false)}, 3, "promote", 3, false},
		{"learner down is not promoted", []memberState{v(1, true, false), v(2, true, false), l(3, false, false)}, 3, "", 0, false},
		{"enough voters: learners stay spares", []memberState{v(1, true, false), v(2, true, false), v(3, true, false), l(4, true, false), l(5, true, false)}, 3, "", 0, false},
		{"to five", []memberState{v(1, true, false), v(2, true, false), v(3, true, false), l(4, true, false), l(5, true, false)}, 5, "promote", 4, false},
		{"voter down within grace: wait", []memberState{v(1, true, false), v(2, false, false), v(3, true, false), l(4, true, false)}, 3, "", 0, false},
		{"voter gone: remove it", []memberState{v(1, true, false), v(2, false, true), v(3, true, false), l(4, true, false)}, 3, "remove", 2, false},
		{"voter gone without spare: warn", []memberState{v(1, true, false), v(2, false, true), v(3, true, false)}, 3, "", 0, true},
		{"voter gone, spare down: warn", []memberState{v(1, true, false), v(2, false, true), v(3, true, false), l(4, false, false)}, 3, "", 0, true},
		{"learner gone: remove it", []memberState{v(1, true, false), l(2, false, true)}, 3, "remove", 2, false},
		{"unstarted learner gone", []memberState{v(1, true, false), {ID: 7, Learner: true, Gone: true}}, 3, "remove", 7, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := planMembership(tc.ms, tc.voters)
			if a.Kind != tc.kind || a.ID != tc.id || (a.Warn != "") != tc.warn {
				t.Fatalf("plan = %+v, want %q of %d (warn %v)", a, tc.kind, tc.id, tc.warn)
			}
		})
	}
}

func TestJoinRole(t *testing.T) {
	ms := func(voters, learners int) []*etcdserverpb.Member {
		var out []*etcdserverpb.Member
		for i := range voters + learners {
			out = append(out, &etcdserverpb.Member{ID: uint64(i + 1), IsLearner: i >= voters})
		}
		return out
	}
	for _, tc := range []struct {
		v, l, want int
		role       string
	}{
		{1, 0, 3, RoleLearner},
		{1, 1, 3, RoleLearner},
		{1, 2, 3, "wait"},
		{3, 0, 3, RoleLearner},
		{3, 2, 3, RoleClient},
		{3, 2, 5, "wait"},
		{1, 0, 1, RoleClient},
	} {
		if got := joinRole(ms(tc.v, tc.l), tc.want); got != tc.role {
			t.Errorf("%d voters %d learners, %d wanted: %s, want %s", tc.v, tc.l, tc.want, got, tc.role)
		}
	}
}

// voterNames returns the names of the voting members, from c's view.
func voterNames(ctx context.Context, c *Cluster) (voters, learners []string, err error) {
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ml, err := c.cli.MemberList(rctx)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range ml.Members {
		if m.IsLearner {
			learners = append(learners, m.Name)
		} else {
			voters = append(voters, m.Name)
		}
	}
	return voters, learners, nil
}

func wantMembers(ctx context.Context, c *Cluster, nv, nl int) func() error {
	return func() error {
		v, l, err := voterNames(ctx, c)
		if err != nil {
			return err
		}
		if len(v) != nv || len(l) != nl {
			return fmt.Errorf("voters %v learners %v, want %d and %d", v, l, nv, nl)
		}
		return nil
	}
}

// Two hosts, the seed's walk-through: one voter and one learner. The
// learner's death is purged within TTL + 2 s; the voter's death leaves the
// learner's host refusing global writes clearly, answering node lists from
// its last view marked stale, and it writes again soon after the voter
// returns.
func TestMembershipTwoHosts(t *testing.T) {
	root := t.TempDir()
	o1 := embeddedOpts(t, root, 1, nil)
	c1 := open(t, o1)
	o2 := embeddedOpts(t, root, 2, c1)
	c2 := open(t, o2)
	// The whole scenario runs about 30 s, longer than ctxT's 20 s: with
	// that context the last steps failed with its deadline, not etcd's.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	eventually(t, 5*time.Second, "one voter, one learner", wantMembers(ctx, c1, 1, 1))
	if c2.etcd == nil || !c2.etcd.Server.IsLearner() {
		t.Fatal("second host is not a learner")
	}
	// The learner's host writes through the voter.
	if _, err := c2.CreateNetwork(ctx, testNet("two")); err != nil {
		t.Fatal(err)
	}
	n, err := nodeState(ctx, c1, nid("node2"))
	if err != nil || n.Role != RoleLearner || n.Stale {
		t.Fatalf("node2 %+v %v, want a fresh learner", n, err)
	}

	// The learner dies: purged within TTL + 2 s.
	if err := c2.Advertise(ctx, owned(t, c2, oid("two-net"), "ep2", "10.7.0.2")); err != nil {
		t.Fatal(err)
	}
	w := watchAdverts(t, c1, oid("two-net"), 0)
	eventually(t, 5*time.Second, "advert seen", w.has("ep2"))
	c2.Close()
	start := time.Now()
	eventually(t, o2.NodeTTL+2*time.Second, "learner's advertisement purged", w.has())
	t.Logf("learner's advertisement purged %s after its death", time.Since(start).Round(10*time.Millisecond))
	if _, err := c1.CreateNetwork(ctx, testNet("two-b")); err != nil {
		t.Fatalf("the voter alone writes: %v", err)
	}

	// The learner comes back; then the voter dies.
	c2 = open(t, o2)
	eventually(t, 10*time.Second, "learner back up", wantState(ctx, c1, nid("node2"), StateUp))
	if _, err := c2.Nodes(ctx); err != nil {
		t.Fatal(err)
	}
	c1.Close()
	_, err = c2.CreateNetwork(ctx, testNet("two-c"))
	wantUnavailable(t, err)
	eventually(t, 10*time.Second, "store reported unreachable", func() error {
		if s := c2.Status(); s.Reachable {
			return errors.New("status says reachable")
		}
		return nil
	})
	ns, err := c2.Nodes(ctx)
	if err != nil || len(ns) != 2 || !ns[0].Stale || ns[0].AsOf.IsZero() {
		t.Fatalf("node list without the voter: %+v %v, want the last view marked stale", ns, err)
	}
	if _, err := c2.FreshNodes(ctx); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("fresh node list without the voter: %v, want unavailable", err)
	}

	// The voter returns: writes work again, the view is fresh.
	start = time.Now()
	c1 = open(t, o1)
	eventually(t, 20*time.Second, "writes from the learner's host", func() error {
		_, err := c2.CreateNetwork(ctx, testNet("two-c"))
		return err
	})
	t.Logf("learner's host writes again %s after the voter's restart", time.Since(start).Round(10*time.Millisecond))
	eventually(t, 10*time.Second, "reachable again", func() error {
		if !c2.Status().Reachable {
			return errors.New("still unreachable")
		}
		if ns, err := c2.Nodes(ctx); err != nil || ns[0].Stale {
			return fmt.Errorf("nodes %+v %v", ns, err)
		}
		return nil
	})
}

// Four hosts: three voters and a spare learner. A voter dies for good:
// after the grace period the spare takes its place (three voters again,
// the dead one removed), global writes work, and its entries are purged.
func TestMembershipHeals(t *testing.T) {
	root := t.TempDir()
	var ms []*Cluster
	var opts []Options
	for i := 1; i <= 4; i++ {
		var seed *Cluster
		if i > 1 {
			seed = ms[0]
		}
		o := embeddedOpts(t, root, i, seed)
		o.VoterGrace = 3 * time.Second
		opts = append(opts, o)
		ms = append(ms, open(t, o))
	}
	// Longer than ctxT's 20 s: the scenario itself may take that long.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	eventually(t, 20*time.Second, "three voters and a spare", wantMembers(ctx, ms[0], 3, 1))
	_, learners, _ := voterNames(ctx, ms[0])
	if len(learners) != 1 || learners[0] != nid("node4") {
		t.Fatalf("learners %v, want node4", learners)
	}
	// Kill a voter other than the one observing.
	victim := ms[1]
	if err := victim.Advertise(ctx, owned(t, victim, oid("heal-net"), "ep", "10.7.0.9")); err != nil {
		t.Fatal(err)
	}
	w := watchAdverts(t, ms[3], oid("heal-net"), 0)
	eventually(t, 5*time.Second, "advert seen", w.has("ep"))
	start := time.Now()
	// Close waits up to etcd's request timeout for other hosts' watch
	// streams on the member; the lease goes first, as in a crash.
	victim.Close()
	eventually(t, 2*time.Second, "dead voter's advertisement purged", w.has())
	eventually(t, opts[1].NodeTTL+opts[1].VoterGrace+20*time.Second, "three voters again, without node2", func() error {
		v, l, err := voterNames(ctx, ms[0])
		if err != nil {
			return err
		}
		if len(v) != 3 || len(l) != 0 {
			return fmt.Errorf("voters %v learners %v", v, l)
		}
		for _, n := range v {
			if n == nid("node2") {
				return fmt.Errorf("voters %v still hold node2", v)
			}
		}
		return nil
	})
	t.Logf("healed %s after the voter's death", time.Since(start).Round(10*time.Millisecond))
	for _, c := range []*Cluster{ms[0], ms[2], ms[3]} {
		if _, err := c.CreateNetwork(ctx, testNet("healed-"+c.NodeID())); err != nil {
			t.Fatalf("write via %s after healing: %v", c.NodeID(), err)
		}
	}
	// The promoted host talks to its own member now.
	eventually(t, 5*time.Second, "promoted host uses its own member", func() error {
		if eps := ms[3].cli.Endpoints(); len(eps) != 1 || eps[0] != urlFor(loopback, opts[3].ClientPort).String() {
			return fmt.Errorf("endpoints %v", eps)
		}
		return nil
	})
}
