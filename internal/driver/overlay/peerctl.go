package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vxnet/vxnet/internal/model"
)

// The peer controller is the overlay data plane's forwarding state as a
// component of its own: it takes the whole desired peer set of a network,
// turns it into FDB and neighbour entries (desiredState), lists what the
// kernel holds, diffs (diff) and applies the difference through a
// PeerKernel. It does no netlink itself, so it is tested without root
// against a fake kernel; the driver gives it the netlink kernel
// (peers_linux.go).

// PeerKernel opens the forwarding tables of one overlay network.
type PeerKernel interface {
	// Open returns the network's tables, or ok=false (and no error) when
	// the network has no data plane on this host. The caller closes the
	// table.
	Open(netID string) (t PeerTable, ok bool, err error)
}

// PeerTable is vxlan0's FDB and neighbour entries of one network, and what
// br0 learned on its vxlan0 port. Every change is idempotent: appending an
// entry that exists and deleting one that does not succeed.
type PeerTable interface {
	// Read lists the entries. An interrupted or partial listing is an
	// error (the caller does not act on half a table).
	Read() (KernelEntries, error)
	// ReplaceFDB sets the unicast entry MAC -> VTEP (ip's "replace").
	ReplaceFDB(e FDBEntry) error
	// AppendFDB adds a head-end replication entry (all-zero MAC).
	AppendFDB(e FDBEntry) error
	DeleteFDB(e FDBEntry) error
	// SetNeigh sets the permanent neighbour entry IP -> MAC.
	SetNeigh(e NeighEntry) error
	DeleteNeigh(e NeighEntry) error
	// FlushLearned removes what br0 learned for mac on vxlan0.
	FlushLearned(mac net.HardwareAddr) error
	Close()
}

// KernelEntries is what a PeerTable holds.
type KernelEntries struct {
	FDB   []FDBEntry    // vxlan0's own entries (one per MAC and remote)
	Neigh []KernelNeigh // neighbour entries on vxlan0
	// Learned are the unicast MACs br0 learned on its vxlan0 port.
	Learned []net.HardwareAddr
}

// KernelNeigh is a neighbour entry; only permanent ones are ours as they
// stand (others are replaced when wanted).
type KernelNeigh struct {
	NeighEntry
	Permanent bool
}

// PeerController keeps the desired peer set of every network with a local
// data plane and reconciles the kernel with it. It is safe for concurrent
// use; reconciles are serialised.
type PeerController struct {
	kernel PeerKernel
	vtep   netip.Addr
	log    *slog.Logger

	mu sync.Mutex
	// desired is the last peer set given to Set, per network ID, for
	// networks with a local data plane.
	desired map[string]desiredPeers

	// progMu guards prog; a leaf, held for map and field updates only
	// (never across a kernel call), so Programmed answers while a
	// programming holds mu.
	progMu sync.Mutex
	prog   map[string]*progress
}

// progress is one network's programming as Programmed sees it.
type progress struct {
	// since is when the programming in progress began (zero: none).
	since time.Time
	// gen counts the programmings begun, so a listing that overlapped
	// one is not taken for the kernel's state.
	gen uint64
	// last is what the kernel held after the last completed programming
	// (its listing with the changes that succeeded applied); known says
	// whether there was one.
	last  State
	known bool
}

type desiredPeers struct {
	n     model.Network
	peers []Peer
	// applied is the identity (PeerTable.ID) of the table the set was
	// last reconciled into without error; "" when it was not, or when the
	// table has no identity.
	applied string
}

// identified is a PeerTable that names the kernel object it is: the same
// ID means the same vxlan0 in the same namespace, so what was programmed
// into it is still there unless something else changed it (which Resync
// repairs).
type identified interface {
	ID() string
}

func tableID(t PeerTable) string {
	if it, ok := t.(identified); ok {
		return it.ID()
	}
	return ""
}

func samePeers(a, b []Peer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.IP != y.IP || x.IP6 != y.IP6 || x.VTEP != y.VTEP || x.NodeID != y.NodeID || string(x.MAC) != string(y.MAC) {
			return false
		}
	}
	return true
}

// NewPeerController returns a controller programming kernel; peers on
// localVTEP are this host's and get no entries.
func NewPeerController(kernel PeerKernel, localVTEP netip.Addr, log *slog.Logger) *PeerController {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PeerController{kernel: kernel, vtep: localVTEP.Unmap(), log: log, desired: map[string]desiredPeers{},
		prog: map[string]*progress{}}
}

