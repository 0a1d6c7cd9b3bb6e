package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/vxnet/vxnet/internal/model"
)

// Set and chain names inside our table.
const (
	setBridges  = "bridges"
	setSame     = "same"
	setInternal = "internal"
	setICCOff   = "icc_off"
	setMasq4    = "masq4"
	setMasq6    = "masq6"
	setVXLAN4   = "vxlan4"
	setVXLAN6   = "vxlan6"
	setCtlPorts = "ctlports"

	chainForward     = "forward"
	chainPostrouting = "postrouting"
	chainInput       = "input"
)

// element is one set element: its key parts and a comment.
type element struct {
	key     []string
	comment string
}

// desired is the validated, rendered-ready form of a Config. Computing it
// does no I/O.
type desired struct {
	sets      map[string][]element
	vxlanPort int
	ctlPorts  bool
	iccOff    bool            // some network has ICC=false
	iccOffV6  bool            // ... and an IPv6 subnet
	maps      []mapElement    // published ports (ports.go)
	localnet  map[string]bool // bridges that need route_localnet=1
}

func (d *desired) needBridgeNF() bool { return d.iccOff }

func invalid(format string, args ...any) error {
	return fmt.Errorf("firewall: %s: %w", fmt.Sprintf(format, args...), model.ErrInvalid)
}

// plan validates cfg and computes the set contents.
func plan(cfg Config) (*desired, error) {
	d := &desired{sets: map[string][]element{}, vxlanPort: cfg.VXLANPort, localnet: map[string]bool{}}
	if cfg.VXLANPort < 0 || cfg.VXLANPort > 65535 {
		return nil, invalid("vxlan port %d out of range", cfg.VXLANPort)
	}
	bridges := map[string]string{} // bridge -> network ID
	masq := map[netip.Prefix]bool{}
	for i, n := range cfg.Networks {
		if err := validIfname(n.Bridge); err != nil {
			return nil, invalid("network %d (%q): %v", i, n.ID, err)
		}
		if other, dup := bridges[n.Bridge]; dup {
			return nil, invalid("networks %q and %q share bridge %q", other, n.ID, n.Bridge)
		}
		bridges[n.Bridge] = n.ID
		c := comment(n.ID)
		q := strconv.Quote(n.Bridge) // validIfname keeps this a plain "name"
		d.add(setBridges, c, q)
		d.add(setSame, c, q, q)
		if n.Internal {
			d.add(setInternal, c, q)
		}
		if !n.ICC {
			d.add(setICCOff, c, q)
			d.iccOff = true
		}
		for _, p := range n.Subnets {
			if !p.IsValid() {
				return nil, invalid("network %q: invalid subnet %v", n.ID, p)
			}
			p = p.Masked()
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			if !n.ICC && p.Addr().Is6() {
				d.iccOffV6 = true
			}
			if !n.Masquerade || n.Internal || masq[p] {
				continue
			}
			masq[p] = true
			if p.Addr().Is4() {
				d.add(setMasq4, c, p.String())
			} else {
				d.add(setMasq6, c, p.String())
			}
		}
	}
	if err := d.planPorts(cfg.Ports, bridges); err != nil {
		return nil, err
	}
	seen := map[VXLANPeer]bool{}
	for _, p := range cfg.VXLANPeers {
		if !p.Addr.IsValid() {
			return nil, invalid("invalid vtep address")
		}
		if p.VNI == 0 || p.VNI >= 1<<24 {
			return nil, invalid("vni %d of vtep %s out of range", p.VNI, p.Addr)
		}
		p.Addr = p.Addr.Unmap().WithZone("")
		if seen[p] {
			continue
		}
		seen[p] = true
		set := setVXLAN4
		if p.Addr.Is6() {
			set = setVXLAN6
		}
		d.add(set, "vtep", p.Addr.String(), strconv.FormatUint(uint64(p.VNI), 10))
	}
	ports := map[int]bool{}
	for _, port := range cfg.ControlPorts {
		if port < 1 || port > 65535 {
			return nil, invalid("control port %d out of range", port)
		}
		if !ports[port] {
			ports[port] = true
			d.add(setCtlPorts, "control port", strconv.Itoa(port))
		}
	}
	d.ctlPorts = len(ports) > 0
	return d, nil
}

func (d *desired) add(set, comment string, key ...string) {
	d.sets[set] = append(d.sets[set], element{key: key, comment: comment})
}

// validIfname accepts Linux interface names made of characters that need no
// escaping in nft: letters, digits, '-', '_', '.'.
func validIfname(s string) error {
	if s == "" || len(s) > 15 {
		return fmt.Errorf("bridge name %q must have 1 to 15 characters", s)
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("bridge name %q has character %q", s, r)
		}
	}
	return nil
}

// validTable accepts nft identifiers that need no quoting: a letter, then
// letters, digits, '_' or '-'.
func validTable(s string) error {
	if s == "" || len(s) > 64 {
		return invalid("table name %q must have 1 to 64 characters", s)
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '_' || r == '-')) {
			return invalid("table name %q must be a letter followed by letters, digits, '_' or '-'", s)
		}
	}
	return nil
}

