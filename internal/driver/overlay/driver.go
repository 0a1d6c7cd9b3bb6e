// Package overlay is vxnet's multi-host driver: one VXLAN segment per
// network, bridged to the containers of that network on each host, with
// forwarding state programmed from the cluster's endpoint advertisements.
//
// # Kernel objects owned
//
// Per overlay network, on each host with at least one local container on
// it (made on the first Join, removed after the last Leave and by
// DeleteNetwork):
//
//	host netns (HostNetns; the underlay, VTEP = advertise address)
//	  UDP socket of the VXLAN device (port VXLANPort, default 4789)
//	overlay netns <ExecRoot>/netns/ov-<network id 12>
//	  br0    bridge, gateway address(es) of the subnet(s), fixed MAC,
//	         multicast snooping off
//	  vxlan0 VNI of the network, learning off, proxy ARP/ND on,
//	         l2miss/l3miss off, local address = VTEP; a port of br0
//	  ov<endpoint id 12> host end of each container's veth; a port of br0
//	sandbox netns: the other end of the veth, named ep.IfName
//
// The VXLAN device is created in the host namespace under a temporary name
// (vxo<VNI hex>) so that its UDP socket and its underlay route lookups stay
// there, then moved into the overlay namespace and renamed vxlan0. Its
// local (source) address is pinned to the VTEP, so the outer source of
// every packet is the address peers have in their FDB entries, also on
// hosts with several underlay addresses. Every
// link we make carries the alias "vxnet:ov:<network id>" (veths
// "vxnet:ov:<network id>:<endpoint id>") so Sweep can tell our leftovers
// from other people's objects. The MTU of vxlan0, br0 and the veths is the
// underlay MTU minus the VXLAN overhead (50 bytes over IPv4, 70 over IPv6)
// unless the network sets com.docker.network.driver.mtu.
//
// # Entries per peer
//
// SetPeers takes the whole desired peer set of a network and reconciles the
// kernel with it. Per remote endpoint: one FDB entry MAC -> remote VTEP on
// vxlan0 (replace semantics, so an address that moves to another host is
// reachable at once) and one permanent neighbour entry IP -> MAC on vxlan0
// (answered by the device's ARP/ND proxy, so ARP never crosses the
// underlay). Per remote VTEP: one all-zero-MAC FDB entry, appended, so
// broadcast and multicast frames are replicated head-end to every host
// that has members. That is 2 entries per remote endpoint plus 1 per remote
// VTEP; nothing is learned and no multicast group is used. When a MAC stops
// being wanted, what br0 learned for it on vxlan0 is flushed too, so a
// reused IP is not black-holed until the bridge's ageing timer runs out.
// This programming is the PeerController (peerctl.go): desired set, kernel
// listing, diff, apply, through the PeerKernel interface (netlink here, a
// fake kernel in its tests, which need no root).
//
// # Failure behaviour
//
// The reconcile lists what the kernel holds, adds and replaces what is
// missing or wrong first, then deletes extras; it keeps going past single
// failures and returns them joined. The desired set is kept per network,
// so Resync (run periodically and after errors by the caller) repairs drift
// such as an entry deleted by hand. The driver never flushes entries on its
// own: when the cluster store is unreachable the caller simply does not
// call SetPeers, and the data plane stays as it is. A restarted daemon
// finds the overlay namespace pinned under ExecRoot and reuses it in place
// (br0, vxlan0 and veths that are present and correct are not recreated),
// so running flows continue.
package overlay

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
)

// Type is the driver's name.
const Type = "overlay"

// DefaultVXLANPort is the IANA VXLAN port.
const DefaultVXLANPort = 4789

// Options configures a Driver.
type Options struct {
	// HostNetns is the namespace holding the underlay (VTEP address) and
	// the VXLAN sockets; "" is the calling process's namespace.
	HostNetns string
	// ExecRoot holds the pinned overlay namespaces at
	// <ExecRoot>/netns/ov-<first 12 of the network ID>.
	ExecRoot string
	// VTEP is this host's underlay (advertise) address.
	VTEP netip.Addr
	// VXLANPort is the UDP port of the VXLAN devices (default 4789).
	VXLANPort int
	// Logger receives debug and warning messages (default slog.Default()).
	Logger *slog.Logger
}

// Driver is the overlay driver. It is safe for concurrent use; kernel
// changes are serialised by one mutex.
type Driver struct {
	opts Options
	log  *slog.Logger

	// mu serialises kernel changes; the peer controller's lock is taken
	// inside it.
	mu sync.Mutex
	// peers programs the FDB and neighbour entries (peerctl.go).
	peers *PeerController
}

var (
	_ driver.Driver          = (*Driver)(nil)
	_ driver.Sweeper         = (*Driver)(nil)
	_ driver.OptionValidator = (*Driver)(nil)
)

// New returns a driver. It does not touch the kernel.
func New(opts Options) (*Driver, error) {
	if opts.ExecRoot == "" {
		return nil, fmt.Errorf("overlay: new driver: exec root not set: %w", driver.ErrInvalid)
	}
	if !opts.VTEP.IsValid() {
		return nil, fmt.Errorf("overlay: new driver: VTEP address not set: %w", driver.ErrInvalid)
	}
	opts.VTEP = opts.VTEP.Unmap()
	if opts.VXLANPort == 0 {
		opts.VXLANPort = DefaultVXLANPort
	}
	if opts.VXLANPort < 1 || opts.VXLANPort > 65535 {
		return nil, fmt.Errorf("overlay: new driver: VXLAN port %d: %w", opts.VXLANPort, driver.ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &Driver{opts: opts, log: opts.Logger.With("driver", Type)}
	d.peers = NewPeerController(netlinkKernel{d}, opts.VTEP, d.log)
	return d, nil
}

// Type returns "overlay".
func (d *Driver) Type() string { return Type }

// Scope returns model.ScopeGlobal.
func (d *Driver) Scope() string { return model.ScopeGlobal }

// ValidateOptions checks the -o options of an overlay network.
func (d *Driver) ValidateOptions(opts map[string]string) error {
	if v, ok := opts[model.OptMTU]; ok {
		if _, err := parseMTU(v); err != nil {
			return err
		}
	}
	return nil
}

func parseMTU(v string) (int, error) {
	mtu, err := strconv.Atoi(v)
	if err != nil || mtu < 68 || mtu > 65535 {
		return 0, fmt.Errorf("overlay: option %s=%q: want an integer from 68 to 65535: %w", model.OptMTU, v, driver.ErrInvalid)
	}
	return mtu, nil
}

// nsPath is where the overlay namespace of network id is pinned.
func (d *Driver) nsPath(id string) string {
	return filepath.Join(d.opts.ExecRoot, "netns", "ov-"+short(id, 12))
}

// NetnsPath returns where the overlay namespace of n is pinned on this host
// (it exists only while n has a local container).
func (d *Driver) NetnsPath(n model.Network) string { return d.nsPath(n.ID) }

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func checkNetwork(n model.Network) error {
	if n.ID == "" {
		return fmt.Errorf("overlay: network without ID: %w", driver.ErrInvalid)
	}
	if n.VNI == 0 || n.VNI > 1<<24-1 {
		return fmt.Errorf("overlay: network %s: VNI %d out of range: %w", short(n.ID, 12), n.VNI, driver.ErrInvalid)
	}
	return nil
}
