package ipam

import (
	"iter"
	"net/netip"
	"strconv"
	"strings"
)

// poolSpec is a base prefix split into subnets of Size bits.
type poolSpec struct {
	Base netip.Prefix
	Size int
}

// localPoolSpecs returns Docker's default address pools for local networks,
// in order.
func localPoolSpecs() []poolSpec {
	return []poolSpec{
		{netip.MustParsePrefix("172.17.0.0/16"), 16},
		{netip.MustParsePrefix("172.18.0.0/16"), 16},
		{netip.MustParsePrefix("172.19.0.0/16"), 16},
		{netip.MustParsePrefix("172.20.0.0/14"), 16},
		{netip.MustParsePrefix("172.24.0.0/14"), 16},
		{netip.MustParsePrefix("172.28.0.0/14"), 16},
		{netip.MustParsePrefix("192.168.0.0/16"), 20},
	}
}

// DefaultLocalPools yields Docker's default local pools in order:
// 172.17.0.0/16 to 172.31.0.0/16, then 192.168.0.0/20 to 192.168.240.0/20.
func DefaultLocalPools() iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		for _, s := range localPoolSpecs() {
			for p := range split(s) {
				if !yield(p) {
					return
				}
			}
		}
	}
}

// DefaultGlobalPools yields the default pools for global (overlay) networks:
// 10.0.0.0/8 split into /24s, in order, computed lazily.
func DefaultGlobalPools() iter.Seq[netip.Prefix] {
	return split(poolSpec{netip.MustParsePrefix("10.0.0.0/8"), 24})
}

// split yields the subnets of size s.Size bits covering s.Base, in order.
func split(s poolSpec) iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		base := toU32(s.Base.Addr())
		n := uint64(1) << (s.Size - s.Base.Bits())
		step := uint64(1) << (32 - s.Size)
		for i := range n {
			p := netip.PrefixFrom(fromU32(uint32(uint64(base)+i*step)), s.Size)
			if !yield(p) {
				return
			}
		}
	}
}

// PickPool returns the first candidate that overlaps neither a used subnet
// nor a prefix to avoid (typically the host's routes, see HostRoutes). It
// returns an error wrapping ErrNoAvailablePool when every candidate is taken.
func PickPool(candidates iter.Seq[netip.Prefix], used, avoid []netip.Prefix) (netip.Prefix, error) {
next:
	for c := range candidates {
		for _, u := range used {
			if c.Overlaps(u) {
				continue next
			}
		}
		for _, r := range avoid {
			if c.Overlaps(r) {
				continue next
			}
		}
		return c, nil
	}
	return netip.Prefix{}, ErrNoAvailablePool
}

func toU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromU32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// DefaultIPv6Pool, as the Subnet of a Config given to RequestPool, asks for
// an IPv6 /64 from the Allocator's default ULA pool (see ULAPools).
var DefaultIPv6Pool = netip.PrefixFrom(netip.IPv6Unspecified(), 0)

// ULAPools yields the /64s of the unique local /48 fdGG:GGGG:GGGG::/48
// (RFC 4193) with the 40-bit global ID gid, in order. As Docker's default
// IPv6 pool, it gives each host its own random ULA prefix.
func ULAPools(gid [5]byte) iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		b := [16]byte{0xfd, gid[0], gid[1], gid[2], gid[3], gid[4]}
		for i := range 1 << 16 {
			b[6], b[7] = byte(i>>8), byte(i)
			if !yield(netip.PrefixFrom(netip.AddrFrom16(b), 64)) {
				return
			}
		}
	}
}

// Pool is one daemon --default-address-pool: Base cut into subnets of Size
// bits, handed out in order to networks created without --subnet.
type Pool struct {
	Base netip.Prefix
	Size int
}

// ParsePool parses Docker's --default-address-pool value,
// "base=10.10.0.0/16,size=24" (IPv4 or IPv6). At most 2^24 subnets per pool.
func ParsePool(s string) (Pool, error) {
	var p Pool
	var haveBase, haveSize bool
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch strings.ToLower(k) {
		case "base":
			b, err := ParsePrefix(v)
			if err != nil {
				return Pool{}, errorf(ErrInvalid, "invalid --default-address-pool %q: %v", s, err)
			}
			p.Base, haveBase = b, true
		case "size":
			n, err := strconv.Atoi(v)
			if err != nil {
				return Pool{}, errorf(ErrInvalid, "invalid --default-address-pool %q: size %q is not a number", s, v)
			}
			p.Size, haveSize = n, true
		default:
			return Pool{}, errorf(ErrInvalid, "invalid --default-address-pool %q: unknown field %q (base=PREFIX,size=BITS)", s, k)
		}
	}
	if !haveBase || !haveSize {
		return Pool{}, errorf(ErrInvalid, "invalid --default-address-pool %q: want base=PREFIX,size=BITS", s)
	}
	if p.Size < p.Base.Bits() || p.Size > p.Base.Addr().BitLen() || p.Size < MaxPrefixBits {
		return Pool{}, errorf(ErrInvalid, "invalid --default-address-pool %q: size %d must be between the base's /%d and /%d", s, p.Size, p.Base.Bits(), p.Base.Addr().BitLen())
	}
	if p.Size-p.Base.Bits() > 24 {
		return Pool{}, errorf(ErrInvalid, "invalid --default-address-pool %q: more than 2^24 subnets", s)
	}
	return p, nil
}

// Subnets yields the pool's subnets in order.
func (p Pool) Subnets() iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		n := uint64(1) << (p.Size - p.Base.Bits())
		b := p.Base.Masked().Addr().As16()
		if p.Base.Addr().Is4() {
			b = netip.AddrFrom4(p.Base.Masked().Addr().As4()).As16()
		}
		shift := 128 - p.Size
		if p.Base.Addr().Is4() {
			shift = 32 - p.Size
		}
		for i := range n {
			c := b
			// add i << shift to the 128-bit address, byte by byte
			carry := uint64(0)
			for k := 15; k >= 0; k-- {
				bit := (15 - k) * 8
				var add uint64
				if bit >= shift && bit-shift < 64 {
					add = (i >> uint(bit-shift)) & 0xff
				} else if bit < shift && shift-bit < 8 {
					add = (i << uint(shift-bit)) & 0xff
				}
				sum := uint64(c[k]) + add + carry
				c[k], carry = byte(sum), sum>>8
			}
			a := netip.AddrFrom16(c)
			if p.Base.Addr().Is4() {
				a = a.Unmap()
			}
			if !yield(netip.PrefixFrom(a, p.Size)) {
				return
			}
		}
	}
}

// poolsSeq chains the subnets of several pools.
func poolsSeq(pools []Pool) iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		for _, p := range pools {
			for s := range p.Subnets() {
				if !yield(s) {
					return
				}
			}
		}
	}
}
