package overlay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/netns"
)

const (
	bridgeName = "br0"
	vxlanName  = "vxlan0"
	// aliasPrefix marks every link this driver makes.
	aliasPrefix = "vxnet:ov:"
	// hostVethPrefix starts the names of the veth ends in the overlay namespace.
	hostVethPrefix = "ov"
)

func netAlias(netID string) string      { return aliasPrefix + netID }
func epAlias(netID, epID string) string { return aliasPrefix + netID + ":" + epID }
func tmpVxlanName(vni uint32) string    { return fmt.Sprintf("vxo%x", vni) }

// HostVethName is the name of ep's veth end in the overlay namespace (the
// engine may record it as ep.HostVeth; the driver derives it from ep.ID).
func HostVethName(ep model.Endpoint) string { return hostVethPrefix + short(ep.ID, 12) }

// bridgeMAC is a stable, locally administered unicast MAC for br0, distinct
// per host (the gateway address is the same on every host, its MAC must not
// be, or bridges would see their own address arrive over the tunnel).
func bridgeMAC(netID string, vtep netip.Addr) net.HardwareAddr {
	return model.DerivedMAC(netID + "|" + vtep.String())
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// hostHandle returns a netlink handle in the host (underlay) namespace.
func (d *Driver) hostHandle() (*netlink.Handle, error) {
	if d.opts.HostNetns == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("overlay: open host netlink handle: %w", err)
		}
		return h, nil
	}
	h, err := netns.Handle(d.opts.HostNetns)
	if err != nil {
		return nil, fmt.Errorf("overlay: open host netlink handle: %w", err)
	}
	return h, nil
}

// MTU returns the MTU of n's container interfaces: the network's
// com.docker.network.driver.mtu option, else the MTU of the host interface
// holding the VTEP address minus the VXLAN overhead (50 bytes over IPv4, 70
// over IPv6).
func (d *Driver) MTU(n model.Network) (int, error) {
	if v, ok := n.Options[model.OptMTU]; ok {
		return parseMTU(v)
	}
	under, err := d.underlayMTU()
	if err != nil {
		return 0, err
	}
	overhead := 50
	if d.opts.VTEP.Is6() {
		overhead = 70
	}
	return under - overhead, nil
}

func (d *Driver) underlayMTU() (int, error) {
	h, err := d.hostHandle()
	if err != nil {
		return 0, err
	}
	defer h.Close()
	// A dump that raced with an address change elsewhere in the host's
	// namespace comes back interrupted: ask again.
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 5; try++ {
		addrs, err = h.AddrList(nil, netlink.FAMILY_ALL)
	}
	if err != nil {
		return 0, fmt.Errorf("overlay: list host addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != d.opts.VTEP {
			continue
		}
		l, err := h.LinkByIndex(a.LinkIndex)
		if err != nil {
			return 0, fmt.Errorf("overlay: find underlay interface of %s: %w", d.opts.VTEP, err)
		}
		return l.Attrs().MTU, nil
	}
	return 0, fmt.Errorf("overlay: no host interface holds VTEP address %s", d.opts.VTEP)
}

// CreateNetwork checks n. The data plane is made on the first Join; if it
// exists already (daemon restart), it is checked and repaired in place.
func (d *Driver) CreateNetwork(ctx context.Context, n model.Network) error {
	if err := checkNetwork(n); err != nil {
		return err
	}
	if err := d.ValidateOptions(n.Options); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !netns.IsPinned(d.nsPath(n.ID)) {
		return nil
	}
	mtu, err := d.MTU(n)
	if err != nil {
		return err
	}
	return d.ensureNetwork(n, mtu)
}

// DeleteNetwork removes n's data plane on this host (namespace, bridge,
// VXLAN device and any veths left) and forgets its peers.
func (d *Driver) DeleteNetwork(ctx context.Context, n model.Network) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.peers.Forget(n.ID)
	return d.teardown(n.ID)
}

