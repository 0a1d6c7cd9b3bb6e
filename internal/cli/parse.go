package cli

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/moby/moby/api/types/network"
)

// flagError is docker's message for a bad flag value.
func flagError(flag, value string, err error) error {
	return fmt.Errorf("invalid argument %q for %q flag: %v", value, flag, err)
}

// parseKV splits K=V values of a repeatable flag. With keyOnly, "K" alone
// means an empty value (docker's --label); otherwise "=" is required.
func parseKV(flag string, vals []string, keyOnly bool) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(vals))
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if strings.TrimSpace(k) == "" {
			return nil, flagError(flag, v, fmt.Errorf("expected KEY=VALUE, the key is empty"))
		}
		if !ok && !keyOnly {
			return nil, flagError(flag, v, fmt.Errorf("expected KEY=VALUE"))
		}
		out[k] = val
	}
	return out, nil
}

// parseEnv handles -e: K=V as is, a bare K takes the value from the CLI's
// own environment (and is dropped when unset), as docker does.
func parseEnv(vals []string) ([]string, error) {
	var out []string
	for _, v := range vals {
		k, _, ok := strings.Cut(v, "=")
		if k == "" || strings.ContainsAny(k, " \t") {
			return nil, flagError("--env", v, fmt.Errorf("invalid environment variable name"))
		}
		if ok {
			out = append(out, v)
			continue
		}
		if val, set := os.LookupEnv(k); set {
			out = append(out, k+"="+val)
		}
	}
	return out, nil
}

func parseIPv4(flag, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, flagError(flag, s, fmt.Errorf("not an IP address"))
	}
	if !a.Is4() {
		return netip.Addr{}, flagError(flag, s, fmt.Errorf("vxnet supports only IPv4 addresses"))
	}
	return a, nil
}

// parseIP parses an IPv4 or IPv6 address.
func parseIP(flag, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, flagError(flag, s, fmt.Errorf("not an IP address"))
	}
	return a.Unmap(), nil
}

// parseIPv6 parses an IPv6 address (--ip6).
func parseIPv6(flag, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, flagError(flag, s, fmt.Errorf("not an IP address"))
	}
	if !a.Is6() || a.Is4In6() {
		return netip.Addr{}, flagError(flag, s, fmt.Errorf("not an IPv6 address"))
	}
	return a, nil
}

func parsePrefix(flag, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, flagError(flag, s, fmt.Errorf("invalid CIDR address: %s", s))
	}
	return p, nil
}

// contains reports whether the subnet holds the prefix (range) entirely.
func contains(subnet, p netip.Prefix) bool {
	return p.Bits() >= subnet.Bits() && subnet.Masked().Contains(p.Addr())
}

// ipamConfig pairs --subnet, --ip-range, --gateway and --aux-address values
// the way docker does: each range, gateway and auxiliary address belongs to
// the subnet that contains it, at most one range and one gateway per subnet.
// Everything is checked before any request is sent.
func ipamConfig(subnets, ranges, gateways, aux []string) ([]network.IPAMConfig, error) {
	if len(subnets) < len(ranges) || len(subnets) < len(gateways) {
		return nil, fmt.Errorf("every ip-range or gateway must have a corresponding subnet")
	}
	cfgs := make([]network.IPAMConfig, 0, len(subnets))
	for _, s := range subnets {
		p, err := parsePrefix("--subnet", s)
		if err != nil {
			return nil, err
		}
		for _, c := range cfgs {
			if c.Subnet.Overlaps(p.Masked()) {
				return nil, fmt.Errorf("multiple overlapping subnet configuration is not supported")
			}
		}
		cfgs = append(cfgs, network.IPAMConfig{Subnet: p})
	}
	for _, r := range ranges {
		p, err := parsePrefix("--ip-range", r)
		if err != nil {
			return nil, err
		}
		i := subnetFor(cfgs, func(sub netip.Prefix) bool { return contains(sub, p) })
		if i < 0 {
			return nil, fmt.Errorf("no matching subnet for range %s", r)
		}
		if cfgs[i].IPRange.IsValid() {
			return nil, fmt.Errorf("cannot configure multiple ranges (%s, %s) on the same subnet (%s)", cfgs[i].IPRange, r, cfgs[i].Subnet)
		}
		cfgs[i].IPRange = p
	}
	for _, g := range gateways {
		a, err := parseIP("--gateway", g)
		if err != nil {
			return nil, err
		}
		i := subnetFor(cfgs, func(sub netip.Prefix) bool { return sub.Masked().Contains(a) })
		if i < 0 {
			return nil, fmt.Errorf("no matching subnet for gateway %s", g)
		}
		if cfgs[i].Gateway.IsValid() {
			return nil, fmt.Errorf("cannot configure multiple gateways (%s, %s) for the same subnet (%s)", cfgs[i].Gateway, g, cfgs[i].Subnet)
		}
		cfgs[i].Gateway = a
	}
	auxMap, err := parseKV("--aux-address", aux, false)
	if err != nil {
		return nil, err
	}
	for name, ip := range auxMap {
		a, err := parseIP("--aux-address", ip)
		if err != nil {
			return nil, err
		}
		i := subnetFor(cfgs, func(sub netip.Prefix) bool { return sub.Masked().Contains(a) })
		if i < 0 {
			return nil, fmt.Errorf("no matching subnet for aux-address %s", ip)
		}
		if cfgs[i].AuxAddress == nil {
			cfgs[i].AuxAddress = map[string]netip.Addr{}
		}
		cfgs[i].AuxAddress[name] = a
	}
	return cfgs, nil
}

func subnetFor(cfgs []network.IPAMConfig, match func(netip.Prefix) bool) int {
	for i, c := range cfgs {
		if match(c.Subnet) {
			return i
		}
	}
	return -1
}
