// Package peerctl is the engine half of the overlay peer controller, a
// component with its own state and lock. Its inputs are the advertisement
// sets of the cluster store's watch (and fresh lists) and the engine's
// local endpoint changes (Watch when a network gets its first local
// endpoint, Unwatch when the last one goes); its outputs are the desired
// remote peers of each network, handed whole to the overlay driver's peer
// programming (Kernel, which diffs them against the kernel), and the last
// validated set per network, which the engine reads for the DNS
// resolver's view, the hosts' names and the VXLAN filter.
//
// Advertisements are untrusted: each set goes through the source's
// CheckAdverts (addresses in the subnet and owned by the advertiser, VTEPs
// of registered nodes, one claim per address, MAC and endpoint) before it
// is kept. Watches only say when to reconcile: a set older than the one
// applied is dropped, a failed programming is retried, and the engine's
// periodic ResyncAll brings every network's set up to date (the driver's
// own Resync, called after it, repairs kernel drift under a set that did
// not change: the overlay driver does not list its tables again for a set
// it already programmed).
//
// # Locks
//
// Controller.mu guards the per-network state; it is a leaf, held for map
// and field updates only, never across I/O or a call out of the package.
// Readers (Known, Watched, Inspect's desired set) take no lock: they read
// an immutable snapshot published after every change. netState.prog
// orders one network's programmings (validation, the local store's copy,
// the kernel); the Config callbacks (Network, Save, Changed) are called
// with prog held and Controller.mu free, so they may take the engine's
// lock.
package peerctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/model"
)

// Advert is one endpoint's advertisement.
type Advert = cluster.Advert

// Source is where advertisements are read: the cluster store, or a test's
// fake.
type Source interface {
	// Adverts lists a network's advertisements and the store revision.
	Adverts(ctx context.Context, netID string) ([]Advert, int64, error)
	// WatchAdverts calls fn with the whole set on every change until ctx
	// ends.
	WatchAdverts(ctx context.Context, netID string, fromRev int64, fn func([]Advert, int64)) error
	// CheckAdverts keeps the advertisements that are valid together.
	CheckAdverts(ctx context.Context, n model.Network, ads []Advert) []Advert
	// FollowOwners keeps the owners of the network's global addresses,
	// which CheckAdverts judges against, until ctx ends.
	FollowOwners(ctx context.Context, netID string) error
}

// Kernel is one network driver's peer programming: SetPeers makes the
// kernel hold exactly the entries of the remote peers given (the driver
// diffs against what it holds); Programmed lists the FDB ("MAC@VTEP") and
// neighbour ("IP@MAC") entries it holds, without waiting for a programming
// in progress: then it returns the entries as of the last completed one
// with an *InProgress error.
type Kernel interface {
	SetPeers(ctx context.Context, n model.Network, peers []Advert) error
	Programmed(ctx context.Context, n model.Network) (fdb, neigh []string, err error)
}

// Config is what a Controller works with.
type Config struct {
	// NodeID is this host's node: its own advertisements are kept (for
	// names) but never programmed as peers.
	NodeID string
	// Source returns the advertisement source (nil: not in cluster mode
	// yet).
	Source func() Source
	// Kernel returns the peer programming of network n's driver (ok false:
	// the driver has none).
	Kernel func(n model.Network) (Kernel, bool)
	// Network looks a network up in the engine's view (false: gone).
	Network func(id string) (model.Network, bool)
	// Save keeps a network's validated set in the local store, so a
	// restart during a store outage keeps the peers' names and the VXLAN
	// filter.
	Save func(netID string, ads []Advert) error
	// Changed is told after a network's known set or programming changed
	// (the engine re-renders names and the firewall).
	Changed func(netID string)
	// Status is the cluster store's health (nil: always reachable).
	Status func() cluster.StoreStatus
	// RetryAfter is the wait before a failed programming is retried
	// (default 1s).
	RetryAfter time.Duration
	// KernelReadTimeout bounds how long Inspect waits for the kernel's
	// entries (default 2s); past it the rows are shown unverified.
	KernelReadTimeout time.Duration
	Log               *slog.Logger
}