// ensureNetwork makes or repairs the overlay namespace with br0 and vxlan0.
func (d *Driver) ensureNetwork(n model.Network, mtu int) error {
	path := d.nsPath(n.ID)
	if err := netns.Create(path); err != nil {
		return fmt.Errorf("overlay: network %s: %w", short(n.ID, 12), err)
	}
	h, err := netns.Handle(path)
	if err != nil {
		return fmt.Errorf("overlay: network %s: %w", short(n.ID, 12), err)
	}
	defer h.Close()
	br, err := d.ensureBridge(h, n, mtu)
	if err != nil {
		return fmt.Errorf("overlay: network %s: %w", short(n.ID, 12), err)
	}
	if err := d.ensureVxlan(h, n, mtu, br); err != nil {
		return fmt.Errorf("overlay: network %s: %w", short(n.ID, 12), err)
	}
	return nil
}

func (d *Driver) ensureBridge(h *netlink.Handle, n model.Network, mtu int) (netlink.Link, error) {
	mac := bridgeMAC(n.ID, d.opts.VTEP)
	l, err := h.LinkByName(bridgeName)
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("find %s: %w", bridgeName, err)
	}
	if l == nil {
		off := false
		br := &netlink.Bridge{
			LinkAttrs:         netlink.LinkAttrs{Name: bridgeName, MTU: mtu, HardwareAddr: mac, TxQLen: -1},
			MulticastSnooping: &off,
		}
		if err := h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", bridgeName, err)
		}
		if l, err = h.LinkByName(bridgeName); err != nil {
			return nil, fmt.Errorf("find %s: %w", bridgeName, err)
		}
	}
	if l.Type() != "bridge" {
		return nil, fmt.Errorf("%s is a %s, not a bridge", bridgeName, l.Type())
	}
	a := l.Attrs()
	if a.Alias != netAlias(n.ID) {
		if err := h.LinkSetAlias(l, netAlias(n.ID)); err != nil {
			return nil, fmt.Errorf("mark %s: %w", bridgeName, err)
		}
	}
	if a.MTU != mtu {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("set %s mtu: %w", bridgeName, err)
		}
	}
	if a.HardwareAddr.String() != mac.String() {
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return nil, fmt.Errorf("set %s address: %w", bridgeName, err)
		}
	}
	if err := ensureAddrs(h, l, gatewayPrefixes(n)); err != nil {
		return nil, fmt.Errorf("%s: %w", bridgeName, err)
	}
	if a.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("set %s up: %w", bridgeName, err)
		}
	}
	return l, nil
}

// gatewayPrefixes are the gateway addresses of n's subnets with the
// subnets' prefix lengths.
func gatewayPrefixes(n model.Network) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range n.IPAM {
		if c.Gateway.IsValid() && c.Subnet.IsValid() {
			out = append(out, netip.PrefixFrom(c.Gateway.Unmap(), c.Subnet.Bits()))
		}
	}
	return out
}

// ensureAddrs adds the prefixes l lacks; it leaves other addresses alone.
func ensureAddrs(h *netlink.Handle, l netlink.Link, want []netip.Prefix) error {
	if len(want) == 0 {
		return nil
	}
	have, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, p := range want {
		found := false
		for _, a := range have {
			if a.IPNet == nil {
				continue
			}
			ip, ok := netip.AddrFromSlice(a.IP)
			ones, _ := a.Mask.Size()
			if ok && ip.Unmap() == p.Addr() && ones == p.Bits() {
				found = true
				break
			}
		}
		if found {
			continue
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() && !p.Addr().IsLinkLocalUnicast() {
			// Given out by IPAM (or the gateway, the same on every
			// host): no duplicate address detection, which would keep
			// it tentative for a second.
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add address %s: %w", p, err)
		}
	}
	return nil
}

func (d *Driver) ensureVxlan(h *netlink.Handle, n model.Network, mtu int, br netlink.Link) error {
	l, err := h.LinkByName(vxlanName)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("find %s: %w", vxlanName, err)
	}
	if l != nil && !d.vxlanCorrect(l, n) {
		d.log.Warn("recreating vxlan device with wrong settings", "network", short(n.ID, 12))
		if err := h.LinkDel(l); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete wrong %s: %w", vxlanName, err)
		}
		l = nil
	}
	if l == nil {
		if l, err = d.createVxlan(h, n, mtu); err != nil {
			return err
		}
	}
	a := l.Attrs()
	if a.Alias != netAlias(n.ID) {
		if err := h.LinkSetAlias(l, netAlias(n.ID)); err != nil {
			return fmt.Errorf("mark %s: %w", vxlanName, err)
		}
	}
	if a.MTU != mtu {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set %s mtu: %w", vxlanName, err)
		}
	}
	if a.MasterIndex != br.Attrs().Index {
		if err := h.LinkSetMasterByIndex(l, br.Attrs().Index); err != nil {
			return fmt.Errorf("attach %s to %s: %w", vxlanName, bridgeName, err)
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", vxlanName, err)
		}
	}
	return nil
}

