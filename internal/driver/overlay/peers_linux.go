package overlay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/netns"
)

// SetPeers makes the kernel hold exactly the entries for the given remote
// peers of n (peers on this host's VTEP are ignored): per remote endpoint
// an FDB entry MAC -> VTEP and a permanent neighbour entry IP -> MAC on
// vxlan0, per remote VTEP an all-zero-MAC FDB entry; extra entries are
// deleted and what br0 learned for MACs no longer wanted is flushed.
//
// It is a reconcile: calling it again with the same peers changes nothing,
// and it repairs drift. It keeps going past single failures and returns
// them joined; the peer set is kept, so Resync retries. If n has no local
// data plane (no local container), it remembers nothing and returns nil:
// call it again after Join. The driver copies peers.
func (d *Driver) SetPeers(ctx context.Context, n model.Network, peers []Peer) error {
	if err := checkNetwork(n); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	h, vx, err := d.openVxlan(n.ID)
	if err != nil || vx == nil {
		delete(d.desired, n.ID)
		return err
	}
	defer h.Close()
	cp := make([]Peer, len(peers))
	copy(cp, peers)
	d.desired[n.ID] = desiredPeers{n: n, peers: cp}
	return d.reconcile(h, vx, n, cp)
}

// Resync re-applies the last peer set of every network with a local data
// plane, repairing drift. Networks whose data plane is gone are forgotten.
func (d *Driver) Resync(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for id, dp := range d.desired {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		h, vx, err := d.openVxlan(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if vx == nil {
			delete(d.desired, id)
			continue
		}
		errs = append(errs, d.reconcile(h, vx, dp.n, dp.peers))
		h.Close()
	}
	return errors.Join(errs...)
}

// Programmed returns the FDB and neighbour entries the kernel holds on n's
// vxlan0 (empty when n has no local data plane).
func (d *Driver) Programmed(ctx context.Context, n model.Network) (State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, vx, err := d.openVxlan(n.ID)
	if err != nil || vx == nil {
		return State{}, err
	}
	defer h.Close()
	k, err := readKernel(h, vx)
	if err != nil {
		return State{}, fmt.Errorf("overlay: network %s: %w", short(n.ID, 12), err)
	}
	s := State{FDB: k.fdb}
	for _, e := range k.neigh {
		s.Neigh = append(s.Neigh, e.NeighEntry)
	}
	s.sort()
	return s, nil
}

// openVxlan returns a handle in network netID's overlay namespace and its
// vxlan0, or nils when the data plane does not exist.
func (d *Driver) openVxlan(netID string) (*netlink.Handle, netlink.Link, error) {
	path := d.nsPath(netID)
	if !netns.IsPinned(path) {
		return nil, nil, nil
	}
	h, err := netns.Handle(path)
	if err != nil {
		return nil, nil, fmt.Errorf("overlay: network %s: %w", short(netID, 12), err)
	}
	vx, err := h.LinkByName(vxlanName)
	if err != nil {
		h.Close()
		if isNotFound(err) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("overlay: network %s: find %s: %w", short(netID, 12), vxlanName, err)
	}
	return h, vx, nil
}

type kernelNeigh struct {
	NeighEntry
	permanent bool
}

// kernelState is what vxlan0 holds.
type kernelState struct {
	fdb   []FDBEntry    // vxlan0's own entries (one per MAC and remote)
	neigh []kernelNeigh // neighbour entries on vxlan0
	// learned are the MACs br0 learned on its vxlan0 port.
	learned []net.HardwareAddr
}

func readKernel(h *netlink.Handle, vx netlink.Link) (kernelState, error) {
	var k kernelState
	idx := vx.Attrs().Index
	// An interrupted dump is an error too: the caller retries the whole
	// reconcile rather than act on a partial list.
	fdb, err := h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return k, fmt.Errorf("list fdb: %w", err)
	}
	for _, e := range fdb {
		switch {
		case e.IP != nil:
			// vxlan0's own entry: it has a remote (NDA_DST).
			vtep, ok := netip.AddrFromSlice(e.IP)
			if !ok || len(e.HardwareAddr) != 6 {
				continue
			}
			k.fdb = append(k.fdb, FDBEntry{MAC: e.HardwareAddr, VTEP: vtep.Unmap()})
		case e.MasterIndex != 0 || e.Flags&netlink.NTF_MASTER != 0:
			// br0's entry for its vxlan0 port. Learned ones are neither
			// permanent (local) nor static (added by a user).
			learned := e.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) == 0
			if learned && len(e.HardwareAddr) == 6 && e.HardwareAddr[0]&1 == 0 {
				k.learned = append(k.learned, e.HardwareAddr)
			}
		}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		ns, err := h.NeighList(idx, fam)
		if err != nil {
			return k, fmt.Errorf("list neighbours: %w", err)
		}
		for _, e := range ns {
			ip, ok := netip.AddrFromSlice(e.IP)
			if !ok || ip.IsMulticast() {
				// Multicast entries (ff02::2 ...) are the kernel's own.
				continue
			}
			k.neigh = append(k.neigh, kernelNeigh{
				NeighEntry: NeighEntry{IP: ip.Unmap(), MAC: e.HardwareAddr},
				permanent:  e.State&netlink.NUD_PERMANENT != 0,
			})
		}
	}
	return k, nil
}

