// Package dns is vxnet's embedded DNS server, Docker's 127.0.0.11: one
// server per container namespace on user-defined networks, answering the
// names of the containers on the networks that container is on, and
// forwarding everything else to upstream resolvers.
//
// The daemon opens the sockets (UDP and TCP, 127.0.0.11:53) on a thread
// inside each container's network namespace; a socket stays in the
// namespace it was made in, so the daemon serves it from any goroutine.
// Forwarded queries leave from the daemon's own namespace, so host
// resolvers on the host's loopback (systemd-resolved) work.
//
// The engine hands the whole desired state to Set (networks with their
// records, sandboxes with their networks and upstreams); Set swaps an
// immutable index that queries read without a lock and tells a reconcile
// goroutine to open and close sockets. Set never blocks on I/O.
package dns

import (
	"net/netip"
	"sort"
	"strings"

	mdns "github.com/miekg/dns"
)

// Addr is where the embedded server listens inside every namespace.
var Addr = netip.MustParseAddr("127.0.0.11")

// DockerAddr is where the server listens inside the namespaces of Docker
// Engine's containers on vxnet networks. 127.0.0.11 there is Docker's own
// resolver, which forwards the names it does not know to the daemon's
// --dns servers from inside the container's namespace: dockerd runs with
// --dns 169.254.53.53, and the server adds this address to the
// namespace's loopback interface.
var DockerAddr = netip.MustParseAddr("169.254.53.53")

// Record is one endpoint: its names (container name, aliases, short ID)
// and its addresses on one network.
type Record struct {
	Names []string
	Addrs []netip.Addr
}

// Network is one network's records, as a container on it sees them.
type Network struct {
	ID   string
	Name string
	// Internal networks have no way out: a sandbox on internal networks
	// only gets no forwarding (Docker's behaviour).
	Internal bool
	Records  []Record
}

// Sandbox is one container namespace the server answers in.
type Sandbox struct {
	ID        string
	NetnsPath string
	// Addr is where the server listens in the namespace: zero means Addr
	// (127.0.0.11); another address is added to the loopback interface
	// (as a /32) before listening.
	Addr netip.Addr
	// Networks are the IDs of the networks whose names it resolves.
	Networks []string
	// Upstreams are the container's own --dns servers; empty means the
	// server's defaults (the daemon's --dns, else the host's resolvers).
	Upstreams []netip.AddrPort
	// Extra are names only this sandbox resolves (legacy --link aliases
	// on user-defined networks).
	Extra []Record
}

// Config is the whole desired state of the server.
type Config struct {
	Networks  []Network
	Sandboxes []Sandbox
}

// index is the lookup form of a Config; immutable once built.
type index struct {
	nets      map[string]*netIndex
	sandboxes map[string]*sbIndex
}

type netIndex struct {
	name     string
	internal bool
	// names maps a lower-case name (NAME and NAME.NETWORK) to addresses.
	names map[string][]netip.Addr
	// ptr maps an address to its names (NAME.NETWORK).
	ptr map[netip.Addr][]string
}

type sbIndex struct {
	netnsPath string
	addr      netip.Addr
	nets      []*netIndex
	upstreams []netip.AddrPort
	forward   bool
}

func normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

func buildIndex(cfg Config) *index {
	ix := &index{nets: map[string]*netIndex{}, sandboxes: map[string]*sbIndex{}}
	for _, n := range cfg.Networks {
		ix.nets[n.ID] = buildNet(n)
	}
	for _, s := range cfg.Sandboxes {
		si := &sbIndex{netnsPath: s.NetnsPath, addr: s.Addr, upstreams: s.Upstreams}
		if !si.addr.IsValid() {
			si.addr = Addr
		}
		if len(s.Extra) > 0 {
			si.nets = append(si.nets, buildNet(Network{Records: s.Extra, Internal: true}))
		}
		for _, id := range s.Networks {
			if ni, ok := ix.nets[id]; ok {
				si.nets = append(si.nets, ni)
				si.forward = si.forward || !ni.internal
			}
		}
		ix.sandboxes[s.ID] = si
	}
	return ix
}

// buildNet indexes one network's names; a network without a name (a
// sandbox's private names) has no NAME.NETWORK forms and no PTR.
func buildNet(n Network) *netIndex {
	ni := &netIndex{name: n.Name, internal: n.Internal, names: map[string][]netip.Addr{}, ptr: map[netip.Addr][]string{}}
	// NAME.NETWORK only for network names that can end a domain name
	// (Docker accepts network names with spaces).
	qualify := n.Name != "" && !strings.ContainsAny(n.Name, " \t") && strings.Trim(n.Name, ".") == n.Name
	if _, ok := mdns.IsDomainName(n.Name); !ok {
		qualify = false
	}
	suffix := "." + normalize(n.Name)
	for _, r := range n.Records {
		seen := map[string]bool{}
		for _, name := range r.Names {
			k := normalize(name)
			if k == "" || seen[k] {
				continue
			}
			seen[k] = true
			ni.names[k] = appendNew(ni.names[k], r.Addrs...)
			if qualify {
				ni.names[k+suffix] = appendNew(ni.names[k+suffix], r.Addrs...)
			}
		}
		if n.Name != "" && len(r.Names) > 0 && r.Names[0] != "" {
			target := r.Names[0] + "."
			if qualify {
				target = r.Names[0] + "." + n.Name + "."
			}
			for _, a := range r.Addrs {
				ni.ptr[a] = appendNewString(ni.ptr[a], target)
			}
		}
	}
	for _, v := range ni.ptr {
		sort.Strings(v)
	}
	return ni
}

func appendNew(dst []netip.Addr, addrs ...netip.Addr) []netip.Addr {
	for _, a := range addrs {
		found := false
		for _, d := range dst {
			found = found || d == a
		}
		if !found && a.IsValid() {
			dst = append(dst, a)
		}
	}
	return dst
}

func appendNewString(dst []string, s string) []string {
	for _, d := range dst {
		if d == s {
			return dst
		}
	}
	return append(dst, s)
}

// lookup returns the addresses of name on the sandbox's networks and
// whether the name is known there at all (in any address family).
func (s *sbIndex) lookup(name string) ([]netip.Addr, bool) {
	k := normalize(name)
	var out []netip.Addr
	found := false
	for _, n := range s.nets {
		if addrs, ok := n.names[k]; ok {
			found = true
			out = appendNew(out, addrs...)
		}
	}
	return out, found
}

// reverse returns the PTR names of an address on the sandbox's networks.
func (s *sbIndex) reverse(a netip.Addr) []string {
	var out []string
	for _, n := range s.nets {
		for _, name := range n.ptr[a] {
			out = appendNewString(out, name)
		}
	}
	return out
}
