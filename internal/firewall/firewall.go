// Package firewall owns vxnet's packet filtering and NAT on a host: one
// nftables table (family inet, default name "vxnet") that is rebuilt from a
// whole desired configuration on every Apply. Rules it did not make are never
// touched; Flush deletes the table and nothing else.
//
// # Design
//
// Kernel objects owned: the table "inet <Options.Table>" and everything in it.
// Nothing else (no other tables, no sysctls unless
// Options.EnableBridgeNetfilter is set), except route_localnet=1 on bridges
// that carry published ports (see ports.go).
//
// Rule count is constant: per-network facts are elements of named sets, and
// each set element carries a comment naming its network. Per network there are
// one to three set elements; per allowed VTEP one element.
//
//	set bridges    ifname           every vxnet bridge
//	set same       ifname . ifname  "B" . "B" for every bridge B
//	set internal   ifname           bridges of Internal networks
//	set icc_off    ifname           bridges of networks with ICC=false
//	set masq4/6    prefix           subnets to masquerade (Masquerade && !Internal)
//	set vxlan4/6   addr . VNI       VXLANPeers (typeof ip saddr . @th,96,24)
//	set ctlports   inet_service     ControlPorts
//
//	chain forward (filter, hook forward, policy accept)
//	  iifname @internal iifname . oifname != @same drop                   internal: nothing out
//	  oifname @internal iifname . oifname != @same drop                   internal: nothing in
//	  oifname @bridges ct status dnat accept                              published ports
//	  iifname @bridges ct status dnat accept                              ... and their answers
//	  iifname @bridges oifname @bridges iifname . oifname != @same drop   isolation
//	  iifname @icc_off iifname . oifname @same drop                       ICC=false
//	  oifname @bridges ct state established,related accept                return traffic
//	  oifname @bridges iifname != @bridges drop                           no unsolicited inbound
//	chain postrouting (nat, hook postrouting, srcnat)
//	  ip saddr @masq4 oifname != @bridges masquerade
//	  ip6 saddr @masq6 oifname != @bridges masquerade
//	chain input (filter, hook input)
//	  iifname @bridges tcp dport @ctlports drop                           containers -> control ports
//	  udp dport PORT udp length < 16 drop                                 no room for a VXLAN header
//	  udp dport PORT ip saddr . @th,96,24 != @vxlan4 drop                 source and VNI
//	  udp dport PORT ip6 saddr . @th,96,24 != @vxlan6 drop
//
// @th,96,24 is the VNI: bits 32-55 of the VXLAN header, which follows the
// 8-byte UDP header. A VTEP is thus accepted only for the VNIs of the
// networks it takes part in, so a member cannot inject frames into an
// overlay network it has no endpoint on.
//
// Our chains only ever drop (or end early with accept, which in nftables
// means "no objection from this table"): another table's drop still wins, and
// our accept does not override anyone else's policy.
//
// Masquerade excludes every vxnet bridge as output, not only the network's
// own: traffic between two vxnet bridges is dropped by isolation before it
// reaches postrouting, and intra-bridge traffic (seen here when br_netfilter
// is active) must not be rewritten.
//
// Inbound: new connections routed from a non-vxnet interface into a vxnet
// bridge are dropped unless they were DNAT'ed (a published port) or belong
// to an established flow. This is Docker 28's "direct routing" protection;
// a network with Masquerade=false therefore still answers only flows its
// containers started.
//
// # ICC and br_netfilter
//
// Traffic between two ports of one Linux bridge is switched, not routed, so
// it reaches the inet forward hook only through br_netfilter with
// net.bridge.bridge-nf-call-iptables=1 (and -ip6tables for IPv6) in the
// namespace; it then shows up with iifname == oifname == the bridge. A
// bridge-family table cannot do better without CONFIG_NFT_BRIDGE_META
// (`meta ibrname`), which kernels often lack (this project's test kernel
// does), and it would need the port names. So ICC=false relies on
// br_netfilter, as Docker's does. When a network has ICC=false, Apply checks
// those sysctls; with Options.EnableBridgeNetfilter it sets them to 1,
// otherwise it applies everything else and returns an error wrapping
// ErrBridgeNetfilter. (Setting them affects every bridge in the namespace:
// bridged IP traffic then traverses all forward chains, including other
// software's.) The alternative that needs no netfilter at all is the
// bridge port flag "isolated on" set by the bridge driver on each veth.
//
// # Not done here
//
// net.ipv4.ip_forward is left to the bridge driver. Published ports are
// described in ports.go.
//
// # Namespaces
//
// knftables execs /usr/sbin/nft from the calling goroutine (os/exec forks
// from the current OS thread), so a child started on a thread locked inside
// a namespace runs in that namespace. With Options.NetNS set, New, Apply and
// Flush run nft inside internal/netns.Do for that path; with it empty they
// use the caller's namespace (the daemon's host namespace in production).
package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"sigs.k8s.io/knftables"

	"github.com/vxnet/vxnet/internal/netns"
)

// DefaultTable is the table name used when Options.Table is empty.
const DefaultTable = "vxnet"

// ErrBridgeNetfilter means a network asks for ICC=false but bridged traffic
// does not pass through netfilter in this namespace (br_netfilter missing or
// net.bridge.bridge-nf-call-ip(6)tables is 0), so containers on that bridge
// can still reach each other. The rest of the configuration was applied.
var ErrBridgeNetfilter = errors.New("firewall: bridged traffic bypasses netfilter, icc=false not enforced")