// begin records that a programming of netID starts.
func (c *PeerController) begin(netID string) {
	c.progMu.Lock()
	defer c.progMu.Unlock()
	p := c.prog[netID]
	if p == nil {
		p = &progress{}
		c.prog[netID] = p
	}
	p.since = time.Now()
	p.gen++
}

// end records that a programming of netID is over; after is what the
// kernel holds now (ok=false: unknown, the last known state stays).
func (c *PeerController) end(netID string, after State, ok bool) {
	c.progMu.Lock()
	defer c.progMu.Unlock()
	p := c.prog[netID]
	if p == nil {
		return
	}
	p.since = time.Time{}
	if ok {
		after.sort()
		p.last, p.known = after, true
	}
}

// drop forgets netID's programming state (its data plane is gone).
func (c *PeerController) drop(netID string) {
	c.progMu.Lock()
	defer c.progMu.Unlock()
	delete(c.prog, netID)
}

// inProgress returns netID's programming generation and, when one is in
// progress, since when and the state as of the last completed one.
func (c *PeerController) inProgress(netID string) (gen uint64, since time.Time, last State) {
	c.progMu.Lock()
	defer c.progMu.Unlock()
	p := c.prog[netID]
	if p == nil {
		return 0, time.Time{}, State{}
	}
	return p.gen, p.since, p.last.clone()
}

// Set makes the kernel hold exactly the entries for peers on network n and
// remembers the set for Resync. Without a local data plane it remembers
// nothing and returns nil. It keeps going past single failures and returns
// them joined; the set is kept, so Resync retries. Set copies peers.
//
// The set the table was last reconciled into without error is not read
// and diffed again: one start on a network reaches every member two or
// three times with the same set (its address owner, its advertisement,
// the starting host's own resync), and each listing of vxlan0's tables is
// as long as the network. Drift (entries changed by someone else) is
// repaired by Resync, which always lists and diffs.
func (c *PeerController) Set(ctx context.Context, n model.Network, peers []Peer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok, err := c.kernel.Open(n.ID)
	if err != nil || !ok {
		delete(c.desired, n.ID)
		c.drop(n.ID)
		return err
	}
	defer t.Close()
	id := tableID(t)
	if prev, ok := c.desired[n.ID]; ok && id != "" && prev.applied == id && samePeers(prev.peers, peers) {
		return nil
	}
	cp := make([]Peer, len(peers))
	copy(cp, peers)
	dp := desiredPeers{n: n, peers: cp}
	err = c.program(t, n, cp)
	if err == nil {
		dp.applied = id
	}
	c.desired[n.ID] = dp
	return err
}

// Resync re-applies the last set of every network, repairing drift and
// retrying what failed. Networks whose data plane is gone are forgotten.
func (c *PeerController) Resync(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for id, dp := range c.desired {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		t, ok, err := c.kernel.Open(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			delete(c.desired, id)
			c.drop(id)
			continue
		}
		err = c.program(t, dp.n, dp.peers)
		dp.applied = ""
		if err == nil {
			dp.applied = tableID(t)
		}
		c.desired[id] = dp
		errs = append(errs, err)
		t.Close()
	}
	return errors.Join(errs...)
}

// Forget drops a network's desired set (its data plane is going).
func (c *PeerController) Forget(netID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.desired, netID)
	c.drop(netID)
}

// Programmed returns the FDB and neighbour entries the kernel holds for n
// (empty without a local data plane). It waits for no programming: while
// one of n is in progress (netlink may hang), it returns the entries as of
// the last completed one with ProgrammingSince set; a listing that
// overlapped a programming's start is not used either.
func (c *PeerController) Programmed(ctx context.Context, n model.Network) (State, error) {
	gen, since, last := c.inProgress(n.ID)
	if !since.IsZero() {
		last.ProgrammingSince = since
		return last, nil
	}
	t, ok, err := c.kernel.Open(n.ID)
	if err != nil || !ok {
		return State{}, err
	}
	defer t.Close()
	k, err := t.Read()
	if gen2, since, last := c.inProgress(n.ID); gen2 != gen {
		if since.IsZero() {
			// One began and ended while we listed: the listing may
			// hold half of it; what it left is known.
			return last, nil
		}
		last.ProgrammingSince = since
		return last, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("overlay: network %s: %w", short(n.ID, 12), err)
	}
	return entriesState(k), nil
}

