// Package macvlan is vxnet's macvlan driver: containers get an interface of
// their own on a host interface's segment (bridge mode), with their own MAC
// and an address from the network's subnet, so machines on that segment
// reach them directly, without NAT or a host bridge.
//
// # Kernel objects it owns
//
// Per network, in the host namespace, at most one object, and only when the
// network needs it:
//
//	parent=eth0        nothing: eth0 is the user's and is never changed.
//	parent=eth0.10     the 802.1q sub-interface eth0.10 of eth0 (VLAN 10), up,
//	                   when it does not exist yet. Alias "vxnet:macvlan:<network
//	                   id>"; it is deleted with the network. A sub-interface
//	                   that existed before (no alias, or another object's) is
//	                   used as it is and never deleted.
//	--internal, no     vxmv<10 hex of the network ID>: a Linux bridge without
//	parent             ports and without addresses, up, as the macvlans' parent,
//	                   so containers of the network reach each other and nothing
//	                   else. (Docker uses a dummy interface; a bridge works on
//	                   kernels without the dummy module, as this project's test
//	                   kernel is.) Alias "vxnet:macvlan:<network id>".
//
// Per endpoint, in the sandbox namespace only: a macvlan link (mode bridge)
// on the parent, created directly inside the sandbox (IFLA_NET_NS_FD) and
// named ep.IfName, with the endpoint's MAC, address, MTU (the parent's unless
// given) and the default route via the subnet's gateway when the engine asks
// for it. Nothing of an endpoint appears in the host namespace.
//
// # What macvlan cannot do
//
// The host cannot reach its own macvlan containers through the parent (the
// kernel does not loop macvlan traffic back to the lower device); other
// machines on the segment can. Published ports are refused on macvlan
// networks (there is no host address in the path to publish on). Only bridge
// mode is implemented; -o macvlan_mode=private|vepa|passthru is refused, as is
// any option this driver does not know.
//
// # Failure behaviour
//
// Every method converges. A Join finding an interface named ep.IfName that is
// not a macvlan on the right parent deletes it and starts over; a failed Join
// deletes the link it made. Leave deletes the link (a missing link or sandbox
// is success). Sweep deletes marked sub-interfaces and parent bridges of
// networks the engine does not know. A kernel without 802.1q support makes
// CreateNetwork fail with a message naming the module, leaving nothing behind.
package macvlan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/netns"
)

// Type is the driver name.
const Type = "macvlan"

// Option names, as Docker's.
const (
	OptParent = "parent"
	OptMode   = "macvlan_mode"
)

const markPrefix = "vxnet:macvlan:"

// Options configure the driver.
type Options struct {
	// HostNetns is the namespace holding the parent interfaces ("" = the
	// daemon's own).
	HostNetns string
	Logger    *slog.Logger
}

// Driver is the macvlan driver. It keeps no state.
type Driver struct {
	hostNetns string
	log       *slog.Logger
}

var (
	_ driver.Driver          = (*Driver)(nil)
	_ driver.OptionValidator = (*Driver)(nil)
	_ driver.Sweeper         = (*Driver)(nil)
)

// New returns a macvlan driver.
func New(opts Options) *Driver {
	d := &Driver{hostNetns: opts.HostNetns, log: opts.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	return d
}

func (d *Driver) Type() string  { return Type }
func (d *Driver) Scope() string { return model.ScopeLocal }

// netOptions are a network's decoded options.
type netOptions struct {
	parent string // "" with internal: the isolated parent bridge
	vlan   int    // 802.1q ID when parent is BASE.ID, else 0
	base   string // BASE of BASE.ID
	mtu    int    // 0: the parent's
}

// invalidError is a refusal of the user's request: it reads as its message
// alone and unwraps to driver.ErrInvalid (HTTP 400).
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }
func (e *invalidError) Unwrap() error { return driver.ErrInvalid }

func invalid(format string, args ...any) error {
	return &invalidError{msg: "macvlan: " + fmt.Sprintf(format, args...)}
}

