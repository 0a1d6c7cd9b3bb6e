// Package bridge is vxnet's local bridge driver: one Linux bridge per
// network in the host namespace, one veth pair per endpoint.
//
// # Kernel objects it owns
//
// In the host namespace (Options.HostNetns, "" = the daemon's own):
//
//	vx-<network id 12>  bridge (or the name from -o com.docker.network.bridge.name)
//	                    MTU from -o com.docker.network.driver.mtu (default 1500),
//	                    the gateway address of every IPAM subnet, up.
//	                    Alias "vxnet:net:<network id>".
//	vxv<12 hex>         host end of one endpoint's veth, a port of the bridge.
//	                    The name is a hash of the endpoint ID, so a restarted
//	                    daemon finds it again. Alias "vxnet:ep:<endpoint id>".
//
// In each sandbox namespace: the veth peer, named ep.IfName (eth0, eth1, ...),
// with the endpoint's MAC, MTU and address, and the default route via the
// gateway when the engine asks for it. It is created directly inside the
// sandbox (IFLA_NET_NS_FD), so it never appears in the host namespace.
//
// The driver also sets net.ipv4.ip_forward=1 in the host namespace. It owns
// no firewall rules (ICC and masquerading belong to the firewall package,
// which finds the bridge with BridgeName) and no persistent state.
//
// # Marks
//
// The interface alias (IFLA_IFALIAS, `ip link set dev X alias ...`) carries
// the mark. Delete, Leave and Sweep only remove links with vxnet's mark for
// the object in question; a user's existing bridge named with
// com.docker.network.bridge.name is used as it is, never marked and never
// deleted.
//
// # Cost
//
// Per network: one bridge and one address per subnet. Per endpoint: one veth
// pair, one address and at most one route in the sandbox; nothing on the
// other endpoints or networks. About ten netlink requests per Join.
//
// # Failure behaviour
//
// Every method converges: calling it again with the same values repairs what
// a crash or an error left half done. A Join that fails deletes the veth it
// made (the peer dies with it), so no veth outlives a failed Join. A Join that
// finds a stale veth (peer missing from the sandbox, renamed, or in another
// namespace) deletes it and starts over. Sweep removes marked bridges and
// veths that belong to no known network or endpoint, and keeps going past
// single failures.
package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
)

// Type is the driver name users give with -d.
const Type = "bridge"

// DefaultMTU is the bridge and interface MTU without the MTU option.
const DefaultMTU = 1500

// Alias prefixes that mark vxnet's links.
const (
	markPrefix    = "vxnet:"
	netMarkPrefix = "vxnet:net:"
	epMarkPrefix  = "vxnet:ep:"
)

// Options configure the driver.
type Options struct {
	// HostNetns is the pinned namespace path where bridges and host veth
	// ends live; "" is the calling process's own namespace.
	HostNetns string
	// Logger receives debug and warning messages; nil discards them.
	Logger *slog.Logger
}

// Driver is the bridge driver. It holds no mutable state and is safe for
// concurrent use on different networks and endpoints.
type Driver struct {
	hostNetns string
	log       *slog.Logger
}

var (
	_ driver.Driver          = (*Driver)(nil)
	_ driver.OptionValidator = (*Driver)(nil)
	_ driver.Sweeper         = (*Driver)(nil)
)

// New returns a bridge driver.
func New(opts Options) *Driver {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{hostNetns: opts.HostNetns, log: log.With("driver", Type)}
}

// Type returns "bridge".
func (d *Driver) Type() string { return Type }

// Scope returns model.ScopeLocal.
func (d *Driver) Scope() string { return model.ScopeLocal }

// BridgeName is the name of n's bridge: the bridge name option if set, else
// "vx-" and the first 12 characters of the network ID.
func BridgeName(n model.Network) string {
	if name := n.Options[model.OptBridgeName]; name != "" {
		return name
	}
	id := n.ID
	if len(id) > 12 {
		id = id[:12]
	}
	return "vx-" + id
}

// HostVethName is the name of the host end of an endpoint's veth: "vxv" and
// 12 hex characters of a hash of the endpoint ID.
func HostVethName(endpointID string) string {
	sum := sha256.Sum256([]byte(endpointID))
	return "vxv" + hex.EncodeToString(sum[:6])
}

// tempPeerName is the name the sandbox end has between creation and the
// rename to ep.IfName.
func tempPeerName(endpointID string) string {
	sum := sha256.Sum256([]byte(endpointID))
	return "vxt" + hex.EncodeToString(sum[:6])
}

func netMark(networkID string) string { return netMarkPrefix + networkID }
func epMark(endpointID string) string { return epMarkPrefix + endpointID }

// ValidateOptions checks the -o options this driver understands. Unknown
// options are ignored, as Docker does.
func (d *Driver) ValidateOptions(opts map[string]string) error {
	_, err := parseOptions(opts)
	return err
}

// netOptions are a network's decoded driver options.
type netOptions struct {
	bridgeName string // "" = derived from the ID
	mtu        int    // 0 = not given
}

func parseOptions(opts map[string]string) (netOptions, error) {
	var o netOptions
	if name, ok := opts[model.OptBridgeName]; ok {
		if err := validIfName(name); err != nil {
			return o, fmt.Errorf("bridge: option %s: %w", model.OptBridgeName, err)
		}
		o.bridgeName = name
	}
	if s, ok := opts[model.OptMTU]; ok {
		mtu, err := strconv.Atoi(s)
		if err != nil || mtu < 68 || mtu > 65535 {
			return o, fmt.Errorf("bridge: option %s: %q is not an integer in 68..65535: %w", model.OptMTU, s, driver.ErrInvalid)
		}
		o.mtu = mtu
	}
	for _, k := range []string{model.OptICC, model.OptMasquerade, model.OptDefaultBridge} {
		if s, ok := opts[k]; ok {
			if _, err := strconv.ParseBool(s); err != nil {
				return o, fmt.Errorf("bridge: option %s: %q is not a boolean: %w", k, s, driver.ErrInvalid)
			}
		}
	}
	return o, nil
}

// validIfName applies the kernel's rules for interface names; the error
// wraps driver.ErrInvalid.
func validIfName(name string) error {
	if err := driver.CheckIfName(name); err != nil {
		return fmt.Errorf("%v: %w", err, driver.ErrInvalid)
	}
	return nil
}

func mtuOf(o netOptions) int {
	if o.mtu > 0 {
		return o.mtu
	}
	return DefaultMTU
}

// hostHandle opens a netlink handle in the host namespace. The caller
// closes it.
func (d *Driver) hostHandle() (*netlink.Handle, error) {
	if d.hostNetns == "" {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("bridge: open netlink: %w", err)
		}
		return h, nil
	}
	return handleAt(d.hostNetns)
}

func handleAt(path string) (*netlink.Handle, error) {
	ns, err := vnetns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("bridge: open netns %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("bridge: open netlink in %s: %w", path, err)
	}
	return h, nil
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV)
}

// linkByName returns the link or nil if there is none.
func linkByName(h *netlink.Handle, name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return l, nil
}