func (d *Driver) vxlanCorrect(l netlink.Link, n model.Network) bool {
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return false
	}
	src, _ := netip.AddrFromSlice(vx.SrcAddr)
	return vx.VxlanId == int(n.VNI) && !vx.Learning && vx.Proxy && !vx.L2miss && !vx.L3miss &&
		vx.Port == d.opts.VXLANPort && src.Unmap() == d.opts.VTEP && (vx.Group == nil || vx.Group.IsUnspecified())
}

// createVxlan makes the VXLAN device in the host namespace (so its socket
// and route lookups use the underlay), moves it into the overlay namespace
// h is bound to and renames it vxlan0.
func (d *Driver) createVxlan(h *netlink.Handle, n model.Network, mtu int) (netlink.Link, error) {
	tmp := tmpVxlanName(n.VNI)
	// A device left under the temporary name in the overlay namespace
	// (crash between move and rename) is ours: remove it.
	if old, err := h.LinkByName(tmp); err == nil {
		if err := h.LinkDel(old); err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("delete leftover %s: %w", tmp, err)
		}
	}
	hh, err := d.hostHandle()
	if err != nil {
		return nil, err
	}
	defer hh.Close()
	if old, err := hh.LinkByName(tmp); err == nil {
		if !strings.HasPrefix(old.Attrs().Alias, aliasPrefix) {
			return nil, fmt.Errorf("host interface %s exists and is not vxnet's", tmp)
		}
		if err := hh.LinkDel(old); err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("delete leftover host %s: %w", tmp, err)
		}
	}
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: tmp, MTU: mtu, TxQLen: -1},
		VxlanId:   int(n.VNI),
		SrcAddr:   d.opts.VTEP.AsSlice(),
		Learning:  false,
		Proxy:     true,
		Port:      d.opts.VXLANPort,
	}
	if err := hh.LinkAdd(vx); err != nil {
		return nil, fmt.Errorf("create vxlan %s (VNI %d) in host namespace: %w", tmp, n.VNI, err)
	}
	hl, err := hh.LinkByName(tmp)
	if err == nil {
		err = hh.LinkSetAlias(hl, netAlias(n.ID))
	}
	if err == nil {
		var fd int
		fd, err = nsFd(d.nsPath(n.ID))
		if err == nil {
			err = hh.LinkSetNsFd(hl, fd)
			unix.Close(fd)
		}
	}
	if err != nil {
		if hl != nil {
			_ = hh.LinkDel(hl)
		} else {
			_ = hh.LinkDel(vx)
		}
		return nil, fmt.Errorf("move vxlan %s into overlay namespace: %w", tmp, err)
	}
	l, err := h.LinkByName(tmp)
	if err != nil {
		return nil, fmt.Errorf("find moved vxlan %s: %w", tmp, err)
	}
	if err := h.LinkSetName(l, vxlanName); err != nil {
		_ = h.LinkDel(l)
		return nil, fmt.Errorf("rename %s to %s: %w", tmp, vxlanName, err)
	}
	if l, err = h.LinkByName(vxlanName); err != nil {
		return nil, fmt.Errorf("find %s: %w", vxlanName, err)
	}
	return l, nil
}

