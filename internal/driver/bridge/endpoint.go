package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
)

// Join plumbs ep into the sandbox: a veth pair whose host end is a port of
// n's bridge and whose other end is ep.IfName in the sandbox, with ep's MAC,
// MTU (0 = the network's) and address, up, and the default route via
// ep.Gateway if ji.DefaultRoute. Joining again re-ensures all of it; a
// stale veth is replaced. A failed Join leaves no veth behind.
func (d *Driver) Join(ctx context.Context, n model.Network, ep model.Endpoint, ji driver.JoinInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.join(n, ep, ji); err != nil {
		return fmt.Errorf("bridge: join endpoint %s to network %s: %w", ep.ID, n.ID, err)
	}
	d.log.Debug("endpoint joined", "network", n.ID, "endpoint", ep.ID, "sandbox", ji.Sandbox.ID, "ifname", ep.IfName)
	return nil
}

func (d *Driver) join(n model.Network, ep model.Endpoint, ji driver.JoinInfo) (err error) {
	sb := ji.Sandbox
	if err := driver.CheckJoin(sb, ep); err != nil {
		return err
	}
	if err := validIfName(ep.IfName); err != nil {
		return err
	}
	o, err := parseOptions(n.Options)
	if err != nil {
		return err
	}
	mtu := ep.MTU
	if mtu == 0 {
		mtu = mtuOf(o)
	}

	hh, err := d.hostHandle()
	if err != nil {
		return err
	}
	defer hh.Close()
	brName := BridgeName(n)
	br, err := hh.LinkByName(brName)
	if err != nil {
		return fmt.Errorf("look up bridge %s: %w", brName, err)
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

	hostName := HostVethName(ep.ID)
	mark := epMark(ep.ID)
	hv, err := linkByName(hh, hostName)
	if err != nil {
		return fmt.Errorf("look up %s: %w", hostName, err)
	}
	if hv != nil {
		if a := hv.Attrs().Alias; a != mark && a != "" {
			return fmt.Errorf("link %s belongs to another object (%s): %w", hostName, a, errConflict)
		}
		if !d.pairIntact(hh, sh, sbNs, hv, ep.IfName) {
			d.log.Info("replacing stale veth", "endpoint", ep.ID, "veth", hostName)
			if err := hh.LinkDel(hv); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete stale %s: %w", hostName, err)
			}
			hv = nil
		}
	}
	if hv == nil {
		if hv, err = d.createPair(hh, sh, sbNs, ep, mtu); err != nil {
			return err
		}
		// From here on a failure removes the pair again.
		defer func() {
			if err != nil {
				if derr := hh.LinkDel(hv); derr != nil && !isNotFound(derr) {
					err = errors.Join(err, fmt.Errorf("clean up %s: %w", hostName, derr))
				}
			}
		}()
	}

	// Host end: marked, a port of the bridge, MTU, up.
	if hv.Attrs().Alias != mark {
		if err := hh.LinkSetAlias(hv, mark); err != nil {
			return fmt.Errorf("mark %s: %w", hostName, err)
		}
	}
	if hv.Attrs().MasterIndex != br.Attrs().Index {
		if err := hh.LinkSetMaster(hv, br); err != nil {
			return fmt.Errorf("attach %s to %s: %w", hostName, brName, err)
		}
	}
	if hv.Attrs().MTU != mtu {
		if err := hh.LinkSetMTU(hv, mtu); err != nil {
			return fmt.Errorf("set mtu of %s: %w", hostName, err)
		}
	}
	if err := hh.LinkSetUp(hv); err != nil {
		return fmt.Errorf("set %s up: %w", hostName, err)
	}
	if err := d.configureSandboxSide(sh, ep, mtu, ji.DefaultRoute); err != nil {
		return err
	}
	if ep.Addr6.IsValid() {
		if err := driver.AnnounceIPv6(sb.NetnsPath, ep); err != nil {
			// Peers learn the address at their next neighbour
			// solicitation; worth a warning, not a failed join.
			d.log.Warn("unsolicited neighbour advertisement", "endpoint", ep.ID, "addr", ep.Addr6, "err", err)
		}
	}
	return nil
}

// pairIntact reports whether hv's peer is ifName in the sandbox.
func (d *Driver) pairIntact(hh, sh *netlink.Handle, sbNs vnetns.NsHandle, hv netlink.Link, ifName string) bool {
	if hv.Type() != "veth" {
		return false
	}
	pl, err := linkByName(sh, ifName)
	if err != nil || pl == nil || pl.Type() != "veth" {
		return false
	}
	// IFLA_LINK of each end is the other end's index (in its namespace).
	if pl.Attrs().ParentIndex != hv.Attrs().Index || hv.Attrs().ParentIndex != pl.Attrs().Index {
		return false
	}
	// And the host end's peer namespace is the sandbox.
	if id, err := hh.GetNetNsIdByFd(int(sbNs)); err == nil && id >= 0 && hv.Attrs().NetNsID != id {
		return false
	}
	return true
}

