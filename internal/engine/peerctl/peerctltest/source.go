// Package peerctltest has an advertisement source for the tests of the
// overlay peer controller and of the engine that drives it.
package peerctltest

import (
	"context"
	"errors"
	"net/netip"
	"sync"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/engine/peerctl"
	"github.com/vxnet/vxnet/internal/model"
)

// Source is a peerctl.Source whose sets the test writes: lists answer with
// the current set, and every set pushed (or delivered) goes to the watches
// as the store's watch would hand it over. Safe for concurrent use.
type Source struct {
	mu    sync.Mutex
	self  string
	cur   []peerctl.Advert
	rev   int64
	down  bool
	subs  []*sub
	nodes map[string]netip.Addr            // nil: CheckAdverts keeps every advert
	owner map[netip.Addr]cluster.AddrOwner // nil: no owner check
	gate  chan struct{}
}

// sub is one watch; gone is closed when it has ended.
type sub struct {
	ch   chan delivery
	gone chan struct{}
}

type delivery struct {
	ads  []peerctl.Advert
	rev  int64
	done chan struct{} // closed once the watch callback returned
}

// NewSource returns an empty source that keeps every advert.
func NewSource() *Source { return &Source{} }

// NewFilteringSource returns an empty source whose CheckAdverts judges as
// the cluster does (cluster.FilterAdverts) for node self, with the nodes
// given (more with AddNode) as the registered ones.
func NewFilteringSource(self string, nodes map[string]netip.Addr) *Source {
	s := &Source{self: self, nodes: map[string]netip.Addr{}}
	for id, a := range nodes {
		s.nodes[id] = a
	}
	return s
}

// AddNode registers a node (a filtering source only).
func (s *Source) AddNode(id string, vtep netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodes != nil {
		s.nodes[id] = vtep
	}
}

// SetOwners sets the address owner records CheckAdverts holds adverts
// against (nil: none).
func (s *Source) SetOwners(owner map[netip.Addr]cluster.AddrOwner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.owner = owner
}

// SetDown makes lists fail as an unreachable store would (or answer again).
func (s *Source) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// SetGate, when gate is not nil, holds every CheckAdverts until it closes
// (owners read from a slow store).
func (s *Source) SetGate(gate chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = gate
}

// Adverts implements peerctl.Source.
func (s *Source) Adverts(ctx context.Context, netID string) ([]peerctl.Advert, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, 0, errors.New("injected: context deadline exceeded")
	}
	return append([]peerctl.Advert(nil), s.cur...), s.rev, nil
}

// WatchAdverts implements peerctl.Source. As the store's watch, it starts
// with the current set when fromRev is 0 (or is older than the current
// set), so a set pushed before the watch listens is not lost.
func (s *Source) WatchAdverts(ctx context.Context, netID string, fromRev int64, fn func([]peerctl.Advert, int64)) error {
	w := &sub{ch: make(chan delivery, 256), gone: make(chan struct{})}
	s.mu.Lock()
	s.subs = append(s.subs, w)
	cur, rev := append([]peerctl.Advert(nil), s.cur...), s.rev
	s.mu.Unlock()
	defer close(w.gone)
	if rev > 0 && (fromRev == 0 || rev >= fromRev) {
		fn(cur, rev)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d := <-w.ch:
			fn(d.ads, d.rev)
			close(d.done)
		}
	}
}

// CheckAdverts implements peerctl.Source.
func (s *Source) CheckAdverts(ctx context.Context, n model.Network, ads []peerctl.Advert) []peerctl.Advert {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodes == nil {
		return ads
	}
	kept, _ := cluster.FilterAdverts(n, ads, s.nodes, s.self, s.owner)
	return kept
}

// FollowOwners implements peerctl.Source: owners change only through
// SetOwners.
func (s *Source) FollowOwners(ctx context.Context, netID string) error {
	<-ctx.Done()
	return ctx.Err()
}

// Push makes ads the current set at rev and hands it to the watches,
// returning once each has handled it.
func (s *Source) Push(ads []peerctl.Advert, rev int64) {
	s.mu.Lock()
	s.cur, s.rev = ads, rev
	s.mu.Unlock()
	s.Deliver(ads, rev)
}

// Deliver hands a set to the watches without making it current (a late
// or replayed watch event), returning once each has handled it.
func (s *Source) Deliver(ads []peerctl.Advert, rev int64) {
	s.mu.Lock()
	subs := append([]*sub(nil), s.subs...)
	s.mu.Unlock()
	for _, w := range subs {
		d := delivery{ads: ads, rev: rev, done: make(chan struct{})}
		select {
		case w.ch <- d:
		case <-w.gone:
			continue
		}
		select {
		case <-d.done:
		case <-w.gone:
		}
	}
}

// Watches is how many watches have started so far.
func (s *Source) Watches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}
