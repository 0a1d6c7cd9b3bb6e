package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// The engine half of the overlay peer controller: for every global network
// with a local endpoint, this host advertises its endpoints (under its node
// lease) and watches the advertisements of the others (advertSource, the
// cluster store). Each set, validated, is kept (in memory and in the local
// store), handed whole to the driver's SetPeers (the kernel half,
// overlay.PeerController, diffs it against the kernel) and rendered into
// the firewall's VXLAN filter and the DNS server's view. Watches only say
// when to reconcile: a set older than the one applied is dropped, a failed
// programming is retried, and a periodic resync (startBackground) repairs
// drift. The state (peerWatches, cachedPeers) is under Engine.mu; one
// network's programmings are ordered by its peerWatch.prog.

// PeerSetter is the overlay driver's peer programming ability.
type PeerSetter interface {
	SetPeers(ctx context.Context, n model.Network, peers []Peer) error
	Resync(ctx context.Context) error
}

// Peer is a remote endpoint as the overlay driver programs it.
type Peer = cluster.Advert

// afterJoin advertises a new overlay endpoint and starts watching the
// network's peers.
func (e *Engine) afterJoin(n model.Network, ep model.Endpoint) {
	if n.Scope != model.ScopeGlobal || e.cluster() == nil {
		return
	}
	e.advertise(e.ctx, n, ep)
	e.startPeerWatch(n)
}

func (e *Engine) advertise(ctx context.Context, n model.Network, ep model.Endpoint) {
	err := e.cluster().Advertise(ctx, cluster.Advert{NetworkID: n.ID, EndpointID: ep.ID,
		IP: ep.Addr.Addr(), IP6: ep.Addr6.Addr(), MAC: ep.MAC, VTEP: e.opts.VTEP, Name: ep.Name, Aliases: ep.Aliases,
		ContainerID: ep.ContainerID})
	if err != nil {
		// The cluster publishes it once the store is back.
		e.log.Warn("advertise endpoint", "network", n.Name, "ip", ep.Addr.Addr(), "ip6", ep.Addr6.Addr(), "err", err)
	}
}

// beforeRelease withdraws an overlay endpoint (already gone from the view)
// and stops watching the network when no local endpoint is left.
func (e *Engine) beforeRelease(ctx context.Context, n model.Network, ep model.Endpoint) {
	if n.Scope != model.ScopeGlobal || e.cluster() == nil {
		return
	}
	if err := e.cluster().Withdraw(ctx, n.ID, ep.ID); err != nil {
		e.log.Warn("withdraw endpoint", "network", n.Name, "err", err)
	}
	e.mu.Lock()
	if len(e.endpointsOnLocked(n.ID)) == 0 && e.attaching[n.ID] == 0 {
		e.stopPeerWatchLocked(n.ID)
	}
	e.mu.Unlock()
}

// peerWatch is the watch of one global network's advertisements.
type peerWatch struct {
	cancel context.CancelFunc
	// prog serialises the programming of this network (store cache,
	// netlink); taken before Engine.mu. The fields below are under mu.
	prog  sync.Mutex
	peers []cluster.Advert // last set seen (all nodes, this one included)
	rev   int64            // store revision of peers
	err   error            // last programming error
	// raw is the last set read from the store, before the checks, so a
	// change of address owners can have it judged again without a store
	// call; rechecking is set while such a recheck is queued.
	raw        []cluster.Advert
	rawRev     int64
	rechecking bool
}

// startPeerWatch starts watching a network's advertisements (or asks the
// running watch for a reconcile).
func (e *Engine) startPeerWatch(n model.Network) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.peerWatches[n.ID]; ok {
		e.kickLocked(n.ID)
		return
	}
	ctx, cancel := context.WithCancel(e.ctx)
	e.peerWatches[n.ID] = &peerWatch{cancel: cancel}
	e.wg.Add(2)
	go func() {
		// The owners of the network's addresses, which the
		// advertisements are judged against.
		defer e.wg.Done()
		e.adverts().FollowOwners(ctx, n.ID)
	}()
	go func() {
		defer e.wg.Done()
		// A first reconcile from a fresh list, then one per change.
		e.resyncNetwork(ctx, n.ID)
		err := e.adverts().WatchAdverts(ctx, n.ID, 0, func(ads []cluster.Advert, rev int64) {
			e.programPeers(ctx, n.ID, ads, rev)
		})
		if err != nil && ctx.Err() == nil {
			e.log.Warn("watch advertisements ended", "network", n.Name, "err", err)
		}
	}()
}