// entriesState is the FDB and neighbour entries of a listing, sorted.
func entriesState(k KernelEntries) State {
	s := State{FDB: k.FDB}
	for _, e := range k.Neigh {
		s.Neigh = append(s.Neigh, e.NeighEntry)
	}
	s.sort()
	return s
}

// program reconciles t with peers, recording for Programmed that a
// programming of n is in progress and, after it, what the kernel holds.
func (c *PeerController) program(t PeerTable, n model.Network, peers []Peer) error {
	c.begin(n.ID)
	after, ok, err := c.reconcile(t, n, peers)
	c.end(n.ID, after, ok)
	return err
}

// reconcile lists the table, diffs it against the peers and applies the
// difference: replaces and appends first, deletes after. It returns what
// the table holds afterwards (the listing with the changes that succeeded
// applied; ok=false when the listing failed).
func (c *PeerController) reconcile(t PeerTable, n model.Network, peers []Peer) (after State, ok bool, err error) {
	k, err := t.Read()
	if err != nil {
		return State{}, false, fmt.Errorf("overlay: network %s: %w", short(n.ID, 12), err)
	}
	actual := State{FDB: k.FDB}
	for _, e := range k.Neigh {
		ne := e.NeighEntry
		if !e.Permanent {
			ne.MAC = nil // not ours as it stands: replace it if wanted
		}
		actual.Neigh = append(actual.Neigh, ne)
	}
	p := diff(desiredState(c.vtep, peers), actual)
	fdb := map[string]FDBEntry{} // by MAC@VTEP
	for _, e := range k.FDB {
		fdb[e.MAC.String()+"@"+e.VTEP.String()] = e
	}
	neigh := map[netip.Addr]NeighEntry{}
	for _, e := range k.Neigh {
		neigh[e.IP] = e.NeighEntry
	}
	var errs []error
	for _, e := range p.fdbReplace {
		if err := t.ReplaceFDB(e); err != nil {
			errs = append(errs, fmt.Errorf("replace fdb %s -> %s: %w", e.MAC, e.VTEP, err))
			continue
		}
		for key, old := range fdb { // one unicast entry per MAC
			if string(old.MAC) == string(e.MAC) {
				delete(fdb, key)
			}
		}
		fdb[e.MAC.String()+"@"+e.VTEP.String()] = e
	}
	for _, e := range p.fdbAppend {
		if err := t.AppendFDB(e); err != nil {
			errs = append(errs, fmt.Errorf("append fdb %s -> %s: %w", e.MAC, e.VTEP, err))
			continue
		}
		fdb[e.MAC.String()+"@"+e.VTEP.String()] = e
	}
	for _, e := range p.neighSet {
		if err := t.SetNeigh(e); err != nil {
			errs = append(errs, fmt.Errorf("replace neighbour %s -> %s: %w", e.IP, e.MAC, err))
			continue
		}
		neigh[e.IP] = e
	}
	for _, e := range p.neighDel {
		if err := t.DeleteNeigh(e); err != nil {
			errs = append(errs, fmt.Errorf("delete neighbour %s: %w", e.IP, err))
			continue
		}
		delete(neigh, e.IP)
	}
	for _, e := range p.fdbDel {
		if err := t.DeleteFDB(e); err != nil {
			errs = append(errs, fmt.Errorf("delete fdb %s -> %s: %w", e.MAC, e.VTEP, err))
			continue
		}
		delete(fdb, e.MAC.String()+"@"+e.VTEP.String())
	}
	for _, mac := range k.Learned {
		if p.keepMACs[string(mac)] {
			continue
		}
		if err := t.FlushLearned(mac); err != nil {
			errs = append(errs, fmt.Errorf("flush learned %s: %w", mac, err))
		}
	}
	for _, e := range fdb {
		after.FDB = append(after.FDB, e)
	}
	for _, e := range neigh {
		after.Neigh = append(after.Neigh, e)
	}
	if !p.empty() {
		c.log.Debug("programmed peers", "network", short(n.ID, 12),
			"fdb_replaced", len(p.fdbReplace), "fdb_appended", len(p.fdbAppend), "fdb_deleted", len(p.fdbDel),
			"neigh_set", len(p.neighSet), "neigh_deleted", len(p.neighDel), "errors", len(errs))
	}
	if err := errors.Join(errs...); err != nil {
		return after, true, fmt.Errorf("overlay: network %s: program peers: %w", short(n.ID, 12), err)
	}
	return after, true, nil
}
