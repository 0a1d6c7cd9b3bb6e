package ipam

import (
	"maps"
	"net/netip"

	"github.com/vxnet/vxnet/internal/model"
)

// Config is the user's request for one subnet of a network: Subnet (zero
// means "pick a default pool", which only the Allocator does), IPRange (limits
// dynamic allocation), Gateway (zero means the first usable address) and
// AuxAddress (names to addresses that are reserved, never given out). It is
// the model's type, so networks persist exactly what IPAM accepted.
type Config = model.IPAMConfig

// MaxPrefixBits is the shortest prefix length accepted for a subnet (/8).
const MaxPrefixBits = 8

// Subnet is the allocation state of one subnet: its validated configuration,
// the addresses given out, and the serial cursor (the last address handed out
// dynamically). It is a plain value with no locks: the Allocator guards its
// own Subnets, and a store may unmarshal one, change it and marshal it back.
//
// Addresses never handed out: the network and broadcast addresses (except in
// a /31 or /32, RFC 3021), the gateway and the aux addresses. Dynamic
// allocation takes the next free address of the ip-range (or of the subnet)
// after the cursor, wrapping at the end, so a released address is not handed
// out again at once.
type Subnet struct {
	cfg      Config
	first    uint32 // first host address of the subnet
	last     uint32 // last host address of the subnet
	rlo, rhi uint32 // dynamic range: ip-range ∩ [first, last]
	rempty   bool   // dynamic range is empty
	reserved spanSet
	used     spanSet
	cursor   uint32
	hasCur   bool
	// hi96 is set for an IPv6 subnet: the upper 96 bits of its first
	// address. Addresses are then kept as their low 32 bits, so only the
	// first 2^32 addresses of a larger IPv6 subnet (a /64) are handed out.
	hi96 netip.Addr
}

// u32 maps an address of the subnet to the integer the spans hold.
func (s *Subnet) u32(a netip.Addr) uint32 {
	if s.hi96.IsValid() {
		b := a.As16()
		return uint32(b[12])<<24 | uint32(b[13])<<16 | uint32(b[14])<<8 | uint32(b[15])
	}
	return toU32(a)
}

// addr is the inverse of u32.
func (s *Subnet) addr(v uint32) netip.Addr {
	if s.hi96.IsValid() {
		b := s.hi96.As16()
		b[12], b[13], b[14], b[15] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		return netip.AddrFrom16(b)
	}
	return fromU32(v)
}

// family reports whether a is of the subnet's family and, for IPv6, in the
// part of the subnet vxnet hands out.
func (s *Subnet) family(a netip.Addr) bool {
	if s.hi96.IsValid() {
		return a.Is6() && !a.Is4In6() && netip.PrefixFrom(s.hi96, 96).Contains(a)
	}
	return a.Is4()
}

// IPv6 reports whether the subnet is an IPv6 one.
func (s *Subnet) IPv6() bool { return s.hi96.IsValid() }

