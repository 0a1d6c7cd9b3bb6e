package ipam

import (
	"crypto/rand"
	"errors"
	"iter"
	"net/netip"
	"slices"
	"sync"
)

// Allocator holds the subnets of local-scope networks, keyed by network ID,
// and gives out addresses from them. Subnets of different networks never
// overlap. It is safe for concurrent use; one mutex guards everything.
//
// It keeps state in memory only. At daemon start the engine rebuilds it from
// its own store with Restore (the persisted IPAM configs of each network and
// the addresses of its endpoints), or with Load if it persisted Subnet values
// (see Subnets and Subnet's JSON form).
type Allocator struct {
	mu   sync.Mutex
	nets map[string][]*Subnet
	gid  [5]byte // global ID of the default IPv6 ULA pool
	// pools4 and pools6 replace the default pools when set
	// (--default-address-pool).
	pools4, pools6 []Pool
}

// SetDefaultPools replaces the default pools of a family by the given
// pools of that family (the daemon's --default-address-pool): IPv4 pools
// replace Docker's 172.17-31/192.168 pools, IPv6 pools the ULA /48.
func (a *Allocator) SetDefaultPools(pools []Pool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pools4, a.pools6 = nil, nil
	for _, p := range pools {
		if p.Base.Addr().Is4() {
			a.pools4 = append(a.pools4, p)
		} else {
			a.pools6 = append(a.pools6, p)
		}
	}
}

// NewAllocator returns an empty Allocator with a random ULA global ID for
// its default IPv6 pool.
func NewAllocator() *Allocator {
	a := &Allocator{nets: make(map[string][]*Subnet)}
	_, _ = rand.Read(a.gid[:])
	return a
}

// SetULA sets the global ID of the default IPv6 pool (the daemon keeps one
// per host so default IPv6 subnets stay in one /48 across restarts).
func (a *Allocator) SetULA(gid [5]byte) {
	a.mu.Lock()
	a.gid = gid
	a.mu.Unlock()
}

// ula yields the default IPv6 /64s. Caller holds mu.
func (a *Allocator) ula() iter.Seq[netip.Prefix] { return ULAPools(a.gid) }

// owned is a held subnet and the network holding it, for overlap messages.
type owned struct {
	prefix netip.Prefix
	netID  string
}

// usedLocked lists every held subnet. Caller holds mu.
func (a *Allocator) usedLocked() []owned {
	var out []owned
	for id, subs := range a.nets {
		for _, s := range subs {
			out = append(out, owned{s.Prefix(), id})
		}
	}
	return out
}

func checkOverlap(p netip.Prefix, used []owned) error {
	for _, u := range used {
		if p.Overlaps(u.prefix) {
			if u.netID == "" {
				return detailf(ErrPoolOverlap, "%s overlaps %s of the same request", p, u.prefix)
			}
			return detailf(ErrPoolOverlap, "%s overlaps %s of network %s", p, u.prefix, u.netID)
		}
	}
	return nil
}

// RequestPool reserves the subnets of a new network and returns their
// effective configs (gateway filled in), in the order asked. An empty cfgs
// asks for one default pool, as does a Config with a zero Subnet (which must
// then have no ip-range, gateway or aux addresses).
//
// Given subnets must not overlap each other or any held subnet
// (ErrPoolOverlap). Default pools are taken from DefaultLocalPools, skipping
// held subnets, the given subnets of this request and every prefix in
// hostRoutes (ErrNoAvailablePool when none is left). On error nothing is
// reserved. A network ID that already holds pools is ErrInvalid.
func (a *Allocator) RequestPool(netID string, cfgs []Config, hostRoutes []netip.Prefix) ([]Config, error) {
	if netID == "" {
		return nil, errorf(ErrInvalid, "ipam: request pool: empty network ID")
	}
	if len(cfgs) == 0 {
		cfgs = []Config{{}}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.nets[netID]; ok {
		return nil, errorf(ErrInvalid, "ipam: request pool: network %s already holds pools", netID)
	}
	used := a.usedLocked()
	subs := make([]*Subnet, len(cfgs))
	// Given subnets first, so default pools avoid them whatever the order.
	for i, c := range cfgs {
		if !c.Subnet.IsValid() || c.Subnet == DefaultIPv6Pool {
			if c.IPRange.IsValid() || c.Gateway.IsValid() || len(c.AuxAddress) > 0 {
				return nil, errorf(ErrInvalid, "ipam: ip-range, gateway and aux-address need a subnet")
			}
			continue
		}
		s, err := NewSubnet(c)
		if err != nil {
			return nil, err
		}
		if err := checkOverlap(s.Prefix(), used); err != nil {
			return nil, err
		}
		used = append(used, owned{prefix: s.Prefix()})
		subs[i] = s
	}
	for i := range cfgs {
		if subs[i] != nil {
			continue
		}
		avoid := slices.Clone(hostRoutes)
		for _, u := range used {
			avoid = append(avoid, u.prefix)
		}
		pools := DefaultLocalPools()
		if a.pools4 != nil {
			pools = poolsSeq(a.pools4)
		}
		if cfgs[i].Subnet == DefaultIPv6Pool {
			pools = a.ula()
			if a.pools6 != nil {
				pools = poolsSeq(a.pools6)
			}
		}
		p, err := PickPool(pools, nil, avoid)
		if err != nil {
			return nil, err
		}
		s, err := NewSubnet(Config{Subnet: p, Auto: true})
		if err != nil {
			return nil, err
		}
		used = append(used, owned{prefix: p})
		subs[i] = s
	}
	a.nets[netID] = subs
	out := make([]Config, len(subs))
	for i, s := range subs {
		out[i] = s.Config()
	}
	return out, nil
}

// ReleasePool forgets the network's subnets and addresses. Releasing an
// unknown network is harmless.
func (a *Allocator) ReleasePool(netID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.nets, netID)
}