func nsFd(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open namespace %s: %w", path, err)
	}
	return fd, nil
}

// Join plumbs ep: a veth whose host end is a port of br0 in the overlay
// namespace and whose other end is ep.IfName in the sandbox. Joining again
// keeps a complete, correct plumbing as it is and repairs a partial one.
func (d *Driver) Join(ctx context.Context, n model.Network, ep model.Endpoint, ji driver.JoinInfo) error {
	if err := checkNetwork(n); err != nil {
		return err
	}
	sbPath := ji.Sandbox.NetnsPath
	if sbPath == "" || ep.IfName == "" || !(ep.Addr.IsValid() || ep.Addr6.IsValid()) || len(ep.MAC) != 6 {
		return fmt.Errorf("overlay: join %s: need sandbox path, interface name, address and MAC: %w", short(ep.ID, 12), driver.ErrInvalid)
	}
	netMTU, err := d.MTU(n)
	if err != nil {
		return err
	}
	mtu := ep.MTU
	if mtu == 0 {
		mtu = netMTU
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.ensureNetwork(n, netMTU); err != nil {
		return err
	}
	if err := d.plumb(n, ep, ji, mtu); err != nil {
		return fmt.Errorf("overlay: join %s: %w", short(ep.ID, 12), err)
	}
	if ep.Addr6.IsValid() {
		// A re-used IPv6 address comes with another MAC: tell the
		// containers here and (through vxlan0) on the other hosts.
		if err := driver.AnnounceIPv6(ji.Sandbox.NetnsPath, ep); err != nil {
			d.log.Warn("unsolicited neighbour advertisement", "endpoint", short(ep.ID, 12), "addr", ep.Addr6, "err", err)
		}
	}
	return nil
}

func (d *Driver) plumb(n model.Network, ep model.Endpoint, ji driver.JoinInfo, mtu int) error {
	h, err := netns.Handle(d.nsPath(n.ID))
	if err != nil {
		return err
	}
	defer h.Close()
	sh, err := netns.Handle(ji.Sandbox.NetnsPath)
	if err != nil {
		return err
	}
	defer sh.Close()
	br, err := h.LinkByName(bridgeName)
	if err != nil {
		return fmt.Errorf("find %s: %w", bridgeName, err)
	}
	hostName := HostVethName(ep)
	alias := epAlias(n.ID, ep.ID)

	hostL, _ := h.LinkByName(hostName)
	sbL, _ := sh.LinkByName(ep.IfName)
	intact := hostL != nil && sbL != nil && sbL.Type() == "veth" &&
		sbL.Attrs().ParentIndex == hostL.Attrs().Index && hostL.Attrs().ParentIndex == sbL.Attrs().Index
	if !intact {
		if hostL != nil {
			if err := h.LinkDel(hostL); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete partial veth %s: %w", hostName, err)
			}
		}
		if sbL, _ = sh.LinkByName(ep.IfName); sbL != nil {
			if sbL.Attrs().Alias != alias {
				return fmt.Errorf("sandbox already has an interface %s", ep.IfName)
			}
			if err := sh.LinkDel(sbL); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete partial %s in sandbox: %w", ep.IfName, err)
			}
		}
		fd, err := nsFd(ji.Sandbox.NetnsPath)
		if err != nil {
			return err
		}
		veth := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: hostName, MTU: mtu, TxQLen: -1},
			PeerName:         ep.IfName,
			PeerHardwareAddr: ep.MAC,
			PeerNamespace:    netlink.NsFd(fd),
			PeerTxQLen:       -1,
		}
		err = h.LinkAdd(veth)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("create veth %s/%s: %w", hostName, ep.IfName, err)
		}
		if hostL, err = h.LinkByName(hostName); err != nil {
			return fmt.Errorf("find %s: %w", hostName, err)
		}
		if sbL, err = sh.LinkByName(ep.IfName); err != nil {
			return fmt.Errorf("find %s in sandbox: %w", ep.IfName, err)
		}
	}
	err = d.configurePorts(h, sh, br, hostL, sbL, n, ep, ji, mtu, alias)
	if err != nil && !intact {
		// Do not leave a half-made veth behind.
		_ = h.LinkDel(hostL)
	}
	return err
}