// NewSubnet validates cfg and returns an empty Subnet for it. cfg.Subnet must
// be set. Errors wrap ErrInvalid and print Docker's wording, for example
// "no matching subnet for gateway 10.2.0.1".
func NewSubnet(cfg Config) (*Subnet, error) {
	p := cfg.Subnet
	if !p.IsValid() {
		return nil, errorf(ErrInvalid, "ipam: a subnet is required")
	}
	if err := checkPrefix(p, "subnet"); err != nil {
		return nil, err
	}
	if p.Bits() < MaxPrefixBits {
		return nil, errorf(ErrInvalid, "invalid subnet %s: too large, the largest allowed is /%d", p, MaxPrefixBits)
	}
	s := &Subnet{}
	if p.Addr().Is6() {
		// No broadcast in IPv6; the subnet-router anycast address (the
		// first) is not handed out, as in Docker.
		s.hi96 = netip.PrefixFrom(p.Addr(), 96).Masked().Addr()
		base := s.u32(p.Addr())
		size := uint64(1) << 32
		if p.Bits() > 96 {
			size = uint64(1) << (128 - p.Bits())
		}
		s.first, s.last = base, uint32(uint64(base)+size-1)
		if size > 1 {
			s.first++
		}
	} else {
		base := toU32(p.Addr())
		size := uint64(1) << (32 - p.Bits())
		bcast := uint32(uint64(base) + size - 1)
		s.first, s.last = base, bcast
		if p.Bits() < 31 {
			s.first, s.last = base+1, bcast-1
		}
	}

	s.rlo, s.rhi = s.first, s.last
	if r := cfg.IPRange; r.IsValid() {
		if err := checkPrefix(r, "ip-range"); err != nil {
			return nil, err
		}
		if r.Bits() < p.Bits() || !p.Contains(r.Addr()) {
			return nil, errorf(ErrInvalid, "no matching subnet for range %s", r)
		}
		if s.IPv6() && r.Bits() < 96 {
			return nil, errorf(ErrInvalid, "invalid ip-range %s: vxnet supports IPv6 ranges of /96 or smaller", r)
		}
		if s.IPv6() && !s.family(r.Addr()) {
			return nil, errorf(ErrInvalid, "invalid ip-range %s: vxnet hands out only the first 2^32 addresses of an IPv6 subnet", r)
		}
		rb := s.u32(r.Addr())
		re := uint32(uint64(rb) + uint64(1)<<(uint(r.Addr().BitLen())-uint(r.Bits())) - 1)
		s.rlo, s.rhi = max(rb, s.first), min(re, s.last)
	}
	s.rempty = s.rlo > s.rhi

	gw := cfg.Gateway
	if gw.IsValid() {
		if gw.Is6() != p.Addr().Is6() || gw.Is4In6() {
			return nil, errorf(ErrInvalid, "no matching subnet for gateway %s", gw)
		}
		if !p.Contains(gw) {
			return nil, errorf(ErrInvalid, "no matching subnet for gateway %s", gw)
		}
		if !s.family(gw) {
			return nil, errorf(ErrInvalid, "invalid gateway %s: vxnet hands out only the first 2^32 addresses of an IPv6 subnet", gw)
		}
		if !s.isHost(gw) {
			return nil, errorf(ErrInvalid, "invalid gateway %s: it is the network or broadcast address of %s", gw, p)
		}
	} else {
		gw = s.addr(s.first)
	}
	s.reserved.add(s.u32(gw))

	aux := make(map[string]netip.Addr, len(cfg.AuxAddress))
	for name, a := range cfg.AuxAddress {
		if !a.IsValid() || a.Is6() != p.Addr().Is6() || a.Is4In6() {
			return nil, errorf(ErrInvalid, "invalid aux-address %s=%s: not an address of %s", name, a, p)
		}
		if !p.Contains(a) {
			return nil, errorf(ErrInvalid, "no matching subnet for aux-address %s", a)
		}
		if s.family(a) && s.isHost(a) {
			s.reserved.add(s.u32(a))
		}
		aux[name] = a
	}
	if len(aux) == 0 {
		aux = nil
	}
	s.cfg = Config{Subnet: p, IPRange: cfg.IPRange, Gateway: gw, AuxAddress: aux, Auto: cfg.Auto}
	return s, nil
}

// isHost reports whether a (inside the subnet) may be given to a host: not
// the network or broadcast address.
func (s *Subnet) isHost(a netip.Addr) bool {
	if !s.family(a) {
		return false
	}
	v := s.u32(a)
	return v >= s.first && v <= s.last
}

// Config returns the effective configuration: Gateway is filled in.
func (s *Subnet) Config() Config {
	c := s.cfg
	c.AuxAddress = maps.Clone(c.AuxAddress)
	return c
}

// Prefix returns the subnet.
func (s *Subnet) Prefix() netip.Prefix { return s.cfg.Subnet }

// Gateway returns the gateway address (given or defaulted).
func (s *Subnet) Gateway() netip.Addr { return s.cfg.Gateway }

// Contains reports whether a lies in the subnet.
func (s *Subnet) Contains(a netip.Addr) bool { return s.cfg.Subnet.Contains(a) }

// Last returns the last address handed out dynamically (the serial cursor),
// or the zero Addr if none was.
func (s *Subnet) Last() netip.Addr {
	if !s.hasCur {
		return netip.Addr{}
	}
	return s.addr(s.cursor)
}

// InUse returns the allocated addresses in ascending order. The gateway and
// aux addresses are reserved, not allocated, and are not listed.
func (s *Subnet) InUse() []netip.Addr {
	out := make([]netip.Addr, 0, s.used.count())
	for _, sp := range s.used {
		for v := uint64(sp.lo); v <= uint64(sp.hi); v++ {
			out = append(out, s.addr(uint32(v)))
		}
	}
	return out
}

