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
	return d.peers.Set(ctx, n, peers)
}

// Resync re-applies the last peer set of every network with a local data
// plane, repairing drift. Networks whose data plane is gone are forgotten.
func (d *Driver) Resync(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.peers.Resync(ctx)
}

// Programmed returns the FDB and neighbour entries the kernel holds on n's
// vxlan0 (empty when n has no local data plane). It takes neither d.mu nor
// the peer controller's lock, so it answers while a programming or a join
// hangs in netlink: while a programming of n is in progress it returns the
// entries as of the last completed one, with State.ProgrammingSince set.
// (A data plane removed while it lists gives an error or no entries.)
func (d *Driver) Programmed(ctx context.Context, n model.Network) (State, error) {
	return d.peers.Programmed(ctx, n)
}

// netlinkKernel is the peer controller's kernel: vxlan0 in each overlay
// namespace, through a namespace-bound netlink handle.
type netlinkKernel struct{ d *Driver }

func (k netlinkKernel) Open(netID string) (PeerTable, bool, error) {
	h, vx, err := k.d.openVxlan(netID)
	if err != nil || vx == nil {
		return nil, false, err
	}
	t := &netlinkTable{h: h, idx: vx.Attrs().Index}
	var st unix.Stat_t
	if err := unix.Stat(k.d.nsPath(netID), &st); err == nil {
		// The namespace (nsfs inode) and vxlan0's index in it: a re-made
		// data plane is another table.
		t.id = fmt.Sprintf("%d:%d/%d", st.Dev, st.Ino, t.idx)
	}
	return t, true, nil
}

// netlinkTable is one network's vxlan0.
type netlinkTable struct {
	h   *netlink.Handle
	idx int
	id  string
}

// ID names the table for the peer controller ("" if unknown).
func (t *netlinkTable) ID() string { return t.id }

func (t *netlinkTable) Close() { t.h.Close() }

func (t *netlinkTable) Read() (KernelEntries, error) { return readKernel(t.h, t.idx) }

func (t *netlinkTable) fdb(e FDBEntry) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    t.idx,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT,
		Flags:        netlink.NTF_SELF,
		HardwareAddr: e.MAC,
		IP:           e.VTEP.AsSlice(),
	}
}

func (t *netlinkTable) ReplaceFDB(e FDBEntry) error { return t.h.NeighSet(t.fdb(e)) }

func (t *netlinkTable) AppendFDB(e FDBEntry) error {
	if err := t.h.NeighAppend(t.fdb(e)); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func (t *netlinkTable) DeleteFDB(e FDBEntry) error {
	if err := t.h.NeighDel(t.fdb(e)); err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

func (t *netlinkTable) SetNeigh(e NeighEntry) error {
	return t.h.NeighSet(&netlink.Neigh{LinkIndex: t.idx, State: netlink.NUD_PERMANENT, IP: e.IP.AsSlice(), HardwareAddr: e.MAC})
}

func (t *netlinkTable) DeleteNeigh(e NeighEntry) error {
	if err := t.h.NeighDel(&netlink.Neigh{LinkIndex: t.idx, IP: e.IP.AsSlice()}); err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

func (t *netlinkTable) FlushLearned(mac net.HardwareAddr) error {
	nb := &netlink.Neigh{LinkIndex: t.idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER, HardwareAddr: mac}
	if err := t.h.NeighDel(nb); err != nil && !isNotFound(err) {
		return err
	}
	return nil
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

func readKernel(h *netlink.Handle, idx int) (KernelEntries, error) {
	var k KernelEntries
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
			k.FDB = append(k.FDB, FDBEntry{MAC: e.HardwareAddr, VTEP: vtep.Unmap()})
		case e.MasterIndex != 0 || e.Flags&netlink.NTF_MASTER != 0:
			// br0's entry for its vxlan0 port. Learned ones are neither
			// permanent (local) nor static (added by a user).
			learned := e.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) == 0
			if learned && len(e.HardwareAddr) == 6 && e.HardwareAddr[0]&1 == 0 {
				k.Learned = append(k.Learned, e.HardwareAddr)
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
			k.Neigh = append(k.Neigh, KernelNeigh{
				NeighEntry: NeighEntry{IP: ip.Unmap(), MAC: e.HardwareAddr},
				Permanent:  e.State&netlink.NUD_PERMANENT != 0,
			})
		}
	}
	return k, nil
}