func (d *Driver) configurePorts(h, sh *netlink.Handle, br, hostL, sbL netlink.Link, n model.Network, ep model.Endpoint, ji driver.JoinInfo, mtu int, alias string) error {
	ha := hostL.Attrs()
	if ha.Alias != alias {
		if err := h.LinkSetAlias(hostL, alias); err != nil {
			return fmt.Errorf("mark %s: %w", ha.Name, err)
		}
	}
	if ha.MTU != mtu {
		if err := h.LinkSetMTU(hostL, mtu); err != nil {
			return fmt.Errorf("set %s mtu: %w", ha.Name, err)
		}
	}
	if ha.MasterIndex != br.Attrs().Index {
		if err := h.LinkSetMasterByIndex(hostL, br.Attrs().Index); err != nil {
			return fmt.Errorf("attach %s to %s: %w", ha.Name, bridgeName, err)
		}
	}
	if ha.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(hostL); err != nil {
			return fmt.Errorf("set %s up: %w", ha.Name, err)
		}
	}

	sa := sbL.Attrs()
	if sa.Alias != alias {
		if err := sh.LinkSetAlias(sbL, alias); err != nil {
			return fmt.Errorf("mark %s: %w", ep.IfName, err)
		}
	}
	if sa.MTU != mtu {
		if err := sh.LinkSetMTU(sbL, mtu); err != nil {
			return fmt.Errorf("set %s mtu: %w", ep.IfName, err)
		}
	}
	if sa.HardwareAddr.String() != ep.MAC.String() {
		if err := sh.LinkSetHardwareAddr(sbL, ep.MAC); err != nil {
			return fmt.Errorf("set %s address: %w", ep.IfName, err)
		}
	}
	var want []netip.Prefix
	if ep.Addr.IsValid() {
		want = append(want, ep.Addr)
	}
	if ep.Addr6.IsValid() {
		want = append(want, ep.Addr6)
	}
	if err := ensureAddrs(sh, sbL, append(want, driver.LinkLocalPrefixes(ep)...)); err != nil {
		return fmt.Errorf("%s: %w", ep.IfName, err)
	}
	if sa.Flags&net.FlagUp == 0 {
		if err := sh.LinkSetUp(sbL); err != nil {
			return fmt.Errorf("set %s up: %w", ep.IfName, err)
		}
	}
	if !ji.DefaultRoute {
		return nil
	}
	if gw := gatewayOf(n, ep); gw.IsValid() {
		r := &netlink.Route{LinkIndex: sa.Index, Gw: gw.AsSlice()}
		if err := sh.RouteReplace(r); err != nil {
			return fmt.Errorf("set default route via %s: %w", gw, err)
		}
	}
	if ep.Addr6.IsValid() && ep.Gateway6.IsValid() {
		r := &netlink.Route{LinkIndex: sa.Index, Gw: ep.Gateway6.AsSlice(), Family: netlink.FAMILY_V6,
			Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}}
		if err := sh.RouteReplace(r); err != nil {
			return fmt.Errorf("set IPv6 default route via %s: %w", ep.Gateway6, err)
		}
	}
	return nil
}

// gatewayOf is ep's gateway, or the gateway of the subnet holding ep's address.
func gatewayOf(n model.Network, ep model.Endpoint) netip.Addr {
	if ep.Gateway.IsValid() {
		return ep.Gateway
	}
	for _, c := range n.IPAM {
		if ep.Addr.IsValid() && c.Subnet.Contains(ep.Addr.Addr()) && c.Gateway.IsValid() {
			return c.Gateway
		}
	}
	return netip.Addr{}
}

