package ipam

import (
	"net/netip"
	"strings"
)

// ParsePrefix parses an IPv4 subnet or ip-range given on the CLI or API, such
// as "10.1.2.0/24". Like Docker it rejects a prefix with host bits set
// ("10.1.2.3/24"), naming the canonical form. IPv4 or IPv6. Errors wrap
// ErrInvalid.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, errorf(ErrInvalid, "invalid subnet %q: %v", s, err)
	}
	if err := checkPrefix(p, "subnet"); err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
}

// ParseAddr parses an IPv4 or IPv6 address (gateway, aux-address, static --ip).
// Errors wrap ErrInvalid.
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, errorf(ErrInvalid, "invalid IP address %q: %v", s, err)
	}
	if err := checkAddr(a); err != nil {
		return netip.Addr{}, err
	}
	return a, nil
}

// checkPrefix validates an already parsed prefix: canonical, not IPv4-mapped. what names
// it in errors ("subnet", "ip-range").
func checkPrefix(p netip.Prefix, what string) error {
	if !p.IsValid() {
		return errorf(ErrInvalid, "invalid %s %s", what, p)
	}
	if p.Addr().Is4In6() {
		return errorf(ErrInvalid, "invalid %s %s: an IPv4-mapped IPv6 prefix", what, p)
	}
	if m := p.Masked(); m != p {
		return errorf(ErrInvalid, "invalid %s %s: it should be %s", what, p, m)
	}
	return nil
}

func checkAddr(a netip.Addr) error {
	if !a.IsValid() {
		return errorf(ErrInvalid, "invalid IP address %s", a)
	}
	if a.Is4In6() || a.Zone() != "" {
		return errorf(ErrInvalid, "invalid IP address %s", a)
	}
	return nil
}
