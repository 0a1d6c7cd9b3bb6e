package cluster

// Membership of the embedded etcd cluster: how many voters, who is promoted,
// who is removed. The rules (docs/cluster.md has the reasoning):
//
//   - Never an even number of voters by design: two voters fail as soon as
//     either dies, one voter only when it does. A joining host becomes a
//     learner (a non-voting member that replicates the log); learners are
//     promoted two at a time, so voters go 1 -> 3 -> 5 up to Options.Voters.
//   - Up to maxLearners learners are kept as spares; further hosts are
//     plain clients. A single-voter cluster keeps no spares (a learner cannot
//     take over from a dead single voter: there is no quorum to promote it).
//   - A voter whose node has been down (no liveness key) for longer than
//     Options.VoterGrace is removed once a healthy learner can take its
//     place, and that learner is promoted: a cluster with a spare heals
//     itself. Without a spare the dead voter stays (removing it would leave
//     an even count that tolerates no more failures than before).
//   - A learner down for longer than the grace period is removed, freeing
//     its slot for a live host.
//
// Only the host whose member leads the raft group acts, so two hosts never
// race on the same change; etcd takes one change at a time anyway. Every
// host running a member also points its client at the right endpoints: its
// own member once it votes, the voters while it is a learner (learners serve
// no linearizable reads or writes).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxLearners is the number of learners the embedded cluster keeps (etcd's
// --max-learners on every member).
const maxLearners = 2

// DefaultVoterGrace is how long a voter may be down before a learner takes
// its place.
const DefaultVoterGrace = 30 * time.Second

// memberTick is the period of the membership loop.
const memberTick = time.Second

// memberState is one etcd member as the membership rules see it.
type memberState struct {
	ID      uint64
	Name    string // node ID; empty until the member first started
	Learner bool
	Up      bool // the node holds its liveness key
	Gone    bool // down for longer than the grace period
}

// memberAction is one membership change.
type memberAction struct {
	Kind   string // "promote", "remove" or "" (nothing to do)
	ID     uint64
	Name   string
	Reason string
	// Warn is set when something should change but cannot (a voter is
	// gone and no learner can replace it).
	Warn string
}