// AllocateAddress gives out an address of the network, returned with its
// subnet's prefix length (e.g. 172.18.0.2/16). A valid static address goes to
// the subnet containing it (ErrInvalid if none does); otherwise the subnets
// are tried in order (IPv4 ones; AllocateAddress6 for IPv6). See Subnet.Allocate for the rules. An unknown network is
// ErrNotFound.
func (a *Allocator) AllocateAddress(netID string, static netip.Addr) (netip.Prefix, error) {
	return a.allocate(netID, static, false)
}

// AllocateAddress6 is AllocateAddress for the network's IPv6 subnets.
func (a *Allocator) AllocateAddress6(netID string, static netip.Addr) (netip.Prefix, error) {
	if static.IsValid() && !static.Is6() {
		return netip.Prefix{}, errorf(ErrInvalid, "invalid IPv6 address %s", static)
	}
	return a.allocate(netID, static, true)
}

func (a *Allocator) allocate(netID string, static netip.Addr, v6 bool) (netip.Prefix, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	subs, ok := a.nets[netID]
	if !ok {
		return netip.Prefix{}, errorf(ErrNotFound, "ipam: allocate address: network %s not found", netID)
	}
	if static.IsValid() {
		if err := checkAddr(static); err != nil {
			return netip.Prefix{}, err
		}
		for _, s := range subs {
			if s.Contains(static) {
				ip, err := s.Allocate(static)
				if err != nil {
					return netip.Prefix{}, err
				}
				return netip.PrefixFrom(ip, s.Prefix().Bits()), nil
			}
		}
		return netip.Prefix{}, errorf(ErrInvalid, "no configured subnet contains IP address %s", static)
	}
	var last error = detailf(ErrNoAvailableAddress, "network %s has no %s subnet", netID, map[bool]string{false: "IPv4", true: "IPv6"}[v6])
	for _, s := range subs {
		if s.IPv6() != v6 {
			continue
		}
		ip, err := s.Allocate(netip.Addr{})
		if err == nil {
			return netip.PrefixFrom(ip, s.Prefix().Bits()), nil
		}
		if !errors.Is(err, ErrNoAvailableAddress) {
			return netip.Prefix{}, err
		}
		last = err
	}
	return netip.Prefix{}, last
}

// ReleaseAddress frees addr in the network. Releasing a free address is
// harmless; an unknown network is ErrNotFound; an address in none of its
// subnets is ErrInvalid.
func (a *Allocator) ReleaseAddress(netID string, addr netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	subs, ok := a.nets[netID]
	if !ok {
		return errorf(ErrNotFound, "ipam: release address %s: network %s not found", addr, netID)
	}
	for _, s := range subs {
		if s.Contains(addr) {
			return s.Release(addr)
		}
	}
	return errorf(ErrInvalid, "ipam: release address %s: no subnet of network %s contains it", addr, netID)
}

// Restore re-creates a network's state at daemon start from what the engine
// persisted: the effective configs RequestPool returned (Subnet set) and the
// addresses of the network's endpoints. The serial cursor is set to the
// highest restored address of each subnet's dynamic range, so new addresses
// follow the existing ones. It fails, reserving nothing, if a subnet is
// invalid or overlaps a held one, an address is outside every subnet or
// appears twice, or the network already holds pools.
func (a *Allocator) Restore(netID string, cfgs []Config, inUse []netip.Addr) error {
	subs := make([]*Subnet, 0, len(cfgs))
	for _, c := range cfgs {
		s, err := NewSubnet(c)
		if err != nil {
			return err
		}
		subs = append(subs, s)
	}
	for _, ip := range inUse {
		i := slices.IndexFunc(subs, func(s *Subnet) bool { return s.Contains(ip) })
		if i < 0 {
			return errorf(ErrInvalid, "ipam: restore network %s: no configured subnet contains IP address %s", netID, ip)
		}
		s := subs[i]
		if _, err := s.Allocate(ip); err != nil {
			return err
		}
		if v := s.u32(ip); !s.rempty && v >= s.rlo && v <= s.rhi && (!s.hasCur || v > s.cursor) {
			s.cursor, s.hasCur = v, true
		}
	}
	return a.Load(netID, subs)
}

// Load installs Subnet values (for example decoded from JSON) as the
// network's state. The Allocator keeps copies. It fails, reserving nothing, if
// the network already holds pools or a subnet overlaps a held one or another
// of subnets.
func (a *Allocator) Load(netID string, subnets []*Subnet) error {
	if netID == "" {
		return errorf(ErrInvalid, "ipam: load: empty network ID")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.nets[netID]; ok {
		return errorf(ErrInvalid, "ipam: load: network %s already holds pools", netID)
	}
	used := a.usedLocked()
	subs := make([]*Subnet, 0, len(subnets))
	for _, s := range subnets {
		if err := checkOverlap(s.Prefix(), used); err != nil {
			return err
		}
		used = append(used, owned{prefix: s.Prefix()})
		subs = append(subs, s.Clone())
	}
	a.nets[netID] = subs
	return nil
}

// Subnets returns copies of the network's subnets, or nil and false if it is
// unknown.
func (a *Allocator) Subnets(netID string) ([]*Subnet, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	subs, ok := a.nets[netID]
	if !ok {
		return nil, false
	}
	out := make([]*Subnet, len(subs))
	for i, s := range subs {
		out[i] = s.Clone()
	}
	return out, true
}
