package cluster

// Validation of records read from the store. Every record in etcd was
// written by some member, and any member may be compromised or buggy, so
// what comes back is untrusted input: each decode path checks the record on
// its own (IDs, names, addresses, MAC, that it sits under the key it
// claims), and CheckAdverts checks a network's advertisements against each
// other, the network and the registered nodes before the engine programs
// them. An invalid record is logged with its key and skipped; it never
// reaches a hosts file, a DNS answer or a kernel table.
//
// The functions here are pure; the Cluster adds logging (once per key and
// revision, not on every watch event).

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
)

// ID lengths in hex digits.
const (
	ObjectIDLen = 64 // network and endpoint IDs, as Docker makes them
	NodeIDLen   = 32 // node IDs, as LoadOrCreateNodeID makes them
)

// Bounds on what a record may carry.
const (
	maxNameLen    = 255
	maxAliases    = 64
	maxSubnets    = 100
	maxOptionLen  = 4096
	maxOptions    = 256
	maxHostname   = 253
	maxDriverName = 255
)

var (
	// dockerName is Docker's rule for container and network names (and
	// vxnet's for aliases).
	dockerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	// driverName allows plugin references such as vendor/plugin:tag.
	driverName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.:/-]*$`)
)

// errRecord is wrapped by every validation error.
var errRecord = fmt.Errorf("invalid record: %w", model.ErrInvalid)

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errRecord, fmt.Sprintf(format, args...))
}

// ValidHexID reports whether s is exactly n lower-case hex digits.
func ValidHexID(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ValidName reports whether s is a name by Docker's rules: a letter or
// digit, then letters, digits, '_', '.' or '-' (so no spaces, newlines or
// other control characters), at most 255 characters.
func ValidName(s string) bool {
	return len(s) <= maxNameLen && dockerName.MatchString(s)
}

// ValidNetworkName reports whether s may name a network. Docker accepts
// any name there ("my net" included), so vxnet does too, short of what
// would break a line or a URL path: control characters, '/', invalid
// UTF-8, more than 255 bytes, or surrounding spaces.
func ValidNetworkName(s string) bool {
	if s == "" || len(s) > maxNameLen || !utf8.ValidString(s) || strings.ContainsRune(s, '/') || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// validUnicastAddr accepts an address a host or endpoint may have.
func validUnicastAddr(a netip.Addr) bool {
	return a.IsValid() && a.Zone() == "" && !a.Is4In6() && !a.IsUnspecified() && !a.IsMulticast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// family names an address's family.
func family(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// underlayFamily checks that addr, another host's underlay address (a node
// record's or an advertisement's VTEP), is of the family of this host's,
// local: a VXLAN device has one local address family, so every host of a
// cluster advertises IPv4 addresses or every host IPv6 ones. An unknown
// local address checks nothing.
func underlayFamily(local, addr netip.Addr) error {
	if !local.IsValid() || !addr.IsValid() || local.Unmap().Is4() == addr.Unmap().Is4() {
		return nil
	}
	return fmt.Errorf("underlay address %s is %s but this host advertises %s (%s): "+
		"a cluster's hosts all advertise IPv4 or all IPv6 addresses (a VXLAN device has one local address family)",
		addr, family(addr), family(local), local)
}

// ValidMAC accepts a 6-byte unicast MAC that is not all zero (the all-zero
// MAC is the overlay's broadcast FDB entry).
func ValidMAC(m net.HardwareAddr) bool {
	if len(m) != 6 || m[0]&1 != 0 {
		return false
	}
	for _, b := range m {
		if b != 0 {
			return true
		}
	}
	return false
}

func plainText(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

// ValidateNetwork checks a global network record stored under ID keyID.
func ValidateNetwork(keyID string, n model.Network) error {
	if !ValidHexID(n.ID, ObjectIDLen) {
		return badf("network ID %q is not %d hex digits", n.ID, ObjectIDLen)
	}
	if n.ID != keyID {
		return badf("network ID %s stored under key of %q", n.ID[:12], keyID)
	}
	if !ValidNetworkName(n.Name) {
		return badf("network name %q breaks Docker's naming rules", n.Name)
	}
	if len(n.Driver) > maxDriverName || !driverName.MatchString(n.Driver) {
		return badf("driver name %q", n.Driver)
	}
	if n.Scope != model.ScopeGlobal {
		return badf("scope %q of a global network", n.Scope)
	}
	if n.Predefined {
		return badf("a global network cannot be predefined")
	}
	if n.Driver == "overlay" && (n.VNI < MinVNI || n.VNI > MaxVNI) {
		return badf("VNI %d outside %d-%d", n.VNI, MinVNI, MaxVNI)
	}
	if len(n.IPAM) == 0 || len(n.IPAM) > maxSubnets {
		return badf("%d subnets", len(n.IPAM))
	}
	var seen []netip.Prefix
	has4, has6 := false, false
	for _, cfg := range n.IPAM {
		if cfg.Subnet.Addr().Is6() {
			has6 = true
			if !n.EnableIPv6 {
				return badf("IPv6 subnet %s without EnableIPv6", cfg.Subnet)
			}
		} else {
			has4 = true
		}
		if _, err := ipam.NewSubnet(cfg); err != nil {
			return badf("subnet %s: %v", cfg.Subnet, err)
		}
		if cfg.Subnet != cfg.Subnet.Masked() {
			return badf("subnet %s is not a network address", cfg.Subnet)
		}
		for _, p := range seen {
			if p.Overlaps(cfg.Subnet) {
				return badf("subnets %s and %s overlap", p, cfg.Subnet)
			}
		}
		seen = append(seen, cfg.Subnet)
	}
	if n.EnableIPv6 && !has6 {
		return badf("EnableIPv6 without an IPv6 subnet")
	}
	if has4 == n.DisableIPv4 {
		return badf("IPv4 subnet present %v with IPv4 disabled %v", has4, n.DisableIPv4)
	}
	if len(n.Options) > maxOptions || len(n.Labels) > maxOptions {
		return badf("too many options or labels")
	}
	for k, v := range n.Options {
		if k == "" || len(k)+len(v) > maxOptionLen || !plainText(k) || !plainText(v) {
			return badf("option %q", k)
		}
	}
	for k, v := range n.Labels {
		if k == "" || len(k)+len(v) > maxOptionLen || !plainText(k) {
			return badf("label %q", k)
		}
	}
	return nil
}

// validateNode checks a node record stored under ID keyID.
func validateNode(keyID string, r nodeRecord) error {
	if !ValidHexID(r.ID, NodeIDLen) {
		return badf("node ID %q is not %d hex digits", r.ID, NodeIDLen)
	}
	if r.ID != keyID {
		return badf("node ID %s stored under key of %q", r.ID, keyID)
	}
	if !validUnicastAddr(r.Addr) {
		return badf("node address %v", r.Addr)
	}
	if len(r.Hostname) > maxHostname || !plainText(r.Hostname) || strings.ContainsAny(r.Hostname, " \\\"") {
		return badf("host name %q", r.Hostname)
	}
	switch r.Role {
	case RoleVoter, RoleLearner, RoleClient:
	default:
		return badf("role %q", r.Role)
	}
	return nil
}

// ValidateAdvert checks one advertisement on its own: stored under the key
// of node keyNode, network keyNet and endpoint keyEP (so only the node
// itself, which alone may write its subtree, can have made it), with
// well-formed IDs, addresses, MAC, name and aliases. CheckAdverts does the
// checks that need the other records.
func ValidateAdvert(keyNode, keyNet, keyEP string, a Advert) error {
	if !ValidHexID(a.NetworkID, ObjectIDLen) || a.NetworkID != keyNet {
		return badf("network ID %q (key names %q)", a.NetworkID, keyNet)
	}
	if !ValidHexID(a.EndpointID, ObjectIDLen) || a.EndpointID != keyEP {
		return badf("endpoint ID %q (key names %q)", a.EndpointID, keyEP)
	}
	if !ValidHexID(a.NodeID, NodeIDLen) || a.NodeID != keyNode {
		return badf("node ID %q (key names %q)", a.NodeID, keyNode)
	}
	if a.IP.IsValid() || !a.IP6.IsValid() {
		// Only an endpoint of an IPv6-only network has no IPv4 address.
		if !a.IP.Is4() || !validUnicastAddr(a.IP) || a.IP.IsLoopback() {
			return badf("endpoint address %v", a.IP)
		}
	}
	if a.IP6.IsValid() && (!a.IP6.Is6() || !validUnicastAddr(a.IP6) || a.IP6.IsLoopback() || a.IP6.IsLinkLocalUnicast()) {
		return badf("endpoint IPv6 address %v", a.IP6)
	}
	if a.ContainerID != "" && !ValidHexID(a.ContainerID, ObjectIDLen) {
		return badf("container ID %q is not %d hex digits", a.ContainerID, ObjectIDLen)
	}
	if !ValidMAC(a.MAC) {
		return badf("MAC %v is not a unicast Ethernet address", a.MAC)
	}
	if !validUnicastAddr(a.VTEP) {
		return badf("VTEP address %v", a.VTEP)
	}
	if a.Name != "" && !ValidName(a.Name) {
		return badf("name %q breaks Docker's naming rules", a.Name)
	}
	if len(a.Aliases) > maxAliases {
		return badf("%d aliases", len(a.Aliases))
	}
	for _, al := range a.Aliases {
		if !ValidName(al) {
			return badf("alias %q breaks Docker's naming rules", al)
		}
	}
	return nil
}

// Rejected is an advertisement CheckAdverts left out, and why.
type Rejected struct {
	Key    string
	Advert Advert
	Reason error
	// Dispute is set when another advertisement claims the same address,
	// MAC or endpoint (the owner records may decide).
	Dispute bool
}

// FilterAdverts keeps the advertisements of network n that can be trusted
// together, given the registered address of every node (nodes) and this
// node's ID (self):
//
//   - the address (and the IPv6 address, if any) is a host address of one of
//     n's subnets, not its gateway or an aux address;
//   - the advertising node is registered and the VTEP is its registered
//     address, of the family of this node's registered address (a VXLAN
//     device has one local address family);
//   - no other advertisement claims the same address (of either family),
//     MAC or endpoint. On
//     such a conflict this node's own advertisement wins (it knows its own
//     endpoints), then the one whose node owns the address in owners, then
//     the one created first in the store; the others are rejected;
//   - when owners is given (global IPAM's owner record of every allocated
//     address of n), every advertisement of another node passes CheckOwner:
//     a lone claim on an address IPAM gave to another member, or to nobody,
//     is rejected too. A nil owners skips this check.
//
// The result keeps the order of ads. FilterAdverts does no I/O.
func FilterAdverts(n model.Network, ads []Advert, nodes map[string]netip.Addr, self string, owners map[netip.Addr]AddrOwner) (kept []Advert, rejected []Rejected) {
	ok := make([]bool, len(ads))
	dispute := false
	rejectErr := func(i int, err error) {
		if ok[i] {
			ok[i] = false
			rejected = append(rejected, Rejected{Key: ads[i].key, Advert: ads[i], Reason: err, Dispute: dispute})
		}
	}
	reject := func(i int, format string, args ...any) { rejectErr(i, badf(format, args...)) }
	for i, a := range ads {
		ok[i] = true
		if a.NetworkID != n.ID {
			reject(i, "advertisement of network %.12s read for network %.12s", a.NetworkID, n.ID)
			continue
		}
		if a.IP.IsValid() == n.DisableIPv4 {
			reject(i, "endpoint address %v on a network with IPv4 %s", a.IP, map[bool]string{false: "enabled", true: "disabled"}[n.DisableIPv4])
			continue
		}
		if n.DisableIPv4 && !a.IP6.IsValid() {
			reject(i, "no IPv6 address on an IPv6-only network")
			continue
		}
		if a.IP.IsValid() {
			if err := inSubnets(n, a.IP); err != nil {
				reject(i, "%v", err)
				continue
			}
		}
		if a.IP6.IsValid() {
			if !a.IP6.Is6() {
				reject(i, "IPv6 address %s is not IPv6", a.IP6)
				continue
			}
			if err := inSubnets(n, a.IP6); err != nil {
				reject(i, "%v", err)
				continue
			}
		}
		if err := underlayFamily(nodes[self], a.VTEP); err != nil {
			reject(i, "VTEP: %v", err)
			continue
		}
		reg, known := nodes[a.NodeID]
		if !known {
			reject(i, "node %s is not registered", a.NodeID)
			continue
		}
		if a.VTEP != reg {
			reject(i, "VTEP %s is not node %s's registered address %s", a.VTEP, a.NodeID, reg)
		}
	}
	// Conflicts: the same address, MAC or endpoint claimed more than once.
	rank := func(i int) (int, int64, string) {
		a := ads[i]
		r := 2
		if a.NodeID == self {
			r = 0
		} else if owners != nil && checkOwners(a, owners) == nil {
			r = 1
		}
		return r, a.created, a.key
	}
	better := func(i, j int) bool {
		ri, ci, ki := rank(i)
		rj, cj, kj := rank(j)
		return cmp.Or(cmp.Compare(ri, rj), cmp.Compare(ci, cj), strings.Compare(ki, kj)) < 0
	}
	dispute = true
	for _, claim := range []struct {
		what string
		of   func(Advert) string
	}{
		{"address", func(a Advert) string {
			if !a.IP.IsValid() {
				return ""
			}
			return a.IP.String()
		}},
		{"IPv6 address", func(a Advert) string {
			if !a.IP6.IsValid() {
				return ""
			}
			return a.IP6.String()
		}},
		{"MAC", func(a Advert) string { return a.MAC.String() }},
		{"endpoint", func(a Advert) string { return a.EndpointID }},
	} {
		winner := map[string]int{}
		for i, a := range ads {
			if !ok[i] {
				continue
			}
			k := claim.of(a)
			if k == "" {
				continue
			}
			w, dup := winner[k]
			if !dup {
				winner[k] = i
				continue
			}
			if better(i, w) {
				winner[k] = i
				reject(w, "%s %s is also claimed by %s (node %s)", claim.what, k, ads[i].key, ads[i].NodeID)
			} else {
				reject(i, "%s %s is already claimed by %s (node %s)", claim.what, k, ads[w].key, ads[w].NodeID)
			}
		}
	}
	// The owner record also judges an unconflicted claim.
	dispute = false
	for i, a := range ads {
		if !ok[i] || owners == nil || a.NodeID == self {
			continue
		}
		if err := checkOwners(a, owners); err != nil {
			rejectErr(i, err)
		}
	}
	for i, a := range ads {
		if ok[i] {
			kept = append(kept, a)
		}
	}
	slices.SortStableFunc(rejected, func(x, y Rejected) int { return strings.Compare(x.Key, y.Key) })
	return kept, rejected
}

// CheckOwner is the decision on one address of an advertisement against
// global IPAM's owner record of that address (has: whether there is one):
// the address must have been given to the advertising node, and to the
// advertised endpoint when the record names an endpoint (addresses reserved
// through Docker's IPAM plugin API name none). An advertisement of an
// address IPAM gave to another member, or never gave out, is an error.
// CheckOwner does no I/O.
func CheckOwner(a Advert, addr netip.Addr, o AddrOwner, has bool) error {
	switch {
	case !has:
		return badf("address %s is not allocated in global IPAM (no owner record)", addr)
	case o.Node != a.NodeID:
		return badf("address %s is allocated to node %s, not to the advertising node %s", addr, o.Node, a.NodeID)
	case o.Endpoint != "" && o.Endpoint != a.EndpointID:
		return badf("address %s is allocated to endpoint %.12s, not to the advertised endpoint %.12s", addr, o.Endpoint, a.EndpointID)
	}
	return nil
}

// checkOwners applies CheckOwner to each address of an advertisement (IPv4
// and IPv6).
func checkOwners(a Advert, owners map[netip.Addr]AddrOwner) error {
	for _, addr := range []netip.Addr{a.IP, a.IP6} {
		if !addr.IsValid() {
			continue
		}
		o, has := owners[addr]
		if err := CheckOwner(a, addr, o, has); err != nil {
			return err
		}
	}
	return nil
}

// inSubnets checks that a is a host address of one of n's subnets and not
// reserved there (gateway, aux addresses, network and broadcast).
func inSubnets(n model.Network, a netip.Addr) error {
	for _, cfg := range n.IPAM {
		p := cfg.Subnet
		if !p.IsValid() || !p.Contains(a) {
			continue
		}
		if a == cfg.Gateway {
			return badf("address %s is the gateway of %s", a, p)
		}
		for _, x := range cfg.AuxAddress {
			if a == x {
				return badf("address %s is reserved in %s", a, p)
			}
		}
		if p.Addr().Is4() && p.Bits() < 31 && (a == p.Masked().Addr() || a == lastAddr(p)) {
			return badf("address %s is the network or broadcast address of %s", a, p)
		}
		if p.Addr().Is6() && p.Bits() < 127 && a == p.Masked().Addr() {
			return badf("address %s is the subnet-router anycast address of %s", a, p)
		}
		return nil
	}
	return badf("address %s is in no subnet of network %s", a, n.Name)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// IsInvalidRecord reports whether err is a validation error from this file.
func IsInvalidRecord(err error) bool { return errors.Is(err, errRecord) }