// createPair makes the veth pair with the peer created directly inside the
// sandbox under a temporary name, then renames the peer to ep.IfName. On
// error nothing is left.
func (d *Driver) createPair(hh, sh *netlink.Handle, sbNs vnetns.NsHandle, ep model.Endpoint, mtu int) (netlink.Link, error) {
	hostName, tmp := HostVethName(ep.ID), tempPeerName(ep.ID)
	if l, err := linkByName(sh, ep.IfName); err != nil {
		return nil, fmt.Errorf("look up %s in sandbox: %w", ep.IfName, err)
	} else if l != nil {
		return nil, fmt.Errorf("interface %s already exists in the sandbox: %w", ep.IfName, errConflict)
	}
	// A leftover with our temporary name can only be ours: remove it.
	if l, err := linkByName(sh, tmp); err == nil && l != nil && l.Type() == "veth" {
		_ = sh.LinkDel(l)
	}
	v := &netlink.Veth{
		LinkAttrs:        netlink.NewLinkAttrs(),
		PeerName:         tmp,
		PeerNamespace:    netlink.NsFd(sbNs),
		PeerHardwareAddr: ep.MAC,
		PeerMTU:          uint32(mtu),
	}
	v.Name, v.MTU, v.Alias = hostName, mtu, epMark(ep.ID)
	if err := hh.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("add veth %s: %w", hostName, err)
	}
	hv, err := hh.LinkByName(hostName)
	if err == nil {
		var pl netlink.Link
		if pl, err = sh.LinkByName(tmp); err == nil {
			err = sh.LinkSetName(pl, ep.IfName)
		}
		if err == nil {
			return hv, nil
		}
		err = fmt.Errorf("rename %s to %s in sandbox: %w", tmp, ep.IfName, err)
	}
	if derr := hh.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName}}); derr != nil && !isNotFound(derr) {
		err = errors.Join(err, fmt.Errorf("clean up %s: %w", hostName, derr))
	}
	return nil, err
}

// configureSandboxSide ensures MAC, MTU, address, up and the default route
// of the interface inside the sandbox.
func (d *Driver) configureSandboxSide(sh *netlink.Handle, ep model.Endpoint, mtu int, defaultRoute bool) error {
	pl, err := sh.LinkByName(ep.IfName)
	if err != nil {
		return fmt.Errorf("look up %s in sandbox: %w", ep.IfName, err)
	}
	if pl.Attrs().HardwareAddr.String() != ep.MAC.String() {
		if err := sh.LinkSetHardwareAddr(pl, ep.MAC); err != nil {
			return fmt.Errorf("set MAC of %s: %w", ep.IfName, err)
		}
	}
	if pl.Attrs().MTU != mtu {
		if err := sh.LinkSetMTU(pl, mtu); err != nil {
			return fmt.Errorf("set mtu of %s: %w", ep.IfName, err)
		}
	}
	if ep.Addr.IsValid() {
		if err := ensureOnlyAddr(sh, pl, ep.Addr); err != nil {
			return fmt.Errorf("address %s on %s: %w", ep.Addr, ep.IfName, err)
		}
	}
	if ep.Addr6.IsValid() {
		if err := ensureOnlyAddr(sh, pl, ep.Addr6); err != nil {
			return fmt.Errorf("address %s on %s: %w", ep.Addr6, ep.IfName, err)
		}
	} else if err := dropIPv6(sh, pl); err != nil {
		return fmt.Errorf("remove IPv6 from %s: %w", ep.IfName, err)
	}
	if err := addLinkLocal(sh, pl, ep); err != nil {
		return err
	}
	if err := sh.LinkSetUp(pl); err != nil {
		return fmt.Errorf("set %s up: %w", ep.IfName, err)
	}
	if defaultRoute && ep.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: pl.Attrs().Index, Gw: ep.Gateway.AsSlice()}
		if err := sh.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", ep.Gateway, err)
		}
	}
	if defaultRoute && ep.Addr6.IsValid() && ep.Gateway6.IsValid() {
		r := &netlink.Route{LinkIndex: pl.Attrs().Index, Gw: ep.Gateway6.AsSlice(), Family: netlink.FAMILY_V6,
			Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}}
		if err := sh.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", ep.Gateway6, err)
		}
	}
	return nil
}

// dropIPv6 removes the global IPv6 addresses of l and the IPv6 default
// route through it: an endpoint that had IPv6 and has no more (the gateway
// bridge interface of a container that left its last overlay network with
// IPv6). Link-local addresses stay. An interface that never had IPv6 costs
// one address dump.
func dropIPv6(h *netlink.Handle, l netlink.Link) error {
	have, err := h.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return err
	}
	var global []netlink.Addr
	for _, a := range have {
		if !a.IP.IsLinkLocalUnicast() {
			global = append(global, a)
		}
	}
	if len(global) == 0 {
		return nil
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{LinkIndex: l.Attrs().Index}, netlink.RT_FILTER_OIF)
	if err != nil {
		return err
	}
	for i := range routes {
		if d := routes[i].Dst; d != nil {
			if ones, _ := d.Mask.Size(); ones != 0 || !d.IP.IsUnspecified() {
				continue // not the default route
			}
		}
		if err := h.RouteDel(&routes[i]); err != nil && !isNotFound(err) && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("default route via %s: %w", routes[i].Gw, err)
		}
	}
	for i := range global {
		if err := h.AddrDel(l, &global[i]); err != nil && !isNotFound(err) {
			return fmt.Errorf("address %s: %w", global[i].IPNet, err)
		}
	}
	return nil
}