// Leave removes ep's veth. When no container port remains on br0, the
// network's data plane on this host goes too, and its peers are forgotten.
func (d *Driver) Leave(ctx context.Context, n model.Network, ep model.Endpoint, sb model.Sandbox) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	path := d.nsPath(n.ID)
	if netns.IsPinned(path) {
		if h, err := netns.Handle(path); err != nil {
			errs = append(errs, err)
		} else {
			if l, err := h.LinkByName(HostVethName(ep)); err == nil {
				if err := h.LinkDel(l); err != nil && !isNotFound(err) {
					errs = append(errs, fmt.Errorf("delete veth %s: %w", l.Attrs().Name, err))
				}
			}
			h.Close()
		}
	}
	// The sandbox end goes with its peer; remove it here only if it was
	// left alone (the host end was lost).
	if sb.NetnsPath != "" && ep.IfName != "" && netns.IsPinned(sb.NetnsPath) {
		if sh, err := netns.Handle(sb.NetnsPath); err == nil {
			if l, err := sh.LinkByName(ep.IfName); err == nil && l.Attrs().Alias == epAlias(n.ID, ep.ID) {
				if err := sh.LinkDel(l); err != nil && !isNotFound(err) {
					errs = append(errs, fmt.Errorf("delete %s in sandbox: %w", ep.IfName, err))
				}
			}
			sh.Close()
		}
	}
	if len(errs) == 0 {
		ports, err := d.containerPorts(path)
		if err != nil {
			errs = append(errs, err)
		} else if ports == 0 {
			d.peers.Forget(n.ID)
			errs = append(errs, d.teardown(n.ID))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("overlay: leave %s: %w", short(ep.ID, 12), err)
	}
	return nil
}

// containerPorts counts the veths in the overlay namespace at path (0 when
// the namespace is gone).
func (d *Driver) containerPorts(path string) (int, error) {
	if !netns.IsPinned(path) {
		return 0, nil
	}
	h, err := netns.Handle(path)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return 0, fmt.Errorf("list links of %s: %w", path, err)
	}
	count := 0
	for _, l := range links {
		if l.Type() == "veth" {
			count++
		}
	}
	return count, nil
}

// teardown removes the overlay namespace of network netID with everything
// in it, and a VXLAN device of the network stranded in the host namespace.
// Links are deleted before the namespace is unpinned so nothing lingers
// while the kernel cleans the namespace up.
func (d *Driver) teardown(netID string) error {
	return d.teardownPath(d.nsPath(netID), netID)
}

func (d *Driver) teardownPath(path, netID string) error {
	var errs []error
	if netns.IsPinned(path) {
		if h, err := netns.Handle(path); err != nil {
			errs = append(errs, err)
		} else {
			links, err := h.LinkList()
			if err != nil {
				errs = append(errs, fmt.Errorf("list links of %s: %w", path, err))
			}
			// veths first, then vxlan0, then br0.
			for _, kind := range []string{"veth", "vxlan", "bridge"} {
				for _, l := range links {
					if l.Type() != kind {
						continue
					}
					if err := h.LinkDel(l); err != nil && !isNotFound(err) {
						errs = append(errs, fmt.Errorf("delete %s: %w", l.Attrs().Name, err))
					}
				}
			}
			h.Close()
		}
	}
	if err := netns.Delete(path); err != nil {
		errs = append(errs, err)
	}
	if netID != "" {
		if err := d.deleteHostVxlans(func(alias string) bool { return alias == netAlias(netID) }); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("overlay: tear down %s: %w", path, err)
	}
	return nil
}

// deleteHostVxlans deletes VXLAN devices in the host namespace whose alias
// matches (devices stranded there by a crash between create and move).
func (d *Driver) deleteHostVxlans(match func(alias string) bool) error {
	hh, err := d.hostHandle()
	if err != nil {
		return err
	}
	defer hh.Close()
	links, err := hh.LinkList()
	if err != nil {
		return fmt.Errorf("list host links: %w", err)
	}
	var errs []error
	for _, l := range links {
		if l.Type() != "vxlan" || !strings.HasPrefix(l.Attrs().Alias, aliasPrefix) || !match(l.Attrs().Alias) {
			continue
		}
		if err := hh.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete host %s: %w", l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}
