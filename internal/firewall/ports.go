package firewall

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"
)

// Published ports (docker run -p) are DNAT rules in our table, shaped so the
// rule count stays constant: each mapping is one element of a verdict-free
// map whose value is the container's address and port.
//
//	map pub4_any  inet_proto . inet_service             : ipv4_addr . inet_service   -p 8080:80
//	map pub4_ip   ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service   -p 192.0.2.1:8080:80
//	map pub6_any  inet_proto . inet_service             : ipv6_addr . inet_service   -p 8080:80, -p [::]:8080:80
//	map pub6_ip   ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service   -p [2001:db8::1]:8080:80
//
//	chain pub_prerouting (nat, hook prerouting, dstnat)   from other hosts and from containers
//	  fib daddr type local jump pub_dnat
//	chain pub_output (nat, hook output, dstnat)           from the host itself (localhost too)
//	  fib daddr type local jump pub_dnat
//	chain pub_dnat
//	  dnat ip to ip daddr . meta l4proto . th dport map @pub4_ip
//	  dnat ip to meta l4proto . th dport map @pub4_any
//	  dnat ip6 to ip6 daddr . meta l4proto . th dport map @pub6_ip
//	  ip6 daddr != ::1 dnat ip6 to meta l4proto . th dport map @pub6_any
//	chain pub_raw (filter, hook prerouting, raw)
//	  iifname @bridges ip daddr 127.0.0.0/8 drop           loopback stays the host's
//	chain pub_postrouting (nat, hook postrouting, srcnat)
//	  ct status dnat ip saddr 127.0.0.0/8 masquerade       localhost -> container
//	  ct status dnat iifname . oifname @same masquerade    hairpin on one bridge
//
// "fib daddr type local" limits the rewrite to packets addressed to this
// host, so forwarded traffic for other machines with the same port is left
// alone. A connection to 127.0.0.1:PORT is rewritten in the output hook; its
// source is loopback, which the kernel refuses to route out of a bridge
// unless net.ipv4.conf.BRIDGE.route_localnet=1, so Apply sets that sysctl on
// every bridge that carries a mapping (what Docker does without its userland
// proxy), and the masquerade rule gives the packet the bridge's address so
// the container can answer. route_localnet alone would also let a container
// that routes 127.0.0.0/8 to its gateway reach services the host keeps on
// loopback (the hole Kubernetes closed for CVE-2020-8558); pub_raw drops
// every packet from a vxnet bridge addressed to 127.0.0.0/8 before routing. A container reaching a published port of a
// container on its own bridge (hairpin) is masqueraded to the bridge address
// as well, or the answer would go straight back over the bridge without
// passing the conntrack entry that undoes the DNAT.
//
// IPv6: a mapping on every address leads to the container's IPv6 address
// (pub6_any) when it has one on the network, besides its IPv4 one; a
// mapping on an IPv6 host address (or "::") only to the IPv6 one. IPv6 has
// no route_localnet: a packet from ::1 cannot leave the host, so ::1 is
// never rewritten here; the engine's userland proxy serves it.
//
// The forward chain accepts "ct status dnat" before the isolation and ICC
// rules: a published port is reachable from anywhere the host is, including
// containers of other networks and of the same ICC=false bridge (the
// gateway bridge of overlay containers is one).
const (
	mapPub4Any = "pub4_any"
	mapPub4IP  = "pub4_ip"
	mapPub6Any = "pub6_any"
	mapPub6IP  = "pub6_ip"

	chainPubPrerouting  = "pub_prerouting"
	chainPubOutput      = "pub_output"
	chainPubDNAT        = "pub_dnat"
	chainPubPostrouting = "pub_postrouting"
	chainPubRaw         = "pub_raw"
)

// PortMapping is one published port: traffic to HostIP:HostPort (any local
// address when HostIP is invalid, any of one family for 0.0.0.0 or ::) is
// sent to ContainerIP:ContainerPort (IPv4) or ContainerIP6:ContainerPort
// (IPv6) on Bridge. Either container address may be missing (an IPv6-only
// network, a network without IPv6); the host address's family must have
// one.
type PortMapping struct {
	ID            string // container ID, used in element comments
	Proto         string // tcp, udp or sctp
	HostIP        netip.Addr
	HostPort      uint16
	ContainerIP   netip.Addr
	ContainerIP6  netip.Addr
	ContainerPort uint16
	Bridge        string // the bridge the container address is on
}