// ValidateOptions checks -o options at network create. The --internal flag
// is checked in CreateNetwork (it is not an option).
func (d *Driver) ValidateOptions(opts map[string]string) error {
	_, err := parseOptions(opts)
	return err
}

func parseOptions(opts map[string]string) (netOptions, error) {
	var o netOptions
	for k, v := range opts {
		switch k {
		case OptParent:
			if err := driver.CheckIfName(v); err != nil {
				return o, invalid("option parent: %v", err)
			}
			o.parent = v
			if i := strings.LastIndexByte(v, '.'); i > 0 {
				if id, err := strconv.Atoi(v[i+1:]); err == nil {
					if id < 1 || id > 4094 {
						return o, invalid("option parent %q: VLAN ID %d is not in 1..4094", v, id)
					}
					o.vlan, o.base = id, v[:i]
				}
			}
		case OptMode:
			if v != "" && v != "bridge" {
				return o, invalid("macvlan_mode %q is not supported: vxnet implements bridge mode only", v)
			}
		case model.OptMTU:
			mtu, err := strconv.Atoi(v)
			if err != nil || mtu < 68 || mtu > 65535 {
				return o, invalid("option %s: %q is not an integer in 68..65535", k, v)
			}
			o.mtu = mtu
		default:
			return o, invalid("unknown option %q (macvlan knows parent, macvlan_mode and %s)", k, model.OptMTU)
		}
	}
	return o, nil
}

// IsolatedParentName is the parent bridge of an --internal network without
// parent.
func IsolatedParentName(networkID string) string {
	sum := sha256.Sum256([]byte(networkID))
	return "vxmv" + hex.EncodeToString(sum[:5])
}

func mark(networkID string) string { return markPrefix + networkID }

// parentName is the interface the network's macvlans hang off.
func parentName(n model.Network, o netOptions) string {
	if o.parent == "" {
		return IsolatedParentName(n.ID)
	}
	return o.parent
}

// hostHandle opens a netlink handle in the host namespace.
func (d *Driver) hostHandle() (*netlink.Handle, error) {
	if d.hostNetns == "" {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("macvlan: open netlink: %w", err)
		}
		return h, nil
	}
	h, err := netns.Handle(d.hostNetns)
	if err != nil {
		return nil, fmt.Errorf("macvlan: %w", err)
	}
	return h, nil
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// linkByName is LinkByName with "not found" as (nil, nil).
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

// lookUpParent returns the name of n's parent interface and the link (nil
// when there is none).
func lookUpParent(h *netlink.Handle, n model.Network, o netOptions) (string, netlink.Link, error) {
	name := parentName(n, o)
	l, err := linkByName(h, name)
	if err != nil {
		return name, nil, fmt.Errorf("macvlan: look up parent %s: %w", name, err)
	}
	return name, l, nil
}

// unsupportedKind reports the kernel's answer to an unknown link type.
func unsupportedKind(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) ||
		strings.Contains(err.Error(), "not supported") || strings.Contains(err.Error(), "Unknown device type")
}

// MTU is the container MTU on n: the option, else the parent's.
func (d *Driver) MTU(n model.Network) (int, error) {
	o, err := parseOptions(n.Options)
	if err != nil {
		return 0, err
	}
	if o.mtu > 0 {
		return o.mtu, nil
	}
	h, err := d.hostHandle()
	if err != nil {
		return 0, err
	}
	defer h.Close()
	l, err := h.LinkByName(parentName(n, o))
	if err != nil {
		if o.vlan > 0 {
			// Not made yet: it will have its base's MTU.
			if b, berr := h.LinkByName(o.base); berr == nil {
				return b.Attrs().MTU, nil
			}
		}
		return 0, fmt.Errorf("macvlan: parent %s: %w", parentName(n, o), err)
	}
	return l.Attrs().MTU, nil
}