// Controller keeps, per global network, the last advertisement set and
// programs the kernel from it. It is safe for concurrent use.
type Controller struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	nets map[string]*netState
	// snap is what readers see: rebuilt under mu after every change.
	snap atomic.Pointer[map[string]View]

	// reads are the kernel reads of Inspect in flight, per network: a
	// read that hangs in the kernel is waited for by later inspects, not
	// started again. Under readsMu, a leaf.
	readsMu sync.Mutex
	reads   map[string]*kernelRead
}

// kernelRead is one Kernel.Programmed call; done closes when it returned.
type kernelRead struct {
	done       chan struct{}
	fdb, neigh []string
	err        error
}

// netState is one network's state. Slices are never changed in place
// once stored (snapshots share them).
type netState struct {
	// prog orders this network's programmings; taken before mu.
	prog sync.Mutex

	// The fields below are under Controller.mu.
	cancel context.CancelFunc // the watch; nil while not watched
	gen    uint64             // which watch; bumped by Watch and Unwatch
	peers  []Advert           // last validated set (all nodes, this one included)
	rev    int64              // store revision of peers (0: none yet)
	err    error              // last programming error
	cached []Advert           // last set saved in the local store
	// raw is the last set read from the store, before the checks, so a
	// change of address owners can have it judged again without a store
	// call; rechecking is set while such a recheck is queued.
	raw        []Advert
	rawRev     int64
	rechecking bool
}

// View is what the engine reads about one network.
type View struct {
	// Peers is the last validated set: from the watch once it has
	// delivered, else the copy from the local store.
	Peers   []Advert
	Watched bool
	Err     error
}

// New returns a controller; its goroutines end when ctx does (then Wait).
func New(ctx context.Context, cfg Config) *Controller {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	c := &Controller{cfg: cfg, nets: map[string]*netState{}}
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.publishLocked()
	return c
}

// Close stops the watches and waits for the controller's goroutines.
func (c *Controller) Close() {
	c.cancel()
	c.wg.Wait()
}

// publishLocked rebuilds the readers' snapshot.
func (c *Controller) publishLocked() {
	m := make(map[string]View, len(c.nets))
	for id, s := range c.nets {
		v := View{Peers: s.cached, Watched: s.cancel != nil, Err: s.err}
		if s.rev > 0 {
			v.Peers = s.peers
		}
		m[id] = v
	}
	c.snap.Store(&m)
}

func (c *Controller) stateLocked(netID string) *netState {
	s, ok := c.nets[netID]
	if !ok {
		s = &netState{}
		c.nets[netID] = s
	}
	return s
}

// View returns what is known of a network (lock-free).
func (c *Controller) View(netID string) View { return (*c.snap.Load())[netID] }

// Known is the last validated set of a network (lock-free).
func (c *Controller) Known(netID string) []Advert { return c.View(netID).Peers }

// Watched says whether a network's advertisements are watched.
func (c *Controller) Watched(netID string) bool { return c.View(netID).Watched }

