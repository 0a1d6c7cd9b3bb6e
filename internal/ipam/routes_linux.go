package ipam

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// HostRoutes returns the IPv4 destinations of the main routing table of the
// calling thread's network namespace, without default routes. RequestPool
// avoids default pools that overlap them.
func HostRoutes() ([]netip.Prefix, error) {
	rs, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("ipam: list host routes: %w", err)
	}
	return routePrefixes(rs), nil
}

// HostRoutesAt is HostRoutes in the namespace of a netlink handle.
func HostRoutesAt(h *netlink.Handle) ([]netip.Prefix, error) {
	rs, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("ipam: list host routes: %w", err)
	}
	return routePrefixes(rs), nil
}

func routePrefixes(rs []netlink.Route) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		ones, bits := r.Dst.Mask.Size()
		ip4 := r.Dst.IP.To4()
		if bits != 32 || ip4 == nil || ones == 0 {
			continue
		}
		a := netip.AddrFrom4([4]byte(ip4))
		out = append(out, netip.PrefixFrom(a, ones).Masked())
	}
	return out
}