// stopPeerWatchLocked ends a network's watch. Its callers re-render the
// firewall once the endpoint or network is gone, so the network's remote
// VTEPs stop being accepted at once.
func (e *Engine) stopPeerWatchLocked(netID string) {
	if w, ok := e.peerWatches[netID]; ok {
		w.cancel()
		delete(e.peerWatches, netID)
	}
}

// kickLocked asks for a reconcile of one network soon.
func (e *Engine) kickLocked(netID string) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.resyncNetwork(e.ctx, netID)
	}()
}

// resyncNetwork lists the network's advertisements and reprograms the
// kernel. If the store is unreachable the data plane is left as it is.
func (e *Engine) resyncNetwork(ctx context.Context, netID string) {
	ads, rev, err := e.adverts().Adverts(ctx, netID)
	if err != nil {
		e.log.Debug("resync: store unreachable, data plane left as it is", "err", err)
		return
	}
	e.programPeers(ctx, netID, ads, rev)
}

// programPeers hands the advertised set as of store revision rev to the
// driver and refreshes the firewall's list of member VTEPs. The watch and
// the fresh lists of resyncNetwork race each other (and a busy watch lags
// behind): a set older than the one applied last is dropped, else it would
// remove newer peers from the kernel until the next change. The network's
// prog lock orders the programmings; mu is held only to read and record.
func (e *Engine) programPeers(ctx context.Context, netID string, ads []cluster.Advert, rev int64) {
	e.mu.Lock()
	w, ok := e.peerWatches[netID]
	e.mu.Unlock()
	if !ok {
		return
	}
	w.prog.Lock()
	defer w.prog.Unlock()
	e.mu.Lock()
	cur, ok := e.peerWatches[netID]
	n, nok := e.networks[netID]
	if !ok || cur != w || !nok || rev < w.rev {
		e.mu.Unlock()
		return
	}
	w.raw, w.rawRev = ads, rev
	e.mu.Unlock()
	// Records are untrusted: keep only what is valid together (addresses
	// in the subnet and allocated to the advertising node in global IPAM,
	// VTEPs of registered nodes, no address claimed twice; owners the
	// cluster's watch has not delivered yet are read from the store, so
	// outside mu).
	ads = e.adverts().CheckAdverts(ctx, n, ads)
	e.mu.Lock()
	if cur, ok := e.peerWatches[netID]; !ok || cur != w {
		e.mu.Unlock()
		return
	}
	w.peers, w.rev = ads, rev
	changed := !sameAdverts(e.cachedPeers[netID], ads)
	e.mu.Unlock()
	if changed {
		// Keep the last set in the local store (a restart during a store
		// outage keeps peer names and the VXLAN filter).
		if err := e.opts.Store.Put(store.Peers, netID, ads); err != nil {
			e.log.Warn("cache peers", "err", err)
		} else {
			e.mu.Lock()
			e.cachedPeers[netID] = ads
			e.mu.Unlock()
		}
	}
	e.syncDNS()
	ps, ok := e.drivers[n.Driver].(PeerSetter)
	if !ok {
		return
	}
	var remote []Peer
	for _, a := range ads {
		if a.NodeID != e.opts.NodeID {
			remote = append(remote, a)
		}
	}
	err := ps.SetPeers(ctx, n, remote)
	e.mu.Lock()
	w.err = err
	e.mu.Unlock()
	if err != nil {
		e.log.Warn("program overlay peers; will retry", "network", n.Name, "err", err)
		e.retrySoon(netID)
	}
	e.applyFirewall()
}

// retrySoon re-runs a network's reconcile after a netlink error.
func (e *Engine) retrySoon(netID string) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		select {
		case <-time.After(time.Second):
			e.resyncNetwork(e.ctx, netID)
		case <-e.ctx.Done():
		}
	}()
}