// WatchedIDs lists the watched networks.
func (c *Controller) WatchedIDs() []string {
	var ids []string
	for id, v := range *c.snap.Load() {
		if v.Watched {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Restore gives a network the set kept in the local store at the last
// run (used until its watch delivers).
func (c *Controller) Restore(netID string, ads []Advert) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stateLocked(netID).cached = ads
	c.publishLocked()
}

// Watch starts watching a network's advertisements (it has a local
// endpoint now), or asks the running watch for a reconcile.
func (c *Controller) Watch(n model.Network) {
	src := c.source()
	if src == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	s := c.stateLocked(n.ID)
	if s.cancel != nil {
		c.kick(n.ID)
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	s.cancel = cancel
	s.gen++
	gen := s.gen
	c.publishLocked()
	c.wg.Add(2)
	go func() {
		// The owners of the network's addresses, which the
		// advertisements are judged against.
		defer c.wg.Done()
		src.FollowOwners(ctx, n.ID)
	}()
	go func() {
		defer c.wg.Done()
		// A first reconcile from a fresh list, then one per change.
		c.resync(ctx, n.ID, gen)
		err := src.WatchAdverts(ctx, n.ID, 0, func(ads []Advert, rev int64) {
			c.program(ctx, n.ID, gen, ads, rev)
		})
		if err != nil && ctx.Err() == nil {
			c.cfg.Log.Warn("watch advertisements ended", "network", n.Name, "err", err)
		}
	}()
}

// Unwatch ends a network's watch (no local endpoint left). The set seen
// last stays known (names, the VXLAN filter) until Forget.
func (c *Controller) Unwatch(netID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.nets[netID]
	if !ok || s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	s.gen++
	// What the watch delivered stays known as the cached copy.
	if s.rev > 0 {
		s.cached = s.peers
	}
	s.peers, s.rev, s.err, s.raw, s.rawRev = nil, 0, nil, nil, 0
	c.publishLocked()
}

// Forget drops everything about a network (it is gone).
func (c *Controller) Forget(netID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.nets[netID]; ok {
		if s.cancel != nil {
			s.cancel()
		}
		delete(c.nets, netID)
		c.publishLocked()
	}
}

// KickAll reconciles every watched network from a fresh list (a node
// registered or changed address, so advertisements rejected for an
// unknown VTEP may be valid now).
func (c *Controller) KickAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, s := range c.nets {
		if s.cancel != nil {
			c.kick(id)
		}
	}
}

// kick reconciles one watched network soon, on a goroutine of its own.
// Called under mu.
func (c *Controller) kick(netID string) {
	if c.ctx.Err() != nil {
		return
	}
	gen := c.nets[netID].gen
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.resync(c.ctx, netID, gen)
	}()
}

// Recheck judges a network's last raw set again (the owners of its
// addresses changed); no store call.
func (c *Controller) Recheck(netID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.nets[netID]
	if !ok || s.cancel == nil || s.rechecking || s.rawRev == 0 || c.ctx.Err() != nil {
		return
	}
	s.rechecking = true
	gen := s.gen
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.mu.Lock()
		s.rechecking = false
		raw, rev := s.raw, s.rawRev
		c.mu.Unlock()
		c.program(c.ctx, netID, gen, raw, rev)
	}()
}

// ResyncAll reconciles every watched network from a fresh list; it
// returns when done.
func (c *Controller) ResyncAll(ctx context.Context) {
	c.mu.Lock()
	type w struct {
		id  string
		gen uint64
	}
	var ws []w
	for id, s := range c.nets {
		if s.cancel != nil {
			ws = append(ws, w{id, s.gen})
		}
	}
	c.mu.Unlock()
	for _, x := range ws {
		c.resync(ctx, x.id, x.gen)
	}
}

func (c *Controller) source() Source {
	if c.cfg.Source == nil {
		return nil
	}
	return c.cfg.Source()
}

// resync lists the network's advertisements and reprograms the kernel. If
// the store is unreachable the data plane is left as it is.
func (c *Controller) resync(ctx context.Context, netID string, gen uint64) {
	src := c.source()
	if src == nil {
		return
	}
	ads, rev, err := src.Adverts(ctx, netID)
	if err != nil {
		c.cfg.Log.Debug("resync: store unreachable, data plane left as it is", "err", err)
		return
	}
	c.program(ctx, netID, gen, ads, rev)
}

// current returns a network's state if watch generation gen is still the
// current one. Called under mu.
func (c *Controller) currentLocked(netID string, gen uint64) (*netState, bool) {
	s, ok := c.nets[netID]
	if !ok || s.gen != gen || s.cancel == nil {
		return nil, false
	}
	return s, true
}

