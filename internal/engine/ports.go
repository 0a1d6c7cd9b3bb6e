package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/driver/bridge"
	"github.com/vxnet/vxnet/internal/firewall"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// Published ports (docker run -p, -P). A container asks for bindings at
// create time (model.Container.PortBindings); host ports are taken when it
// starts and given back when it stops, exits or is removed, as Docker does
// (model.Container.Ports, persisted, so a restarted daemon holds the same
// ports and re-renders the same DNAT). A host port is free when no running
// container holds it (same protocol, overlapping host address) and a socket
// can be bound to it in the daemon's namespace, so a process on the host
// keeps its port. The firewall sends the host port to the container's
// address on the first bridge network it is on: its own bridge network, or
// the gateway bridge for an overlay container. docs/ports.md has the design.

// portCheck reports whether a socket of proto can be bound to ip:port in
// the daemon's namespace (nil: free). A field of Options in tests.
type portCheck func(proto string, ip netip.Addr, port uint16) error

// checkExposure validates a create request's ports against its network and
// returns the container's exposed ports (requested, the image's, bound).
func checkExposure(n model.Network, req api.ContainerCreate, image []model.Port) ([]model.Port, error) {
	var exposed []model.Port
	add := func(p model.Port) {
		if !slices.Contains(exposed, p) {
			exposed = append(exposed, p)
		}
	}
	for _, p := range req.ExposedPorts {
		add(p)
	}
	for _, p := range image {
		add(p)
	}
	for _, b := range req.PortBindings {
		add(b.Port)
		// ::1 cannot be DNATed (no route_localnet for IPv6): the userland
		// proxy serves it, and it relays TCP and UDP only.
		if b.HostIP == netip.IPv6Loopback() && b.Port.Proto != "tcp" && b.Port.Proto != "udp" {
			return nil, errf(model.ErrInvalid, "invalid host address %s for published port %s: vxnet cannot publish SCTP ports on ::1 (IPv6 loopback is served by its userland proxy, which relays only TCP and UDP)", b.HostIP, b.Port)
		}
	}
	slices.SortFunc(exposed, func(a, b model.Port) int {
		if a.Num != b.Num {
			return int(a.Num) - int(b.Num)
		}
		return strings.Compare(a.Proto, b.Proto)
	})
	publishes := len(req.PortBindings) > 0 || (req.PublishAll && len(exposed) > 0)
	if !publishes {
		return exposed, nil
	}
	switch {
	case n.Driver == "host":
		return nil, errf(model.ErrInvalid, "published ports (-p, -P) cannot be used with network mode host: the container already uses the host's ports")
	case n.Driver == "null":
		return nil, errf(model.ErrInvalid, "published ports (-p, -P) need a network: network mode none has no way in")
	case n.Internal:
		return nil, errf(model.ErrInvalid, "published ports (-p, -P) cannot be used on internal network %s", n.Name)
	case n.Driver != "bridge" && n.Driver != "overlay":
		return nil, errf(model.ErrInvalid, "published ports (-p, -P) are not supported on %s network %s", n.Driver, n.Name)
	}
	return exposed, nil
}

// wantedBindings is what a container publishes: its bindings, and with -P
// every exposed port without one on a random port.
func wantedBindings(c model.Container) []model.PortBinding {
	out := slices.Clone(c.PortBindings)
	if !c.PublishAll {
		return out
	}
	for _, p := range c.ExposedPorts {
		if !slices.ContainsFunc(c.PortBindings, func(b model.PortBinding) bool { return b.Port == p }) {
			out = append(out, model.PortBinding{Port: p})
		}
	}
	return out
}

// publishEndpointLocked is the endpoint published ports lead to: the first
// (by attach order) on a bridge network with a way out (its IPv4 address
// for IPv4, its IPv6 address, if any, for IPv6).
func (e *Engine) publishEndpointLocked(ctrID string) (model.Endpoint, model.Network, bool) {
	eps := e.endpointsOfLocked(ctrID)
	slices.SortFunc(eps, func(a, b model.Endpoint) int { return a.Order - b.Order })
	for _, ep := range eps {
		n, ok := e.networks[ep.NetworkID]
		if ok && n.Driver == "bridge" && !n.Internal && (ep.Addr.IsValid() || ep.Addr6.IsValid()) {
			return ep, n, true
		}
	}
	return model.Endpoint{}, model.Network{}, false
}

// heldPortsLocked lists the host ports held by containers other than
// except, and those reserved by starts in flight.
func (e *Engine) heldPortsLocked(except string) []model.PortMapping {
	var out []model.PortMapping
	for id, c := range e.containers {
		if id != except {
			out = append(out, c.Ports...)
		}
	}
	for id, ps := range e.pendingPorts {
		if id != except {
			out = append(out, ps...)
		}
	}
	return out
}