// Allocated reports whether a is allocated (gateway and aux addresses are
// reserved, not allocated).
func (s *Subnet) Allocated(a netip.Addr) bool {
	return s.family(a) && s.Contains(a) && s.used.contains(s.u32(a))
}

// Clone returns an independent copy.
func (s *Subnet) Clone() *Subnet {
	c := *s
	c.cfg.AuxAddress = maps.Clone(s.cfg.AuxAddress)
	c.reserved = s.reserved.clone()
	c.used = s.used.clone()
	return &c
}

// Allocate gives out an address. If static is valid, exactly that address is
// taken: it must lie in the subnet (anywhere, the ip-range does not apply),
// not be the network or broadcast address (ErrInvalid), and be free
// (ErrAddressInUse). Otherwise the next free address of the dynamic range
// after the cursor is taken, wrapping at its end (ErrNoAvailableAddress when
// none is free). Static allocation leaves the cursor alone.
func (s *Subnet) Allocate(static netip.Addr) (netip.Addr, error) {
	if static.IsValid() {
		if err := checkAddr(static); err != nil {
			return netip.Addr{}, err
		}
		if !s.Contains(static) {
			return netip.Addr{}, errorf(ErrInvalid, "no configured subnet contains IP address %s", static)
		}
		if s.IPv6() && !s.family(static) {
			return netip.Addr{}, errorf(ErrInvalid, "invalid IP address %s: vxnet hands out only the first 2^32 addresses of an IPv6 subnet", static)
		}
		if !s.isHost(static) {
			return netip.Addr{}, errorf(ErrInvalid, "invalid IP address %s: it is the network or broadcast address of %s", static, s.cfg.Subnet)
		}
		v := s.u32(static)
		if s.reserved.contains(v) || s.used.contains(v) {
			return netip.Addr{}, detailf(ErrAddressInUse, "%s", static)
		}
		s.used.add(v)
		return static, nil
	}
	if s.rempty {
		return netip.Addr{}, detailf(ErrNoAvailableAddress, "%s", s.cfg.Subnet)
	}
	start := s.rlo
	if s.hasCur && s.cursor >= s.rlo && s.cursor < s.rhi {
		start = s.cursor + 1
	}
	v, ok := s.nextFree(start, s.rhi)
	if !ok && start > s.rlo {
		v, ok = s.nextFree(s.rlo, start-1)
	}
	if !ok {
		return netip.Addr{}, detailf(ErrNoAvailableAddress, "%s", s.cfg.Subnet)
	}
	s.used.add(v)
	s.cursor, s.hasCur = v, true
	return s.addr(v), nil
}

// nextFree returns the lowest address in [lo, hi] neither used nor reserved.
// Each step skips a whole span, so it runs at most len(used)+len(reserved)+1
// times.
func (s *Subnet) nextFree(lo, hi uint32) (uint32, bool) {
	c := uint64(lo)
	for c <= uint64(hi) {
		v := uint32(c)
		if i := s.used.index(v); i >= 0 {
			c = uint64(s.used[i].hi) + 1
			continue
		}
		if i := s.reserved.index(v); i >= 0 {
			c = uint64(s.reserved[i].hi) + 1
			continue
		}
		return v, true
	}
	return 0, false
}

// Release frees a. Releasing a free, gateway or aux address is harmless.
// An address outside the subnet is an error wrapping ErrInvalid.
func (s *Subnet) Release(a netip.Addr) error {
	if !s.Contains(a) {
		return errorf(ErrInvalid, "ipam: release %s: not in subnet %s", a, s.cfg.Subnet)
	}
	if !s.family(a) {
		return nil
	}
	s.used.remove(s.u32(a))
	return nil
}

// Usable reports whether a may be handed out: inside the subnet, not its
// network or broadcast address, not the gateway or an aux address, and, if
// dynamic, inside the ip-range. It ignores what is allocated.
func (s *Subnet) Usable(a netip.Addr, dynamic bool) bool {
	if !s.family(a) || !s.Contains(a) {
		return false
	}
	v := s.u32(a)
	if v < s.first || v > s.last || s.reserved.contains(v) {
		return false
	}
	return !dynamic || (!s.rempty && v >= s.rlo && v <= s.rhi)
}