// program takes the advertised set as of store revision rev: validated,
// kept, saved, handed to the kernel. The watch and the fresh lists of
// resync race each other (and a busy watch lags behind): a set older than
// the one applied last is dropped, else it would remove newer peers from
// the kernel until the next change.
func (c *Controller) program(ctx context.Context, netID string, gen uint64, ads []Advert, rev int64) {
	c.mu.Lock()
	s, ok := c.currentLocked(netID, gen)
	c.mu.Unlock()
	if !ok {
		return
	}
	s.prog.Lock()
	defer s.prog.Unlock()
	n, ok := c.cfg.Network(netID)
	if !ok {
		return
	}
	c.mu.Lock()
	if _, ok := c.currentLocked(netID, gen); !ok || rev < s.rev || rev < s.rawRev {
		c.mu.Unlock()
		return
	}
	s.raw, s.rawRev = ads, rev
	c.mu.Unlock()
	src := c.source()
	if src == nil {
		return
	}
	// Owners the cluster's watch has not delivered yet are read from the
	// store: outside mu.
	ads = src.CheckAdverts(ctx, n, ads)
	c.mu.Lock()
	if _, ok := c.currentLocked(netID, gen); !ok {
		c.mu.Unlock()
		return
	}
	s.peers, s.rev = ads, rev
	changed := !Same(s.cached, ads)
	c.publishLocked()
	c.mu.Unlock()
	if changed && c.cfg.Save != nil {
		if err := c.cfg.Save(netID, ads); err != nil {
			c.cfg.Log.Warn("cache peers", "network", n.Name, "err", err)
		} else {
			c.mu.Lock()
			s.cached = ads
			c.mu.Unlock()
		}
	}
	var err error
	if k, ok := c.cfg.Kernel(n); ok {
		err = k.SetPeers(ctx, n, Remote(ads, c.cfg.NodeID))
	}
	c.mu.Lock()
	if _, ok := c.currentLocked(netID, gen); ok {
		s.err = err
		c.publishLocked()
	}
	c.mu.Unlock()
	if err != nil {
		c.cfg.Log.Warn("program overlay peers; will retry", "network", n.Name, "err", err)
		c.retry(netID, gen)
	}
	if c.cfg.Changed != nil {
		c.cfg.Changed(netID)
	}
}

// retry re-runs a network's reconcile after a kernel error.
func (c *Controller) retry(netID string, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTimer(c.cfg.RetryAfter)
		defer t.Stop()
		select {
		case <-t.C:
			c.resync(c.ctx, netID, gen)
		case <-c.ctx.Done():
		}
	}()
}

// Remote is the part of a set advertised by other nodes.
func Remote(ads []Advert, self string) []Advert {
	var out []Advert
	for _, a := range ads {
		if a.NodeID != self {
			out = append(out, a)
		}
	}
	return out
}

// Same says whether two sets hold the same advertisements in the same
// order.
func Same(a, b []Advert) bool {
	return slices.EqualFunc(a, b, func(x, y Advert) bool {
		return x.EndpointID == y.EndpointID && x.IP == y.IP && x.IP6 == y.IP6 && x.VTEP == y.VTEP &&
			x.NodeID == y.NodeID && x.MAC.String() == y.MAC.String() && x.Name == y.Name &&
			strings.Join(x.Aliases, ",") == strings.Join(y.Aliases, ",") && x.ContainerID == y.ContainerID
	})
}

// Row is one advertised endpoint as `network inspect -v` shows it.
type Row struct {
	IP, MAC, VTEP, Node string
	IP6                 string `json:",omitempty"`
	Local               bool   `json:",omitempty"`
	// Status: "local" (this host's), "programmed" (the kernel holds its
	// entries), "MISSING" (it does not), or "unverified since T" (the
	// kernel holds them but the store has not answered since T, so
	// whether the peer still exists is unknown).
	Status string
}

// InProgress is Kernel.Programmed's answer while a programming of the
// network is in progress: the entries returned with it are those the kernel
// held after the last completed programming.
type InProgress struct{ Since time.Time }

func (e *InProgress) Error() string {
	return "programming in progress since " + e.Since.UTC().Format(time.RFC3339)
}

// Inspection is a network's peer state for `network inspect -v`.
type Inspection struct {
	// Programming, when a programming of the network is in progress
	// (netlink may hang), says since when: the kernel entries and the
	// peers' status are then as of the last completed programming.
	Programming string
	Peers       []Row
	// LastError is the last programming's error.
	LastError error
	// StoreUnreachable says what cannot be done while the store is away.
	StoreUnreachable string
	// KernelError is the failure to read the kernel's entries.
	KernelError error
	// KernelFDB and KernelNeigh are what the kernel holds ("MAC@VTEP",
	// "IP@MAC"); UnexpectedFDB are unicast FDB entries no peer wants.
	KernelFDB, KernelNeigh, UnexpectedFDB []string
}