// checkNetwork applies the rules that need the whole network value.
func checkNetwork(n model.Network, o netOptions) error {
	if o.parent == "" && !n.Internal {
		return invalid("-o parent=INTERFACE is required (or --internal for a network of containers that reach only each other; vxnet makes no dummy parent)")
	}
	return nil
}

// CreateNetwork ensures the network's parent: nothing for a host interface
// (it must exist), the 802.1q sub-interface, or the isolated bridge.
func (d *Driver) CreateNetwork(ctx context.Context, n model.Network) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o, err := parseOptions(n.Options)
	if err != nil {
		return err
	}
	if err := checkNetwork(n, o); err != nil {
		return err
	}
	h, err := d.hostHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	name, l, err := lookUpParent(h, n, o)
	if err != nil {
		return err
	}
	if l != nil {
		if a := l.Attrs().Alias; strings.HasPrefix(a, markPrefix) && a != mark(n.ID) {
			return invalid("network %s is already using parent interface %s", strings.TrimPrefix(a, markPrefix), name)
		}
		if l.Attrs().Alias == mark(n.ID) && l.Attrs().Flags&unix.IFF_UP == 0 {
			if err := h.LinkSetUp(l); err != nil {
				return fmt.Errorf("macvlan: set %s up: %w", name, err)
			}
		}
		return nil
	}
	switch {
	case o.parent == "":
		err = d.createLink(h, &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}, n.ID)
	case o.vlan > 0:
		base, berr := h.LinkByName(o.base)
		if berr != nil {
			return invalid("parent %s: interface %s does not exist", name, o.base)
		}
		err = d.createLink(h, &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: base.Attrs().Index}, VlanId: o.vlan}, n.ID)
		if err != nil && unsupportedKind(err) {
			return invalid("cannot create the 802.1q sub-interface %s: the kernel has no 802.1q VLAN support (module 8021q)", name)
		}
	default:
		return invalid("parent interface %s does not exist", name)
	}
	if err != nil {
		return fmt.Errorf("macvlan: create parent %s: %w", name, err)
	}
	d.log.Info("parent interface created", "network", n.ID, "parent", name)
	return nil
}

// createLink adds l marked for network id and sets it up; a failure after
// the add deletes it again.
func (d *Driver) createLink(h *netlink.Handle, l netlink.Link, id string) error {
	if err := h.LinkAdd(l); err != nil {
		return err
	}
	err := h.LinkSetAlias(l, mark(id))
	if err == nil {
		err = h.LinkSetUp(l)
	}
	if err != nil {
		h.LinkDel(l)
	}
	return err
}

// DeleteNetwork removes the parent the driver made for n (never a parent it
// did not make).
func (d *Driver) DeleteNetwork(ctx context.Context, n model.Network) error {
	o, err := parseOptions(n.Options)
	if err != nil {
		return err
	}
	h, err := d.hostHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	name, l, err := lookUpParent(h, n, o)
	if err != nil {
		return err
	}
	if l == nil || l.Attrs().Alias != mark(n.ID) {
		return nil
	}
	if err := h.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("macvlan: delete parent %s: %w", name, err)
	}
	d.log.Info("parent interface removed", "network", n.ID, "parent", name)
	return nil
}

// Sweep deletes parents this driver made for networks that no longer exist.
func (d *Driver) Sweep(ctx context.Context, networks []model.Network, _ []model.Endpoint) error {
	h, err := d.hostHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("macvlan: sweep: list links: %w", err)
	}
	known := map[string]bool{}
	for _, n := range networks {
		known[n.ID] = true
	}
	var errs []error
	for _, l := range links {
		a := l.Attrs().Alias
		if !strings.HasPrefix(a, markPrefix) || known[strings.TrimPrefix(a, markPrefix)] {
			continue
		}
		if err := h.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("macvlan: sweep: delete %s: %w", l.Attrs().Name, err))
			continue
		}
		d.log.Info("swept leftover parent", "link", l.Attrs().Name, "mark", a)
	}
	return errors.Join(errs...)
}