// portKey identifies a published host port for duplicate checks.
type portKey struct {
	proto string
	ip    netip.Addr
	port  uint16
}

type mapElement struct {
	mapName    string
	key, value []string
	comment    string
}

// planPorts validates the mappings and adds their elements to d.
func (d *desired) planPorts(ports []PortMapping, bridges map[string]string) error {
	seen := map[portKey]bool{}
	for _, m := range ports {
		switch m.Proto {
		case "tcp", "udp", "sctp":
		default:
			return invalid("port mapping of %q: protocol %q is not tcp, udp or sctp", m.ID, m.Proto)
		}
		if m.HostPort == 0 || m.ContainerPort == 0 {
			return invalid("port mapping of %q: port 0", m.ID)
		}
		c4, c6 := m.ContainerIP.Unmap(), m.ContainerIP6
		if c4.IsValid() && !c4.Is4() {
			return invalid("port mapping of %q: container address %v is not IPv4", m.ID, m.ContainerIP)
		}
		if c6.IsValid() && (!c6.Is6() || c6.Is4In6()) {
			return invalid("port mapping of %q: container address %v is not IPv6", m.ID, m.ContainerIP6)
		}
		hostIP := m.HostIP.Unmap()
		if hostIP == netip.IPv4Unspecified() {
			hostIP = netip.Addr{} // every address, as the API gives -p 0.0.0.0:...
		}
		if hostIP.Is6() && hostIP.IsLoopback() {
			return invalid("port mapping of %q: ::1 cannot be rewritten by DNAT (the userland proxy serves it)", m.ID)
		}
		// The families the mapping is published on.
		on4, on6 := !hostIP.IsValid() || hostIP.Is4(), !hostIP.IsValid() || hostIP.Is6()
		switch {
		case !hostIP.IsValid() && !c4.IsValid() && !c6.IsValid():
			return invalid("port mapping of %q: no container address", m.ID)
		case hostIP.IsValid() && on4 && !c4.IsValid():
			return invalid("port mapping of %q: host address %v needs the container's IPv4 address", m.ID, m.HostIP)
		case hostIP.IsValid() && on6 && !c6.IsValid():
			return invalid("port mapping of %q: host address %v needs the container's IPv6 address", m.ID, m.HostIP)
		}
		if _, ok := bridges[m.Bridge]; !ok {
			return invalid("port mapping of %q: bridge %q is not a vxnet bridge", m.ID, m.Bridge)
		}
		// One key per family published on: "::" and every address
		// overlap on IPv6.
		var keys []portKey
		if !hostIP.IsValid() {
			keys = []portKey{{m.Proto, netip.Addr{}, m.HostPort}, {m.Proto, netip.IPv6Unspecified(), m.HostPort}}
		} else {
			keys = []portKey{{m.Proto, hostIP, m.HostPort}}
		}
		for _, k := range keys {
			if seen[k] {
				return invalid("port mapping of %q: %s port %d published twice", m.ID, m.Proto, m.HostPort)
			}
			seen[k] = true
		}
		add := func(anyMap, ipMap string, to netip.Addr) {
			value := []string{to.String(), strconv.Itoa(int(m.ContainerPort))}
			key := []string{m.Proto, strconv.Itoa(int(m.HostPort))}
			name := anyMap
			if hostIP.IsValid() && !hostIP.IsUnspecified() {
				name = ipMap
				key = append([]string{hostIP.String()}, key...)
			}
			d.maps = append(d.maps, mapElement{mapName: name, key: key, value: value, comment: comment(m.ID)})
		}
		if on4 && c4.IsValid() {
			add(mapPub4Any, mapPub4IP, c4)
			d.localnet[m.Bridge] = true
		}
		if on6 && c6.IsValid() {
			add(mapPub6Any, mapPub6IP, c6)
		}
	}
	return nil
}