// Inspect reads the kernel's entries of network n and compares them with
// the desired set. The kernel is read outside every lock.
func (c *Controller) Inspect(ctx context.Context, n model.Network) Inspection {
	v := c.View(n.ID)
	st := cluster.StoreStatus{Reachable: true}
	if c.cfg.Status != nil {
		st = c.cfg.Status()
	}
	var fdb, neigh []string
	var kerr error
	var busy *InProgress
	slow := false
	if k, ok := c.cfg.Kernel(n); ok {
		var err error
		fdb, neigh, err = c.readKernel(ctx, k, n)
		switch {
		case errors.As(err, &busy):
		case errors.Is(err, errKernelSlow):
			slow, kerr = true, err
		case err != nil:
			kerr = fmt.Errorf("read kernel entries: %w", err)
		}
	}
	var desired []Advert
	if v.Watched {
		// Until the watch has delivered (a restart while the store is
		// away), the set kept from the last run.
		desired = v.Peers
	}
	in := Compare(desired, fdb, neigh, c.cfg.NodeID, st)
	if slow {
		for i := range in.Peers {
			if !in.Peers[i].Local {
				in.Peers[i].Status = "unverified (kernel entries not read)"
			}
		}
	}
	in.KernelError = kerr
	if busy != nil {
		in.Programming = busy.Error() + "; kernel entries as of the last completed one"
	}
	if v.Watched {
		in.LastError = v.Err
	}
	if !st.Reachable {
		in.StoreUnreachable = st.Unreachable()
	}
	return in
}

// errKernelSlow: the kernel did not list a network's entries in time.
var errKernelSlow = errors.New("the kernel did not list the entries in time (netlink busy); peers unverified")

// readKernel lists the entries network n's driver holds, waiting at most
// KernelReadTimeout (and ctx): a netlink dump that hangs must not hang
// inspect. One read per network is in flight at a time.
func (c *Controller) readKernel(ctx context.Context, k Kernel, n model.Network) (fdb, neigh []string, err error) {
	c.readsMu.Lock()
	r := c.reads[n.ID]
	if r == nil {
		r = &kernelRead{done: make(chan struct{})}
		if c.reads == nil {
			c.reads = map[string]*kernelRead{}
		}
		c.reads[n.ID] = r
		go func() {
			// Not ctx: the read outlives this inspect if it hangs, and
			// the next inspect waits on it.
			r.fdb, r.neigh, r.err = k.Programmed(c.ctx, n)
			c.readsMu.Lock()
			delete(c.reads, n.ID)
			c.readsMu.Unlock()
			close(r.done)
		}()
	}
	c.readsMu.Unlock()
	timeout := c.cfg.KernelReadTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.done:
		return r.fdb, r.neigh, r.err
	case <-t.C:
		return nil, nil, errKernelSlow
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// Compare marks each desired advertisement against the kernel's entries
// (fdb "MAC@VTEP", neigh "IP@MAC") and the store's health.
func Compare(desired []Advert, fdb, neigh []string, self string, st cluster.StoreStatus) Inspection {
	hasFDB, hasNeigh := set(fdb), set(neigh)
	var in Inspection
	want := map[string]bool{}
	for _, a := range desired {
		r := Row{MAC: a.MAC.String(), VTEP: a.VTEP.String(), Node: a.NodeID}
		if a.IP.IsValid() { // (an IPv6-only network's endpoints have none)
			r.IP = a.IP.String()
		}
		if a.IP6.IsValid() {
			r.IP6 = a.IP6.String()
		}
		if a.NodeID == self {
			r.Local, r.Status = true, "local"
			in.Peers = append(in.Peers, r)
			continue
		}
		key := a.MAC.String() + "@" + a.VTEP.String()
		want[key] = true
		switch {
		case !hasFDB[key] ||
			(a.IP.IsValid() && !hasNeigh[a.IP.String()+"@"+a.MAC.String()]) ||
			(a.IP6.IsValid() && !hasNeigh[a.IP6.String()+"@"+a.MAC.String()]):
			r.Status = "MISSING"
		case !st.Reachable:
			r.Status = "unverified since " + st.LastContact.UTC().Format(time.RFC3339)
		default:
			r.Status = "programmed"
		}
		in.Peers = append(in.Peers, r)
	}
	for k := range hasFDB {
		if !want[k] && !strings.HasPrefix(k, "00:00:00:00:00:00@") {
			in.UnexpectedFDB = append(in.UnexpectedFDB, k)
		}
	}
	sort.Strings(in.UnexpectedFDB)
	in.KernelFDB, in.KernelNeigh = sorted(fdb), sorted(neigh)
	return in
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func sorted(xs []string) []string {
	out := slices.Clone(xs)
	sort.Strings(out)
	return slices.Compact(out)
}