// reconcile lists vxlan0's entries, diffs them against the peers and
// applies the difference: replaces and appends first, deletes after.
func (d *Driver) reconcile(h *netlink.Handle, vx netlink.Link, n model.Network, peers []Peer) error {
	k, err := readKernel(h, vx)
	if err != nil {
		return fmt.Errorf("overlay: network %s: %w", short(n.ID, 12), err)
	}
	actual := State{FDB: k.fdb}
	for _, e := range k.neigh {
		ne := e.NeighEntry
		if !e.permanent {
			ne.MAC = nil // not ours as it stands: replace it if wanted
		}
		actual.Neigh = append(actual.Neigh, ne)
	}
	p := diff(desiredState(d.opts.VTEP, peers), actual)
	idx := vx.Attrs().Index
	var errs []error
	fdbNeigh := func(e FDBEntry) *netlink.Neigh {
		return &netlink.Neigh{
			LinkIndex:    idx,
			Family:       unix.AF_BRIDGE,
			State:        netlink.NUD_PERMANENT,
			Flags:        netlink.NTF_SELF,
			HardwareAddr: e.MAC,
			IP:           e.VTEP.AsSlice(),
		}
	}
	for _, e := range p.fdbReplace {
		if err := h.NeighSet(fdbNeigh(e)); err != nil {
			errs = append(errs, fmt.Errorf("replace fdb %s -> %s: %w", e.MAC, e.VTEP, err))
		}
	}
	for _, e := range p.fdbAppend {
		if err := h.NeighAppend(fdbNeigh(e)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("append fdb %s -> %s: %w", e.MAC, e.VTEP, err))
		}
	}
	for _, e := range p.neighSet {
		nb := &netlink.Neigh{LinkIndex: idx, State: netlink.NUD_PERMANENT, IP: e.IP.AsSlice(), HardwareAddr: e.MAC}
		if err := h.NeighSet(nb); err != nil {
			errs = append(errs, fmt.Errorf("replace neighbour %s -> %s: %w", e.IP, e.MAC, err))
		}
	}
	for _, e := range p.neighDel {
		nb := &netlink.Neigh{LinkIndex: idx, IP: e.IP.AsSlice()}
		if err := h.NeighDel(nb); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete neighbour %s: %w", e.IP, err))
		}
	}
	for _, e := range p.fdbDel {
		if err := h.NeighDel(fdbNeigh(e)); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete fdb %s -> %s: %w", e.MAC, e.VTEP, err))
		}
	}
	for _, mac := range k.learned {
		if p.keepMACs[string(mac)] {
			continue
		}
		nb := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER, HardwareAddr: mac}
		if err := h.NeighDel(nb); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("flush learned %s: %w", mac, err))
		}
	}
	if !p.empty() {
		d.log.Debug("programmed peers", "network", short(n.ID, 12),
			"fdb_replaced", len(p.fdbReplace), "fdb_appended", len(p.fdbAppend), "fdb_deleted", len(p.fdbDel),
			"neigh_set", len(p.neighSet), "neigh_deleted", len(p.neighDel), "errors", len(errs))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("overlay: network %s: program peers: %w", short(n.ID, 12), err)
	}
	return nil
}