// planMembership picks the next membership change. voters is the wanted
// number of voters (odd). It is a pure function of the member states.
func planMembership(ms []memberState, voters int) memberAction {
	var vs, ready []memberState
	for _, m := range ms {
		switch {
		case !m.Learner:
			vs = append(vs, m)
		case m.Up && m.Name != "":
			ready = append(ready, m)
		}
	}
	// Stable choices: the lowest ID first.
	slices.SortFunc(ready, func(a, b memberState) int { return cmpU64(a.ID, b.ID) })
	var gone []memberState
	for _, m := range vs {
		if m.Gone {
			gone = append(gone, m)
		}
	}
	switch {
	case len(vs)%2 == 0 && len(ready) > 0:
		l := ready[0]
		return memberAction{Kind: "promote", ID: l.ID, Name: l.Name,
			Reason: fmt.Sprintf("%d voters is even", len(vs))}
	case len(gone) > 0 && len(ready) > 0:
		g := gone[0]
		return memberAction{Kind: "remove", ID: g.ID, Name: g.Name,
			Reason: "voter down for longer than the grace period; learner " + ready[0].Name + " takes its place"}
	case len(vs) < voters && len(ready) >= 2:
		l := ready[0]
		return memberAction{Kind: "promote", ID: l.ID, Name: l.Name,
			Reason: fmt.Sprintf("%d voters, %d wanted, and two learners ready", len(vs), voters)}
	}
	for _, m := range ms {
		if m.Learner && m.Gone {
			return memberAction{Kind: "remove", ID: m.ID, Name: m.Name, Reason: "learner down for longer than the grace period"}
		}
	}
	if len(gone) > 0 {
		return memberAction{Warn: fmt.Sprintf("voter %s is down for longer than the grace period and no learner can replace it; %d of %d voters up",
			gone[0].Name, len(vs)-len(gone), len(vs))}
	}
	return memberAction{}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// joinRole decides how a host joins a cluster with the given members: as a
// learner, as a plain client, or "wait" when the learner slots are full but
// promotions are due (the leader is about to make room).
func joinRole(ms []*etcdserverpb.Member, voters int) string {
	nv, nl := 0, 0
	for _, m := range ms {
		if m.IsLearner {
			nl++
		} else {
			nv++
		}
	}
	switch {
	case voters == 1 && nv >= 1:
		return RoleClient
	case nl < maxLearners:
		return RoleLearner
	case nv < voters:
		return "wait"
	}
	return RoleClient
}

// membershipLoop runs until ctx ends on every host with an embedded member.
func (c *Cluster) membershipLoop(ctx context.Context) {
	downSince := make(map[uint64]time.Time)
	var lastWarn time.Time
	t := time.NewTicker(memberTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.syncEndpoints()
		s := c.etcd.Server
		if s.Leader() != s.MemberID() {
			clear(downSince) // another host decides; start afresh if we lead again
			continue
		}
		act, err := c.reconcileMembers(ctx, downSince)
		if err != nil {
			c.log.Debug("membership", "err", err)
			continue
		}
		if act.Warn != "" && time.Since(lastWarn) > time.Minute {
			lastWarn = time.Now()
			c.log.Warn("membership: " + act.Warn)
		}
	}
}

// reconcileMembers reads the membership and the liveness keys and applies
// at most one change.
func (c *Cluster) reconcileMembers(ctx context.Context, downSince map[uint64]time.Time) (memberAction, error) {
	// Membership changes need etcd's root user: the admin client.
	adm := c.admin
	if adm == nil {
		return memberAction{}, errNotVoter
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	ml, err := adm.MemberList(rctx)
	if err != nil {
		return memberAction{}, unavailable("list members", err)
	}
	alive, err := adm.Get(rctx, c.key("alive")+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return memberAction{}, unavailable("list live nodes", err)
	}
	up := make(map[string]bool)
	for _, kv := range alive.Kvs {
		up[strings.TrimPrefix(string(kv.Key), c.key("alive")+"/")] = true
	}
	now := time.Now()
	ms := make([]memberState, 0, len(ml.Members))
	seen := make(map[uint64]bool)
	for _, m := range ml.Members {
		seen[m.ID] = true
		st := memberState{ID: m.ID, Name: m.Name, Learner: m.IsLearner, Up: m.Name != "" && up[m.Name]}
		if m.ID == uint64(c.etcd.Server.MemberID()) {
			st.Up = true // this member leads: it is alive whatever its lease says
		}
		if st.Up {
			delete(downSince, m.ID)
		} else if _, ok := downSince[m.ID]; !ok {
			downSince[m.ID] = now
		}
		st.Gone = !st.Up && now.Sub(downSince[m.ID]) >= c.opts.VoterGrace
		ms = append(ms, st)
	}
	for id := range downSince {
		if !seen[id] {
			delete(downSince, id)
		}
	}
	act := planMembership(ms, c.opts.Voters)
	switch act.Kind {
	case "promote":
		_, err = adm.MemberPromote(rctx, act.ID)
	case "remove":
		_, err = adm.MemberRemove(rctx, act.ID)
		if errors.Is(err, rpctypes.ErrMemberNotFound) {
			err = nil
		}
	default:
		return act, nil
	}
	if err != nil {
		// Not caught up yet, or etcd wants the cluster stable for a few
		// seconds after the last change: try again at the next tick.
		return act, fmt.Errorf("%s member %s: %w", act.Kind, act.Name, err)
	}
	delete(downSince, act.ID)
	c.log.Info("membership: "+act.Kind+"d member", "node", act.Name,
		"member", strconv.FormatUint(act.ID, 16), "reason", act.Reason)
	return act, nil
}

// syncEndpoints points the client at this host's own member once it votes,
// and at the voting members while it is a learner. It reads the local
// member's view of the membership (no store call).
func (c *Cluster) syncEndpoints() {
	want := c.memberEndpoints()
	if len(want) == 0 || slices.Equal(want, c.cli.Endpoints()) {
		return
	}
	c.cli.SetEndpoints(want...)
	if c.admin != nil {
		c.admin.SetEndpoints(want...)
	}
	c.log.Info("store endpoints", "endpoints", strings.Join(want, ","), "learner", c.etcd.Server.IsLearner())
	// The node record carries the role: refresh it now rather than at the
	// next lease tick.
	c.refreshRecord(c.ctx)
}

// memberEndpoints returns the client endpoints this host should use.
func (c *Cluster) memberEndpoints() []string {
	if !c.etcd.Server.IsLearner() {
		return []string{urlFor(c.opts.AdvertiseAddr, c.opts.ClientPort).String()}
	}
	var eps []string
	for _, m := range c.etcd.Server.Cluster().Members() {
		if m.IsLearner || m.Name == "" {
			continue
		}
		eps = append(eps, m.ClientURLs...)
	}
	slices.Sort(eps)
	return eps
}

// startMembershipLoop runs membershipLoop until Close.
func (c *Cluster) startMembershipLoop() {
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	c.mu.Lock()
	c.stopMembership = func() { cancel(); <-done }
	c.mu.Unlock()
	go func() {
		defer close(done)
		c.membershipLoop(ctx)
	}()
}
