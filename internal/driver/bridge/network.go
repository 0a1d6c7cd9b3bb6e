package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/netns"
)

// CreateNetwork ensures n's bridge exists with its MTU and gateway
// addresses and is up, and that the host forwards IPv4. A link with the
// bridge's name that is not a bridge, or that carries another network's
// mark, is an error. An unmarked bridge of that name (a user's, named with
// com.docker.network.bridge.name) is used as it is and stays unmarked.
func (d *Driver) CreateNetwork(ctx context.Context, n model.Network) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o, err := parseOptions(n.Options)
	if err != nil {
		return err
	}
	name := BridgeName(n)
	if err := validIfName(name); err != nil {
		return fmt.Errorf("bridge: create network %s: %w", n.ID, err)
	}
	h, err := d.hostHandle()
	if err != nil {
		return err
	}
	defer h.Close()

	br, err := d.ensureBridge(h, n, name, o)
	if err != nil {
		return fmt.Errorf("bridge: create network %s: %w", n.ID, err)
	}
	v6 := false
	for _, c := range n.IPAM {
		if !c.Gateway.IsValid() || !c.Subnet.IsValid() {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{
			IP:   c.Gateway.AsSlice(),
			Mask: net.CIDRMask(c.Subnet.Bits(), c.Gateway.BitLen()),
		}}
		if c.Gateway.Is6() {
			// The gateway is ours alone: no duplicate address detection,
			// which would keep it tentative (unusable) for a second.
			a.Flags, v6 = unix.IFA_F_NODAD, true
			if err := d.enableIPv6On(name); err != nil {
				return fmt.Errorf("bridge: create network %s: %w", n.ID, err)
			}
		}
		if err := h.AddrReplace(br, a); err != nil {
			return fmt.Errorf("bridge: create network %s: add gateway %s to %s: %w", n.ID, a.IPNet, name, err)
		}
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge: create network %s: set %s up: %w", n.ID, name, err)
	}
	if err := d.enableForwarding(ipForwardPath); err != nil {
		return fmt.Errorf("bridge: create network %s: %w", n.ID, err)
	}
	if v6 {
		if err := d.enableForwarding(ip6ForwardPath); err != nil {
			return fmt.Errorf("bridge: create network %s: %w", n.ID, err)
		}
	}
	d.log.Debug("network ready", "network", n.ID, "bridge", name)
	return nil
}

// ensureBridge finds or creates the bridge and sets its MTU.
func (d *Driver) ensureBridge(h *netlink.Handle, n model.Network, name string, o netOptions) (netlink.Link, error) {
	mark := netMark(n.ID)
	l, err := linkByName(h, name)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	made := l == nil
	if made {
		nb := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
		nb.Name, nb.MTU, nb.Alias, nb.HardwareAddr = name, mtuOf(o), mark, bridgeMAC(n.ID)
		err := h.LinkAdd(nb)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("add bridge %s: %w", name, err)
		}
		if l, err = h.LinkByName(name); err != nil {
			return nil, fmt.Errorf("look up %s: %w", name, err)
		}
		// Created by us (or raced with another call for the same
		// network): mark it unless somebody else's object won the race.
		if l.Attrs().Alias == "" && l.Type() == "bridge" {
			if err := h.LinkSetAlias(l, mark); err != nil {
				return nil, fmt.Errorf("mark %s: %w", name, err)
			}
			l.Attrs().Alias = mark
		}
	}
	if l.Type() != "bridge" {
		return nil, fmt.Errorf("link %s exists and is a %s, not a bridge: %w", name, l.Type(), errConflict)
	}
	alias := l.Attrs().Alias
	owned := alias == mark
	if !owned && strings.HasPrefix(alias, markPrefix) {
		return nil, fmt.Errorf("bridge %s belongs to another object (%s): %w", name, alias, errConflict)
	}
	want := mtuOf(o)
	if !owned && o.mtu == 0 {
		want = 0 // a user's bridge keeps its MTU unless the option says otherwise
	}
	if want != 0 && l.Attrs().MTU != want {
		if err := h.LinkSetMTU(l, want); err != nil {
			return nil, fmt.Errorf("set mtu of %s to %d: %w", name, want, err)
		}
	}
	if !owned {
		d.log.Info("using existing unmarked bridge", "network", n.ID, "bridge", name)
	} else if mac := l.Attrs().HardwareAddr; !made && len(mac) == 6 {
		// Setting the address it has pins it: a bridge made without one
		// (by an older vxnet) would otherwise keep taking the lowest
		// address of its ports (see bridgeMAC).
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return nil, fmt.Errorf("pin the MAC address of %s: %w", name, err)
		}
	}
	return l, nil
}

// bridgeMAC is the fixed MAC address of network netID's bridge: locally
// administered, unicast, derived from the ID. A bridge the kernel made
// without an address takes the lowest MAC of its ports and changes it as
// ports come and go. Each change breaks, until their neighbour entries
// expire (up to a minute), the way out of the containers that have the
// gateway's old MAC cached: a container joining the network could cut
// the others off. Docker's bridge driver sets the address for the same
// reason.
func bridgeMAC(netID string) net.HardwareAddr { return model.DerivedMAC("vxnet bridge " + netID) }

// errConflict explains why an existing object is not ours to use. It is
// not exported: callers have nothing to branch on, a user has to rename or
// remove the link.
var errConflict = errors.New("name in use")

// DeleteNetwork deletes n's bridge if it carries n's mark. A missing bridge
// or one without n's mark (a user's) is left alone and is success.
func (d *Driver) DeleteNetwork(ctx context.Context, n model.Network) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name := BridgeName(n)
	h, err := d.hostHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := linkByName(h, name)
	if err != nil {
		return fmt.Errorf("bridge: delete network %s: look up %s: %w", n.ID, name, err)
	}
	if l == nil {
		return nil
	}
	if l.Attrs().Alias != netMark(n.ID) || l.Type() != "bridge" {
		d.log.Info("leaving bridge without our mark", "network", n.ID, "bridge", name, "alias", l.Attrs().Alias)
		return nil
	}
	if err := h.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("bridge: delete network %s: delete %s: %w", n.ID, name, err)
	}
	return nil
}

const (
	ipForwardPath  = "/proc/sys/net/ipv4/ip_forward"
	ip6ForwardPath = "/proc/sys/net/ipv6/conf/all/forwarding"
)

// enableForwarding sets net.ipv4.ip_forward=1 (or, for an IPv6 network,
// net.ipv6.conf.all.forwarding=1) in the host namespace. /proc/sys/net
// shows the namespace of the thread that opens the file, so for a pinned
// host namespace this runs inside it via netns.Do.
func (d *Driver) enableForwarding(path string) error {
	return d.sysctlOn(path, "1")
}

// enableIPv6On clears disable_ipv6 on the bridge (a host booted with IPv6
// disabled by default would refuse the gateway address).
func (d *Driver) enableIPv6On(name string) error {
	return d.sysctlOn("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", "0")
}

// sysctlOn writes v to path in the host namespace unless it holds v.
func (d *Driver) sysctlOn(path, v string) error {
	set := func() error {
		b, err := os.ReadFile(path)
		if err == nil && strings.TrimSpace(string(b)) == v {
			return nil
		}
		if err := os.WriteFile(path, []byte(v+"\n"), 0o644); err != nil {
			return fmt.Errorf("set %s to %s: %w", path, v, err)
		}
		return nil
	}
	if d.hostNetns == "" {
		return set()
	}
	return netns.Do(d.hostNetns, set)
}
