package api

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/vxnet/vxnet/internal/model"
)

// Published ports at the API edge: Docker's PortMap/PortSet decoded into
// model values once, and rendered back in Docker's shapes for inspect, ps and
// docker port.

// portOf checks a Docker port key (80/tcp) and turns it into a model.Port.
func portOf(p network.Port) (model.Port, error) {
	proto := string(p.Proto())
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return model.Port{}, apiErr(model.ErrInvalid, "invalid port specification: %q: protocol must be tcp, udp or sctp", p.String())
	}
	if p.Num() == 0 {
		return model.Port{}, apiErr(model.ErrInvalid, "invalid port specification: %q", p.String())
	}
	return model.Port{Num: p.Num(), Proto: proto}, nil
}

// hostPortRange parses a binding's HostPort: "" (any free port), "8080" or
// "8000-8010".
func hostPortRange(s string) (first, last uint16, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, 0, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	x, err1 := strconv.ParseUint(a, 10, 16)
	y := x
	var err2 error
	if isRange {
		y, err2 = strconv.ParseUint(b, 10, 16)
	}
	if err1 != nil || err2 != nil || y < x || (x == 0 && y != 0) {
		return 0, 0, apiErr(model.ErrInvalid, "invalid hostPort: %s", s)
	}
	return uint16(x), uint16(y), nil
}

// portRequest decodes ExposedPorts, PortBindings and PublishAllPorts.
func portRequest(cc *ContainerCreate, exposed network.PortSet, bindings network.PortMap, publishAll bool) error {
	for p := range exposed {
		mp, err := portOf(p)
		if err != nil {
			return err
		}
		cc.ExposedPorts = append(cc.ExposedPorts, mp)
	}
	for p, bs := range bindings {
		mp, err := portOf(p)
		if err != nil {
			return err
		}
		if len(bs) == 0 {
			// Docker treats a key without bindings as exposed only.
			cc.ExposedPorts = append(cc.ExposedPorts, mp)
			continue
		}
		for _, b := range bs {
			first, last, err := hostPortRange(b.HostPort)
			if err != nil {
				return err
			}
			ip := b.HostIP
			if ip.IsValid() && ip.IsUnspecified() && ip.Is4() {
				ip = netip.Addr{}
			}
			cc.PortBindings = append(cc.PortBindings, model.PortBinding{Port: mp, HostIP: ip, HostPortFirst: first, HostPortLast: last})
		}
	}
	sortPorts(cc.ExposedPorts)
	sort.SliceStable(cc.PortBindings, func(i, j int) bool { return portLess(cc.PortBindings[i].Port, cc.PortBindings[j].Port) })
	cc.PublishAll = publishAll
	return nil
}

func portLess(a, b model.Port) bool {
	if a.Num != b.Num {
		return a.Num < b.Num
	}
	return a.Proto < b.Proto
}

func sortPorts(ps []model.Port) {
	sort.Slice(ps, func(i, j int) bool { return portLess(ps[i], ps[j]) })
}

func dockerPort(p model.Port) network.Port {
	dp, _ := network.PortFrom(p.Num, network.IPProtocol(p.Proto))
	return dp
}

// hostIPOf is how Docker shows a binding's host address: 0.0.0.0 for every
// address.
func hostIPOf(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return netip.IPv4Unspecified()
	}
	return a
}

// portBindingsOf renders HostConfig.PortBindings as the user asked.
func portBindingsOf(c model.Container) network.PortMap {
	out := network.PortMap{}
	for _, b := range c.PortBindings {
		hp := ""
		switch {
		case b.HostPortFirst == 0:
		case b.HostPortFirst == b.HostPortLast:
			hp = strconv.Itoa(int(b.HostPortFirst))
		default:
			hp = strconv.Itoa(int(b.HostPortFirst)) + "-" + strconv.Itoa(int(b.HostPortLast))
		}
		var ip netip.Addr
		if b.HostIP.IsValid() {
			ip = b.HostIP
		}
		k := dockerPort(b.Port)
		out[k] = append(out[k], network.PortBinding{HostIP: ip, HostPort: hp})
	}
	return out
}

// exposedOf renders Config.ExposedPorts (nil when there are none, as Docker).
func exposedOf(c model.Container) network.PortSet {
	if len(c.ExposedPorts) == 0 {
		return nil
	}
	out := network.PortSet{}
	for _, p := range c.ExposedPorts {
		out[dockerPort(p)] = struct{}{}
	}
	return out
}

// portsOf renders NetworkSettings.Ports: while the container runs, every
// exposed port with its host bindings (null when not published); empty
// otherwise.
func portsOf(c model.Container) network.PortMap {
	out := network.PortMap{}
	if c.State != model.StateRunning {
		return out
	}
	for _, p := range c.ExposedPorts {
		out[dockerPort(p)] = nil
	}
	for _, m := range c.Ports {
		k := dockerPort(m.Port)
		out[k] = append(out[k], network.PortBinding{HostIP: hostIPOf(m.HostIP), HostPort: strconv.Itoa(int(m.HostPort))})
		if m.IPv6 {
			out[k] = append(out[k], network.PortBinding{HostIP: netip.IPv6Unspecified(), HostPort: strconv.Itoa(int(m.HostPort))})
		}
	}
	return out
}

// portSummaries is the PORTS column of docker ps.
func portSummaries(c model.Container) []container.PortSummary {
	out := []container.PortSummary{}
	if c.State != model.StateRunning {
		return out
	}
	published := map[model.Port]bool{}
	for _, m := range c.Ports {
		published[m.Port] = true
		out = append(out, container.PortSummary{IP: hostIPOf(m.HostIP), PrivatePort: m.Port.Num, PublicPort: m.HostPort, Type: m.Port.Proto})
		if m.IPv6 {
			out = append(out, container.PortSummary{IP: netip.IPv6Unspecified(), PrivatePort: m.Port.Num, PublicPort: m.HostPort, Type: m.Port.Proto})
		}
	}
	for _, p := range c.ExposedPorts {
		if !published[p] {
			out = append(out, container.PortSummary{PrivatePort: p.Num, Type: p.Proto})
		}
	}
	return out
}
