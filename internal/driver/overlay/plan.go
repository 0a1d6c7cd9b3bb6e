package overlay

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"sort"
	"time"
)

// Peer is one remote endpoint of an overlay network as the control plane
// advertises it: its address (and IPv6 address, on a network with IPv6)
// and MAC inside the overlay and the underlay address (VTEP) of the host it
// lives on.
type Peer struct {
	IP     netip.Addr
	IP6    netip.Addr
	MAC    net.HardwareAddr
	VTEP   netip.Addr
	NodeID string
}

// FDBEntry is one forwarding entry on vxlan0: frames for MAC go to VTEP.
// The all-zero MAC is the head-end replication entry for broadcast and
// multicast (one per remote VTEP).
type FDBEntry struct {
	MAC  net.HardwareAddr
	VTEP netip.Addr
}

// NeighEntry is one permanent neighbour entry on vxlan0, used by the VXLAN
// device's ARP/ND proxy to answer for remote endpoints.
type NeighEntry struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

// State is a network's peer programming: what SetPeers wants, or what
// Programmed reads back from the kernel. Entries are sorted.
type State struct {
	FDB   []FDBEntry
	Neigh []NeighEntry
	// ProgrammingSince, on what Programmed returns, says that a
	// programming of the network has been in progress since then: the
	// entries are those the kernel held after the last completed one.
	ProgrammingSince time.Time
}

// clone copies the entry lists (the entries' MACs are never changed).
func (s State) clone() State {
	s.FDB = slices.Clone(s.FDB)
	s.Neigh = slices.Clone(s.Neigh)
	return s
}

// zeroMAC is the destination of the head-end replication entries.
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// desiredState turns a peer list into kernel entries: per remote endpoint
// one FDB entry MAC -> VTEP and one neighbour entry IP -> MAC (two with an
// IPv6 address: the VXLAN device's proxy answers ARP and neighbour
// solicitations from the same table), per remote
// VTEP one all-zero-MAC FDB entry. Peers on localVTEP, and peers with
// invalid fields, are skipped. When two peers claim the same MAC or IP, the
// last one wins (the control plane resolves such conflicts, not us).
func desiredState(localVTEP netip.Addr, peers []Peer) State {
	fdb := map[string]netip.Addr{}   // MAC -> VTEP
	neigh := map[netip.Addr]string{} // IP -> MAC
	macs := map[string]net.HardwareAddr{}
	vteps := map[netip.Addr]bool{}
	for _, p := range peers {
		if !p.VTEP.IsValid() || p.VTEP == localVTEP || len(p.MAC) != 6 || isZero(p.MAC) {
			continue
		}
		k := string(p.MAC)
		fdb[k] = p.VTEP
		macs[k] = p.MAC
		vteps[p.VTEP] = true
		for _, ip := range []netip.Addr{p.IP, p.IP6} {
			if ip.IsValid() && !ip.IsMulticast() {
				neigh[ip.Unmap()] = k
			}
		}
	}
	var s State
	for k, vtep := range fdb {
		s.FDB = append(s.FDB, FDBEntry{MAC: macs[k], VTEP: vtep})
	}
	for vtep := range vteps {
		s.FDB = append(s.FDB, FDBEntry{MAC: zeroMAC, VTEP: vtep})
	}
	for ip, k := range neigh {
		s.Neigh = append(s.Neigh, NeighEntry{IP: ip, MAC: macs[k]})
	}
	s.sort()
	return s
}

func (s *State) sort() {
	sort.Slice(s.FDB, func(i, j int) bool {
		if c := bytes.Compare(s.FDB[i].MAC, s.FDB[j].MAC); c != 0 {
			return c < 0
		}
		return s.FDB[i].VTEP.Less(s.FDB[j].VTEP)
	})
	sort.Slice(s.Neigh, func(i, j int) bool {
		if s.Neigh[i].IP != s.Neigh[j].IP {
			return s.Neigh[i].IP.Less(s.Neigh[j].IP)
		}
		return bytes.Compare(s.Neigh[i].MAC, s.Neigh[j].MAC) < 0
	})
}

// plan is what a reconcile does to the kernel, in this order: replace the
// unicast FDB entries, append the replication entries, replace the
// neighbour entries, then delete the extra neighbour and FDB entries and
// flush what the bridge learned for MACs that are no longer wanted.
type plan struct {
	fdbReplace []FDBEntry
	fdbAppend  []FDBEntry
	neighSet   []NeighEntry
	neighDel   []NeighEntry
	fdbDel     []FDBEntry
	// keepMACs are the unicast MACs that stay; bridge-learned entries for
	// any other MAC on vxlan0 are flushed.
	keepMACs map[string]bool
}

// empty reports whether the plan changes nothing (learned-entry flushing
// aside, which depends on what the bridge holds at apply time).
func (p plan) empty() bool {
	return len(p.fdbReplace)+len(p.fdbAppend)+len(p.neighSet)+len(p.neighDel)+len(p.fdbDel) == 0
}

// diff computes the plan that turns actual into desired.
func diff(desired, actual State) plan {
	p := plan{keepMACs: map[string]bool{}}
	type fdbKey struct {
		mac  string
		vtep netip.Addr
	}
	have := map[fdbKey]bool{}
	for _, e := range actual.FDB {
		have[fdbKey{string(e.MAC), e.VTEP}] = true
	}
	want := map[fdbKey]bool{}
	for _, e := range desired.FDB {
		k := fdbKey{string(e.MAC), e.VTEP}
		want[k] = true
		if !isZero(e.MAC) {
			p.keepMACs[string(e.MAC)] = true
		}
		if have[k] {
			continue
		}
		if isZero(e.MAC) {
			p.fdbAppend = append(p.fdbAppend, e)
		} else {
			p.fdbReplace = append(p.fdbReplace, e)
		}
	}
	for _, e := range actual.FDB {
		if !want[fdbKey{string(e.MAC), e.VTEP}] {
			p.fdbDel = append(p.fdbDel, e)
		}
	}

	haveN := map[netip.Addr]string{}
	for _, e := range actual.Neigh {
		haveN[e.IP] = string(e.MAC)
	}
	wantN := map[netip.Addr]bool{}
	for _, e := range desired.Neigh {
		wantN[e.IP] = true
		if m, ok := haveN[e.IP]; !ok || m != string(e.MAC) {
			p.neighSet = append(p.neighSet, e)
		}
	}
	for _, e := range actual.Neigh {
		if !wantN[e.IP] {
			p.neighDel = append(p.neighDel, e)
		}
	}
	return p
}

func isZero(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}