// publishLocked chooses the host ports of c (about to start) into c.Ports.
// The bind test is one socket syscall per port, not slow I/O.
func (e *Engine) publishLocked(c *model.Container) error {
	want := wantedBindings(*c)
	c.Ports = nil
	if len(want) == 0 {
		return nil
	}
	ep, _, ok := e.publishEndpointLocked(c.ID)
	if !ok {
		return errf(model.ErrInvalid, "container %s has published ports but no endpoint on a bridge network with a way out", c.Name)
	}
	held := e.heldPortsLocked(c.ID)
	var got []model.PortMapping
	for _, b := range want {
		// ::1 is served by the userland proxy, which reaches either
		// address.
		if h := b.HostIP.Unmap(); h.IsValid() && h != netip.IPv6Loopback() && (h.Is4() && !ep.Addr.IsValid() || h.Is6() && !ep.Addr6.IsValid()) {
			fam := map[bool]string{true: "IPv4", false: "IPv6"}[h.Is4()]
			return errf(model.ErrInvalid, "published port %s on host address %s: container %s has no %s address on its published network",
				b.Port, h, c.Name, fam)
		}
		m, err := e.pickPort(b, append(held, got...))
		if err != nil {
			return fmt.Errorf("driver failed programming external connectivity on endpoint %s (%s): %w", c.Name, ep.ID, err)
		}
		m.IPv6 = !m.HostIP.IsValid() && ep.Addr6.IsValid()
		got = append(got, m)
	}
	c.Ports = got
	return nil
}

// pickPort chooses the host port of one binding.
func (e *Engine) pickPort(b model.PortBinding, held []model.PortMapping) (model.PortMapping, error) {
	m := model.PortMapping{Port: b.Port, HostIP: b.HostIP}
	first, last, random := b.HostPortFirst, b.HostPortLast, false
	if first == 0 {
		first, last, random = ephemeralRange()
	}
	n := int(last) - int(first) + 1
	start := 0
	if random {
		start = rand.IntN(n)
	}
	var lastErr error
	for i := range n {
		m.HostPort = first + uint16((start+i)%n)
		if slices.ContainsFunc(held, m.Conflicts) {
			lastErr = fmt.Errorf("Bind for %s:%d failed: port is already allocated", hostIPText(b.HostIP), m.HostPort)
			continue
		}
		if err := e.portCheck(b.Port.Proto, b.HostIP, m.HostPort); err != nil {
			lastErr = fmt.Errorf("failed to bind host port for %s:%d/%s: %w", hostIPText(b.HostIP), m.HostPort, b.Port.Proto, err)
			continue
		}
		return m, nil
	}
	switch {
	case random:
		return model.PortMapping{}, errors.New("all ports are allocated")
	case n > 1:
		return model.PortMapping{}, fmt.Errorf("Bind for %s:%d-%d failed: port is already allocated", hostIPText(b.HostIP), first, last)
	}
	return model.PortMapping{}, lastErr
}

func hostIPText(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "0.0.0.0"
	case a.Is6() && !a.Is4In6():
		return "[" + a.String() + "]"
	}
	return a.String()
}

// ephemeralRange is the kernel's local port range (Docker's default when it
// cannot be read: 49153-60999).
func ephemeralRange() (uint16, uint16, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			lo, err1 := strconv.ParseUint(f[0], 10, 16)
			hi, err2 := strconv.ParseUint(f[1], 10, 16)
			if err1 == nil && err2 == nil && lo > 0 && lo <= hi {
				return uint16(lo), uint16(hi), true
			}
		}
	}
	return 49153, 60999, true
}

// bindCheck binds a socket of proto to ip:port and closes it: a process on
// the host holding the port makes it fail with "address already in use". A
// kernel without SCTP sockets cannot hold SCTP ports, so those pass. Every
// address (ip invalid) is checked on 0.0.0.0 and on :: (IPv6 only), and
// passes on IPv6 if the host has no IPv6.
func bindCheck(proto string, ip netip.Addr, port uint16) error {
	if !ip.IsValid() {
		if err := bindCheck1(proto, netip.IPv4Unspecified(), port); err != nil {
			return err
		}
		err := bindCheck1(proto, netip.IPv6Unspecified(), port)
		if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EADDRNOTAVAIL) {
			return nil
		}
		return err
	}
	return bindCheck1(proto, ip.Unmap(), port)
}