// comment makes a safe nft comment: no quotes or backslashes, bounded length.
func comment(id string) string {
	var b strings.Builder
	b.WriteString("vxnet net ")
	for _, r := range id {
		if b.Len() >= knftables.CommentLengthMax-1 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("-_.:/", r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// render writes the transaction that replaces our table with d: add (so the
// delete cannot fail), delete, then build afresh. nft runs it atomically.
func (d *desired) render(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("owned by vxnet; rebuilt on every apply")})

	yes := true
	sets := []*knftables.Set{
		{Name: setBridges, Type: "ifname", Comment: knftables.PtrTo("vxnet bridges")},
		{Name: setSame, Type: "ifname . ifname", Comment: knftables.PtrTo("bridge . same bridge")},
		{Name: setInternal, Type: "ifname", Comment: knftables.PtrTo("bridges of internal networks")},
		{Name: setICCOff, Type: "ifname", Comment: knftables.PtrTo("bridges without inter-container traffic")},
		{Name: setMasq4, Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag}, AutoMerge: &yes,
			Comment: knftables.PtrTo("subnets masqueraded on egress")},
		{Name: setMasq6, Type: "ipv6_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag}, AutoMerge: &yes,
			Comment: knftables.PtrTo("subnets masqueraded on egress")},
	}
	if d.vxlanPort != 0 {
		sets = append(sets,
			&knftables.Set{Name: setVXLAN4, TypeOf: "ip saddr . @th,96,24", Comment: knftables.PtrTo("allowed vxlan peers: vtep . vni")},
			&knftables.Set{Name: setVXLAN6, TypeOf: "ip6 saddr . @th,96,24", Comment: knftables.PtrTo("allowed vxlan peers: vtep . vni")})
	}
	if d.ctlPorts {
		sets = append(sets, &knftables.Set{Name: setCtlPorts, Type: "inet_service",
			Comment: knftables.PtrTo("host control ports closed to containers")})
	}
	for _, s := range sets {
		tx.Add(s)
	}

	tx.Add(&knftables.Chain{Name: chainForward, Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.ForwardHook), Priority: knftables.PtrTo(knftables.FilterPriority),
		Policy: knftables.PtrTo(knftables.AcceptPolicy)})
	tx.Add(&knftables.Chain{Name: chainPostrouting, Type: knftables.PtrTo(knftables.NATType),
		Hook: knftables.PtrTo(knftables.PostroutingHook), Priority: knftables.PtrTo(knftables.SNATPriority),
		Policy: knftables.PtrTo(knftables.AcceptPolicy)})

	rule := func(chain, comment string, parts ...any) {
		tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat(parts...), Comment: knftables.PtrTo(comment)})
	}
	rule(chainForward, "vxnet: internal networks, nothing out",
		"iifname", "@"+setInternal, "iifname . oifname", "!=", "@"+setSame, "drop")
	rule(chainForward, "vxnet: internal networks, nothing in",
		"oifname", "@"+setInternal, "iifname . oifname", "!=", "@"+setSame, "drop")
	rule(chainForward, "vxnet: published ports, from anywhere the host is reachable",
		"oifname", "@"+setBridges, "ct status dnat", "accept")
	rule(chainForward, "vxnet: published ports, return traffic",
		"iifname", "@"+setBridges, "ct status dnat", "accept")
	rule(chainForward, "vxnet: isolate bridges from each other",
		"iifname", "@"+setBridges, "oifname", "@"+setBridges, "iifname . oifname", "!=", "@"+setSame, "drop")
	rule(chainForward, "vxnet: icc=false (bridged traffic via br_netfilter)",
		"iifname", "@"+setICCOff, "iifname . oifname", "@"+setSame, "drop")
	rule(chainForward, "vxnet: return traffic",
		"oifname", "@"+setBridges, "ct state established,related", "accept")
	rule(chainForward, "vxnet: no unsolicited inbound",
		"oifname", "@"+setBridges, "iifname", "!=", "@"+setBridges, "drop")
	rule(chainPostrouting, "vxnet: masquerade egress",
		"ip saddr", "@"+setMasq4, "oifname", "!=", "@"+setBridges, "masquerade")
	rule(chainPostrouting, "vxnet: masquerade egress",
		"ip6 saddr", "@"+setMasq6, "oifname", "!=", "@"+setBridges, "masquerade")

	d.renderPorts(tx)

	if d.vxlanPort != 0 || d.ctlPorts {
		tx.Add(&knftables.Chain{Name: chainInput, Type: knftables.PtrTo(knftables.FilterType),
			Hook: knftables.PtrTo(knftables.InputHook), Priority: knftables.PtrTo(knftables.FilterPriority),
			Policy: knftables.PtrTo(knftables.AcceptPolicy)})
	}
	if d.ctlPorts {
		rule(chainInput, "vxnet: containers cannot reach the host's control ports",
			"iifname", "@"+setBridges, "tcp dport", "@"+setCtlPorts, "drop")
	}
	if d.vxlanPort != 0 {
		port := strconv.Itoa(d.vxlanPort)
		rule(chainInput, "vxnet: too short for vxlan",
			"udp dport", port, "udp length < 16", "drop")
		rule(chainInput, "vxnet: vxlan only from member vteps of that vni",
			"udp dport", port, "ip saddr . @th,96,24", "!=", "@"+setVXLAN4, "drop")
		rule(chainInput, "vxnet: vxlan only from member vteps of that vni",
			"udp dport", port, "ip6 saddr . @th,96,24", "!=", "@"+setVXLAN6, "drop")
	}

	names := make([]string, 0, len(d.sets))
	for name := range d.sets {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, e := range d.sets[name] {
			tx.Add(&knftables.Element{Set: name, Key: e.key, Comment: knftables.PtrTo(e.comment)})
		}
	}
}