// renderPorts adds the published-port maps and chains to tx.
func (d *desired) renderPorts(tx *knftables.Transaction) {
	tx.Add(&knftables.Map{Name: mapPub4Any, Type: "inet_proto . inet_service : ipv4_addr . inet_service",
		Comment: knftables.PtrTo("published ports on every local address")})
	tx.Add(&knftables.Map{Name: mapPub4IP, Type: "ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service",
		Comment: knftables.PtrTo("published ports on one host address")})
	tx.Add(&knftables.Map{Name: mapPub6Any, Type: "inet_proto . inet_service : ipv6_addr . inet_service",
		Comment: knftables.PtrTo("published ports on every local IPv6 address")})
	tx.Add(&knftables.Map{Name: mapPub6IP, Type: "ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service",
		Comment: knftables.PtrTo("published ports on one host IPv6 address")})

	natChain := func(name string, hook knftables.BaseChainHook, prio knftables.BaseChainPriority) {
		tx.Add(&knftables.Chain{Name: name, Type: knftables.PtrTo(knftables.NATType),
			Hook: knftables.PtrTo(hook), Priority: knftables.PtrTo(prio),
			Policy: knftables.PtrTo(knftables.AcceptPolicy)})
	}
	natChain(chainPubPrerouting, knftables.PreroutingHook, knftables.DNATPriority)
	natChain(chainPubOutput, knftables.OutputHook, knftables.DNATPriority)
	natChain(chainPubPostrouting, knftables.PostroutingHook, knftables.SNATPriority)
	tx.Add(&knftables.Chain{Name: chainPubRaw, Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.PreroutingHook), Priority: knftables.PtrTo(knftables.RawPriority),
		Policy: knftables.PtrTo(knftables.AcceptPolicy)})
	tx.Add(&knftables.Chain{Name: chainPubDNAT})

	rule := func(chain, comment string, parts ...any) {
		tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat(parts...), Comment: knftables.PtrTo(comment)})
	}
	rule(chainPubRaw, "vxnet: containers never reach the host's loopback (route_localnet)",
		"iifname", "@"+setBridges, "ip daddr 127.0.0.0/8", "drop")
	rule(chainPubPrerouting, "vxnet: published ports", "fib daddr type local", "jump", chainPubDNAT)
	rule(chainPubOutput, "vxnet: published ports from this host", "fib daddr type local", "jump", chainPubDNAT)
	rule(chainPubDNAT, "vxnet: published on one address",
		"meta nfproto ipv4", "dnat ip to ip daddr . meta l4proto . th dport map", "@"+mapPub4IP)
	rule(chainPubDNAT, "vxnet: published on every address",
		"meta nfproto ipv4", "dnat ip to meta l4proto . th dport map", "@"+mapPub4Any)
	rule(chainPubDNAT, "vxnet: published on one IPv6 address",
		"meta nfproto ipv6", "dnat ip6 to ip6 daddr . meta l4proto . th dport map", "@"+mapPub6IP)
	rule(chainPubDNAT, "vxnet: published on every IPv6 address (::1 is the userland proxy's)",
		"meta nfproto ipv6", "ip6 daddr != ::1", "dnat ip6 to meta l4proto . th dport map", "@"+mapPub6Any)
	rule(chainPubPostrouting, "vxnet: localhost to a published port",
		"ct status dnat", "ip saddr 127.0.0.0/8", "masquerade")
	rule(chainPubPostrouting, "vxnet: hairpin to a published port",
		"ct status dnat", "iifname . oifname", "@"+setSame, "masquerade")

	for _, e := range d.maps {
		tx.Add(&knftables.Element{Map: e.mapName, Key: e.key, Value: e.value, Comment: knftables.PtrTo(e.comment)})
	}
}

// ensureLocalnet sets route_localnet=1 on the bridges that carry published
// ports, so connections to 127.0.0.1:PORT can be routed to a container. It
// runs in the firewall's namespace; a bridge that does not exist yet is an
// error for the caller to log (the next Apply sets it).
func (f *Firewall) ensureLocalnet(bridges map[string]bool) error {
	for br := range bridges {
		name := "net.ipv4.conf." + strings.ReplaceAll(br, ".", "/") + ".route_localnet"
		if v, err := f.sysctl.get(name); err == nil && v == "1" {
			continue
		}
		if err := f.sysctl.set(name, "1"); err != nil {
			return fmt.Errorf("firewall: set %s=1 (published ports on localhost): %w", name, err)
		}
	}
	return nil
}