func bindCheck1(proto string, ip netip.Addr, port uint16) error {
	family := unix.AF_INET
	if ip.Is6() {
		family = unix.AF_INET6
	}
	typ, p := unix.SOCK_STREAM, unix.IPPROTO_TCP
	switch proto {
	case "udp":
		typ, p = unix.SOCK_DGRAM, unix.IPPROTO_UDP
	case "sctp":
		p = unix.IPPROTO_SCTP
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, p)
	if err != nil {
		if proto == "sctp" && (errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT)) {
			return nil
		}
		return err
	}
	defer unix.Close(fd)
	if typ == unix.SOCK_STREAM {
		// As a listener would: TIME_WAIT leftovers do not hold the port.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return err
		}
	}
	var sa unix.Sockaddr
	if ip.Is4() {
		sa = &unix.SockaddrInet4{Port: int(port), Addr: ip.As4()}
	} else {
		// Only the IPv6 side: 0.0.0.0 is checked on its own.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return err
		}
		sa = &unix.SockaddrInet6{Port: int(port), Addr: ip.As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return err
	}
	if typ == unix.SOCK_STREAM {
		// Listening is what collides with another listener bound with
		// SO_REUSEADDR.
		return unix.Listen(fd, 1)
	}
	return nil
}

// releasePorts gives back the host ports of a container that does not
// run (start failed, or found stopped at restart): store first, then
// memory. It reports whether any were held; the caller applies the
// firewall. The caller holds the container's op lock.
func (e *Engine) releasePorts(id string) bool {
	e.mu.Lock()
	c, ok := e.containers[id]
	e.mu.Unlock()
	if !ok || len(c.Ports) == 0 {
		return false
	}
	c.Ports = nil
	if err := e.opts.Store.Put(store.Containers, id, c); err != nil {
		e.log.Error("record released ports", "name", c.Name, "err", err)
		return false
	}
	e.mu.Lock()
	if _, ok := e.containers[id]; ok {
		e.containers[id] = c
	}
	e.mu.Unlock()
	return true
}

// publish takes the host ports of c before it starts: chosen under mu
// (reserved in pendingPorts so a concurrent start cannot take them too),
// recorded in the store, then in memory, then the firewall is applied. On
// error nothing is held. The caller holds the container's op lock.
func (e *Engine) publish(c *model.Container) error {
	e.mu.Lock()
	err := e.publishLocked(c)
	if err == nil && len(c.Ports) > 0 {
		e.pendingPorts[c.ID] = c.Ports
	}
	e.mu.Unlock()
	if err != nil || len(c.Ports) == 0 {
		return err
	}
	defer func() {
		e.mu.Lock()
		delete(e.pendingPorts, c.ID)
		e.mu.Unlock()
	}()
	if err := e.opts.Store.Put(store.Containers, c.ID, *c); err != nil {
		c.Ports = nil
		return fmt.Errorf("record published ports: %w", err)
	}
	e.mu.Lock()
	if _, ok := e.containers[c.ID]; ok {
		e.containers[c.ID] = *c
	}
	e.mu.Unlock()
	if err := e.applyFirewall(); err != nil {
		e.releasePorts(c.ID)
		c.Ports = nil
		e.applyFirewall()
		return fmt.Errorf("driver failed programming external connectivity on endpoint %s: %w", c.Name, err)
	}
	return nil
}

// portsFirewallLocked adds the DNAT of every held port to cfg.
func (e *Engine) portsFirewallLocked(cfg *firewall.Config) {
	for _, c := range e.sortedContainersLocked() {
		if len(c.Ports) == 0 {
			continue
		}
		ep, n, ok := e.publishEndpointLocked(c.ID)
		if !ok {
			continue
		}
		for _, m := range c.Ports {
			if m.HostIP == netip.IPv6Loopback() {
				continue // the userland proxy's (proxiesLocked)
			}
			if h := m.HostIP.Unmap(); h.IsValid() && h != netip.IPv4Unspecified() && (h.Is4() && !ep.Addr.IsValid() || h.Is6() && !ep.Addr6.IsValid()) {
				// A binding on a host address of a family the endpoint
				// lost since the start (its gateway bridge interface
				// left IPv6 with the container's last overlay network
				// with IPv6): not served until it has one again.
				continue
			}
			cfg.Ports = append(cfg.Ports, firewall.PortMapping{
				ID: c.ID, Proto: m.Port.Proto, HostIP: m.HostIP, HostPort: m.HostPort,
				ContainerIP: ep.Addr.Addr(), ContainerIP6: ep.Addr6.Addr(), ContainerPort: m.Port.Num, Bridge: bridge.BridgeName(n),
			})
		}
	}
}

func (e *Engine) sortedContainersLocked() []model.Container {
	out := make([]model.Container, 0, len(e.containers))
	for _, c := range e.containers {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b model.Container) int { return strings.Compare(a.ID, b.ID) })
	return out
}