// addLinkLocal puts the endpoint's requested link-local addresses on l
// (ensureOnlyAddr keeps link-local addresses).
func addLinkLocal(h *netlink.Handle, l netlink.Link, ep model.Endpoint) error {
	for _, p := range driver.LinkLocalPrefixes(ep) {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if err := h.AddrReplace(l, a); err != nil {
			return fmt.Errorf("link-local address %s on %s: %w", p, ep.IfName, err)
		}
	}
	return nil
}

// ensureOnlyAddr puts addr on l and removes other global addresses of the
// same family (a previous address of a re-joined endpoint). Link-local
// addresses the kernel made are kept.
func ensureOnlyAddr(h *netlink.Handle, l netlink.Link, addr netip.Prefix) error {
	family := netlink.FAMILY_V4
	if addr.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	want := &netlink.Addr{IPNet: &net.IPNet{
		IP:   addr.Addr().AsSlice(),
		Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen()),
	}}
	if family == netlink.FAMILY_V6 {
		// The address is handed out by IPAM: no duplicate address
		// detection (the address would stay tentative for a second).
		want.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrReplace(l, want); err != nil {
		return err
	}
	have, err := h.AddrList(l, family)
	if err != nil {
		return err
	}
	for i := range have {
		a := have[i]
		if a.IPNet.String() == want.IPNet.String() || a.IP.IsLinkLocalUnicast() {
			continue
		}
		if err := h.AddrDel(l, &a); err != nil && !isNotFound(err) {
			return fmt.Errorf("remove old address %s: %w", a.IPNet, err)
		}
	}
	return nil
}

// Leave deletes ep's host veth; its peer in the sandbox dies with it. A
// missing veth is success.
func (d *Driver) Leave(ctx context.Context, n model.Network, ep model.Endpoint, sb model.Sandbox) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	hh, err := d.hostHandle()
	if err != nil {
		return err
	}
	defer hh.Close()
	name := HostVethName(ep.ID)
	hv, err := linkByName(hh, name)
	if err != nil {
		return fmt.Errorf("bridge: leave endpoint %s: look up %s: %w", ep.ID, name, err)
	}
	if hv == nil {
		return nil
	}
	// The name is derived from the endpoint ID; an empty alias is a veth
	// of ours whose marking did not happen.
	if a := hv.Attrs().Alias; a != epMark(ep.ID) && (a != "" || hv.Type() != "veth") {
		return fmt.Errorf("bridge: leave endpoint %s: link %s belongs to another object (%q): %w", ep.ID, name, a, errConflict)
	}
	if err := hh.LinkDel(hv); err != nil && !isNotFound(err) {
		return fmt.Errorf("bridge: leave endpoint %s: delete %s: %w", ep.ID, name, err)
	}
	d.log.Debug("endpoint left", "network", n.ID, "endpoint", ep.ID)
	return nil
}

// Sweep deletes bridges and veths in the host namespace whose vxnet mark
// names a network or endpoint not in the lists. Links without a vxnet mark
// are never touched. It keeps going past failures and returns them joined.
func (d *Driver) Sweep(ctx context.Context, networks []model.Network, endpoints []model.Endpoint) error {
	hh, err := d.hostHandle()
	if err != nil {
		return err
	}
	defer hh.Close()
	links, err := hh.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("bridge: sweep: list links: %w", err)
	}
	knownNet := make(map[string]bool, len(networks))
	for _, n := range networks {
		knownNet[n.ID] = true
	}
	knownEp := make(map[string]bool, len(endpoints))
	for _, ep := range endpoints {
		knownEp[ep.ID] = true
	}
	var errs []error
	for _, l := range links {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		alias := l.Attrs().Alias
		var orphan bool
		switch {
		case l.Type() == "bridge" && strings.HasPrefix(alias, netMarkPrefix):
			orphan = !knownNet[strings.TrimPrefix(alias, netMarkPrefix)]
		case l.Type() == "veth" && strings.HasPrefix(alias, epMarkPrefix):
			orphan = !knownEp[strings.TrimPrefix(alias, epMarkPrefix)]
		}
		if !orphan {
			continue
		}
		if err := hh.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("bridge: sweep: delete %s (%s): %w", l.Attrs().Name, alias, err))
			continue
		}
		d.log.Info("swept leftover link", "link", l.Attrs().Name, "mark", alias)
	}
	return errors.Join(errs...)
}