// Network is the firewall's view of one vxnet bridge network.
//
// The zero value of the booleans is the closed choice: no inter-container
// traffic, no masquerade. Callers translate Docker's defaults
// (enable_icc=true, enable_ip_masquerade=true) explicitly.
type Network struct {
	ID         string         // network ID, used in element comments
	Bridge     string         // the Linux bridge interface of the network
	Subnets    []netip.Prefix // IPv4 and/or IPv6 subnets on the bridge
	Internal   bool           // no way in or out: only traffic within the bridge
	ICC        bool           // inter-container traffic on the same bridge allowed
	Masquerade bool           // SNAT egress to the host's address (ignored when Internal)
}

// VXLANPeer is a remote VTEP allowed to send VXLAN packets of one VNI.
type VXLANPeer struct {
	Addr netip.Addr
	VNI  uint32
}

// Config is the whole desired firewall state of a host.
type Config struct {
	Networks []Network
	// VXLANPort, when not 0, drops UDP packets to that port on input unless
	// their source address and the VNI in their VXLAN header are one of
	// VXLANPeers (an empty list drops them all), and drops datagrams too
	// short to hold a VXLAN header.
	VXLANPort  int
	VXLANPeers []VXLANPeer
	// ControlPorts are the host's TCP ports that containers must not reach
	// (the cluster store, the join service, the API over TCP): packets from
	// a vxnet bridge to one of them, on any of the host's addresses, are
	// dropped on input.
	ControlPorts []int
	// Ports are the published ports (see ports.go).
	Ports []PortMapping
}

// Options configure a Firewall.
type Options struct {
	// Table is the name of the inet table we own (default DefaultTable).
	Table string
	// Logger receives debug and warning messages (default: discard).
	Logger *slog.Logger
	// NetNS, when set, is the path of a pinned network namespace in which
	// every nft command runs. Empty means the caller's namespace.
	NetNS string
	// EnableBridgeNetfilter lets Apply set
	// net.bridge.bridge-nf-call-ip(6)tables=1 when a network has ICC=false.
	EnableBridgeNetfilter bool
}

// Firewall applies Configs to one nftables table. Its methods are safe for
// concurrent use; calls are serialised.
type Firewall struct {
	mu     sync.Mutex
	nft    knftables.Interface
	table  string
	log    *slog.Logger
	netns  string
	setBNF bool
	sysctl sysctlIO
}

// sysctlIO reads and writes sysctls of the namespace the call runs in; a
// field so tests without root can replace it.
type sysctlIO interface {
	get(name string) (string, error)
	set(name, value string) error
}

// New checks that nft works (in Options.NetNS if set) and returns a
// Firewall. It changes nothing in the kernel.
func New(opts Options) (*Firewall, error) {
	f := newFirewall(nil, opts)
	if err := validTable(f.table); err != nil {
		return nil, err
	}
	err := f.do(func() error {
		nft, err := knftables.New(knftables.InetFamily, f.table)
		if err != nil {
			return err
		}
		f.nft = nft
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("firewall: init nftables: %w", err)
	}
	return f, nil
}

func newFirewall(nft knftables.Interface, opts Options) *Firewall {
	f := &Firewall{
		nft:    nft,
		table:  opts.Table,
		log:    opts.Logger,
		netns:  opts.NetNS,
		setBNF: opts.EnableBridgeNetfilter,
		sysctl: procSysctl{},
	}
	if f.table == "" {
		f.table = DefaultTable
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	return f
}

// Table returns the name of the table this Firewall owns.
func (f *Firewall) Table() string { return f.table }

// Apply makes our table match cfg in one atomic nft transaction (the old
// table, if any, is replaced as a whole). Applying the same cfg again has no
// effect on traffic. An invalid cfg changes nothing and returns an error
// wrapping model.ErrInvalid. See ErrBridgeNetfilter for the one case where
// the rules are applied and an error is still returned.
func (f *Firewall) Apply(ctx context.Context, cfg Config) error {
	p, err := plan(cfg)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var bnfErr, lnErr error
	err = f.do(func() error {
		if p.needBridgeNF() {
			bnfErr = f.ensureBridgeNF(p.iccOffV6)
		}
		lnErr = f.ensureLocalnet(p.localnet)
		tx := f.nft.NewTransaction()
		p.render(tx)
		return f.nft.Run(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("firewall: apply table %s: %w", f.table, err)
	}
	f.log.Debug("firewall applied", "table", f.table, "networks", len(cfg.Networks),
		"vxlan_port", cfg.VXLANPort, "vxlan_peers", len(cfg.VXLANPeers))
	if bnfErr != nil {
		f.log.Warn("icc=false not enforced", "table", f.table, "err", bnfErr)
	}
	if lnErr != nil {
		f.log.Warn("published ports not reachable on localhost", "table", f.table, "err", lnErr)
	}
	return bnfErr
}

// Flush deletes our table. A missing table is success.
func (f *Firewall) Flush(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.do(func() error {
		tx := f.nft.NewTransaction()
		// Adding first makes the delete succeed when the table is absent.
		tx.Add(&knftables.Table{})
		tx.Delete(&knftables.Table{})
		return f.nft.Run(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("firewall: flush table %s: %w", f.table, err)
	}
	f.log.Debug("firewall flushed", "table", f.table)
	return nil
}

// do runs fn in the configured namespace.
func (f *Firewall) do(fn func() error) error {
	if f.netns == "" {
		return fn()
	}
	return netns.Do(f.netns, fn)
}