// verbose is what inspect -v adds for an overlay network: the VNI, the
// overlay namespace, this host's desired peer table and what the kernel
// holds, with any difference marked.
func (e *Engine) verbose(ctx context.Context, n model.Network) map[string]any {
	if n.Scope != model.ScopeGlobal {
		return nil
	}
	out := map[string]any{"VNI": n.VNI}
	if p, ok := e.drivers[n.Driver].(interface{ NetnsPath(model.Network) string }); ok {
		out["Namespace"] = p.NetnsPath(n)
	}
	e.mu.Lock()
	var desired []cluster.Advert
	if w, ok := e.peerWatches[n.ID]; ok {
		desired = w.peers
		if w.err != nil {
			out["LastError"] = w.err.Error()
		}
	}
	self := ""
	var store cluster.StoreStatus
	if g := e.cluster(); g != nil {
		self = e.opts.NodeID
		store = g.Status()
	}
	e.mu.Unlock()
	if self != "" && !store.Reachable {
		out["StoreUnreachable"] = store.Unreachable()
	}
	type peerRow struct {
		IP, MAC, VTEP, Node string
		IP6                 string `json:",omitempty"`
		Local               bool   `json:",omitempty"`
		Status              string // programmed, MISSING, local, unverified since T
	}
	fdb, neigh, err := e.programmed(ctx, n)
	if err != nil {
		out["KernelError"] = err.Error()
	}
	var rows []peerRow
	wantFDB := map[string]bool{}
	for _, a := range desired {
		r := peerRow{IP: a.IP.String(), MAC: a.MAC.String(), VTEP: a.VTEP.String(), Node: a.NodeID}
		if a.IP6.IsValid() {
			r.IP6 = a.IP6.String()
		}
		if a.NodeID == self {
			r.Local, r.Status = true, "local"
		} else {
			key := a.MAC.String() + "@" + a.VTEP.String()
			wantFDB[key] = true
			switch {
			case !(fdb[key] && neigh[a.IP.String()+"@"+a.MAC.String()]) ||
				(a.IP6.IsValid() && !neigh[a.IP6.String()+"@"+a.MAC.String()]):
				r.Status = "MISSING"
			case !store.Reachable:
				// The kernel holds the entry, but whether the peer
				// still exists is unknown until the store answers.
				r.Status = "unverified since " + store.LastContact.UTC().Format(time.RFC3339)
			default:
				r.Status = "programmed"
			}
		}
		rows = append(rows, r)
	}
	var extra []string
	for k := range fdb {
		if !wantFDB[k] && len(k) > 17 && k[:17] != "00:00:00:00:00:00" {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	out["Peers"] = rows
	out["KernelFDB"] = keys(fdb)
	out["KernelNeigh"] = keys(neigh)
	if len(extra) > 0 {
		out["UnexpectedFDB"] = extra
	}
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// programmed reads the kernel's FDB ("MAC@VTEP") and neighbour
// ("IP@MAC") entries of an overlay network through the driver.
func (e *Engine) programmed(ctx context.Context, n model.Network) (map[string]bool, map[string]bool, error) {
	fdb, neigh := map[string]bool{}, map[string]bool{}
	p, ok := e.drivers[n.Driver].(programmedReader)
	if !ok {
		return fdb, neigh, nil
	}
	f, nb, err := p.ProgrammedEntries(ctx, n)
	if err != nil {
		return fdb, neigh, fmt.Errorf("read kernel entries: %w", err)
	}
	for _, x := range f {
		fdb[x] = true
	}
	for _, x := range nb {
		neigh[x] = true
	}
	return fdb, neigh, nil
}

type programmedReader interface {
	ProgrammedEntries(ctx context.Context, n model.Network) (fdb, neigh []string, err error)
}

// knownPeersLocked is the last advertisement set of a global network: from
// its watch once that has delivered, else the copy kept in the local store
// (so a daemon restarted while the store is down keeps its peers' names
// and its VXLAN filter).
func (e *Engine) knownPeersLocked(netID string) []cluster.Advert {
	if w, ok := e.peerWatches[netID]; ok && w.rev > 0 {
		return w.peers
	}
	return e.cachedPeers[netID]
}

func sameAdverts(a, b []cluster.Advert) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.EndpointID != y.EndpointID || x.IP != y.IP || x.IP6 != y.IP6 || x.VTEP != y.VTEP || x.MAC.String() != y.MAC.String() ||
			x.Name != y.Name || strings.Join(x.Aliases, ",") != strings.Join(y.Aliases, ",") || x.ContainerID != y.ContainerID {
			return false
		}
	}
	return true
}
