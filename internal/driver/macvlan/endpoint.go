package macvlan

import (
	"context"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
)

// Join plumbs ep into the sandbox as a macvlan of the network's parent.
func (d *Driver) Join(ctx context.Context, n model.Network, ep model.Endpoint, ji driver.JoinInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.join(n, ep, ji); err != nil {
		return fmt.Errorf("macvlan: join endpoint %s to network %s: %w", ep.ID, n.ID, err)
	}
	d.log.Debug("endpoint joined", "network", n.ID, "endpoint", ep.ID, "ifname", ep.IfName)
	return nil
}

func (d *Driver) join(n model.Network, ep model.Endpoint, ji driver.JoinInfo) (err error) {
	sb := ji.Sandbox
	if err := driver.CheckJoin(sb, ep); err != nil {
		return err
	}
	if err := driver.CheckIfName(ep.IfName); err != nil {
		return fmt.Errorf("%v: %w", err, driver.ErrInvalid)
	}
	o, err := parseOptions(n.Options)
	if err != nil {
		return err
	}
	hh, err := d.hostHandle()
	if err != nil {
		return err
	}
	defer hh.Close()
	pname := parentName(n, o)
	parent, err := hh.LinkByName(pname)
	if err != nil {
		return fmt.Errorf("parent %s: %w", pname, err)
	}
	mtu := ep.MTU
	if mtu == 0 || mtu > parent.Attrs().MTU {
		mtu = parent.Attrs().MTU
	}
	sbNs, err := vnetns.GetFromPath(sb.NetnsPath)
	if err != nil {
		return fmt.Errorf("open sandbox netns %s: %w", sb.NetnsPath, err)
	}
	defer sbNs.Close()
	sh, err := netlink.NewHandleAt(sbNs, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in sandbox %s: %w", sb.NetnsPath, err)
	}
	defer sh.Close()

	l, err := linkByName(sh, ep.IfName)
	if err != nil {
		return fmt.Errorf("look up %s in sandbox: %w", ep.IfName, err)
	}
	if l != nil && !d.intact(l, parent, ep) {
		d.log.Info("replacing stale interface", "endpoint", ep.ID, "ifname", ep.IfName)
		if err := sh.LinkDel(l); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete stale %s: %w", ep.IfName, err)
		}
		l = nil
	}
	if l == nil {
		mv := &netlink.Macvlan{
			LinkAttrs: netlink.LinkAttrs{Name: ep.IfName, ParentIndex: parent.Attrs().Index, MTU: mtu,
				HardwareAddr: ep.MAC, Namespace: netlink.NsFd(int(sbNs))},
			Mode: netlink.MACVLAN_MODE_BRIDGE,
		}
		if err := hh.LinkAdd(mv); err != nil {
			return fmt.Errorf("create macvlan %s on %s: %w", ep.IfName, pname, err)
		}
		if l, err = sh.LinkByName(ep.IfName); err != nil {
			return fmt.Errorf("find new %s in sandbox: %w", ep.IfName, err)
		}
		defer func() {
			if err != nil {
				sh.LinkDel(l)
			}
		}()
	}
	if l.Attrs().MTU != mtu {
		if err := sh.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set mtu of %s: %w", ep.IfName, err)
		}
	}
	want := &netlink.Addr{IPNet: &net.IPNet{IP: ep.Addr.Addr().AsSlice(),
		Mask: net.CIDRMask(ep.Addr.Bits(), ep.Addr.Addr().BitLen())}}
	if err := sh.AddrReplace(l, want); err != nil {
		return fmt.Errorf("address %s on %s: %w", ep.Addr, ep.IfName, err)
	}
	for _, p := range driver.LinkLocalPrefixes(ep) {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if err := sh.AddrReplace(l, a); err != nil {
			return fmt.Errorf("link-local address %s on %s: %w", p, ep.IfName, err)
		}
	}
	if err := sh.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", ep.IfName, err)
	}
	if ji.DefaultRoute && ep.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: ep.Gateway.AsSlice()}
		if err := sh.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", ep.Gateway, err)
		}
	}
	return nil
}

// intact: l is a bridge-mode macvlan of parent with ep's MAC.
func (d *Driver) intact(l netlink.Link, parent netlink.Link, ep model.Endpoint) bool {
	mv, ok := l.(*netlink.Macvlan)
	return ok && mv.Mode == netlink.MACVLAN_MODE_BRIDGE && l.Attrs().HardwareAddr.String() == ep.MAC.String() &&
		l.Attrs().ParentIndex == parent.Attrs().Index
}

// Leave deletes ep's interface from the sandbox; a missing sandbox or
// interface is success.
func (d *Driver) Leave(ctx context.Context, n model.Network, ep model.Endpoint, sb model.Sandbox) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if sb.NetnsPath == "" {
		return nil
	}
	sbNs, err := vnetns.GetFromPath(sb.NetnsPath)
	if err != nil {
		return nil // the sandbox is gone, and its interfaces with it
	}
	defer sbNs.Close()
	sh, err := netlink.NewHandleAt(sbNs, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("macvlan: leave endpoint %s: %w", ep.ID, err)
	}
	defer sh.Close()
	l, err := linkByName(sh, ep.IfName)
	if err != nil {
		return fmt.Errorf("macvlan: leave endpoint %s: %w", ep.ID, err)
	}
	if l == nil || l.Type() != "macvlan" {
		return nil
	}
	if err := sh.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("macvlan: leave endpoint %s: delete %s: %w", ep.ID, ep.IfName, err)
	}
	return nil
}
