package cli

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/docker/go-connections/nat"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// parsePorts turns -p and --expose values into the create request's
// ExposedPorts and PortBindings, with the docker CLI's parser (ranges,
// host addresses, /udp and /sctp).
func parsePorts(publish, expose []string) (network.PortSet, network.PortMap, error) {
	natExposed, natBindings, err := nat.ParsePortSpecs(publish)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid argument for \"-p, --publish\" flag: %w", err)
	}
	exposed := network.PortSet{}
	bindings := network.PortMap{}
	for p := range natExposed {
		dp, err := network.ParsePort(string(p))
		if err != nil {
			return nil, nil, err
		}
		exposed[dp] = struct{}{}
	}
	for p, bs := range natBindings {
		dp, err := network.ParsePort(string(p))
		if err != nil {
			return nil, nil, err
		}
		for _, b := range bs {
			var ip netip.Addr
			if b.HostIP != "" {
				if ip, err = netip.ParseAddr(b.HostIP); err != nil {
					return nil, nil, fmt.Errorf("invalid IP address in -p: %s", b.HostIP)
				}
			}
			bindings[dp] = append(bindings[dp], network.PortBinding{HostIP: ip, HostPort: b.HostPort})
		}
	}
	for _, e := range expose {
		proto, ports := nat.SplitProtoPort(e)
		first, last, err := nat.ParsePortRangeToInt(ports)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid range format for --expose: %s, error: %w", e, err)
		}
		for i := first; i <= last; i++ {
			dp, err := network.ParsePort(fmt.Sprintf("%d/%s", i, proto))
			if err != nil {
				return nil, nil, err
			}
			exposed[dp] = struct{}{}
		}
	}
	return exposed, bindings, nil
}

// formatPortMap renders published ports as docker port does:
// "80/tcp -> 0.0.0.0:8080", one line per binding, in port order.
func formatPortMap(ports network.PortMap, only string) ([]string, error) {
	var keys []network.Port
	for k, bs := range ports {
		if len(bs) > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Num() != keys[j].Num() {
			return keys[i].Num() < keys[j].Num()
		}
		return keys[i].Proto() < keys[j].Proto()
	})
	var want network.Port
	if only != "" {
		p, err := network.ParsePort(only)
		if err != nil {
			return nil, err
		}
		want = p
	}
	var lines []string
	for _, k := range keys {
		if want.IsValid() && k != want {
			continue
		}
		for _, b := range ports[k] {
			hp := netip.AddrPortFrom(b.HostIP, 0).Addr().String() + ":" + b.HostPort
			if b.HostIP.Is6() {
				hp = "[" + b.HostIP.String() + "]:" + b.HostPort
			}
			if want.IsValid() {
				lines = append(lines, hp)
			} else {
				lines = append(lines, k.String()+" -> "+hp)
			}
		}
	}
	return lines, nil
}

func newPort(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List port mappings or a specific mapping for the container",
		Args:  rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			res, err := c.ContainerInspect(cmd.Context(), args[0], client.ContainerInspectOptions{})
			if err != nil {
				return err
			}
			only := ""
			if len(args) == 2 {
				only = args[1]
			}
			var ports network.PortMap
			if ns := res.Container.NetworkSettings; ns != nil {
				ports = ns.Ports
			}
			lines, err := formatPortMap(ports, only)
			if err != nil {
				return err
			}
			if only != "" && len(lines) == 0 {
				p, _ := network.ParsePort(only)
				return &StatusError{Status: fmt.Sprintf("Error: No public port '%s' published for %s", p, args[0]), Code: 1}
			}
			for _, l := range lines {
				fmt.Fprintln(cmd.OutOrStdout(), l)
			}
			return nil
		},
	}
}

// portsColumn is the PORTS column of ps: "0.0.0.0:8080->80/tcp, 53/udp".
func portsColumn(ps []container.PortSummary) string {
	var parts []string
	for _, p := range ps {
		if p.PublicPort == 0 {
			parts = append(parts, fmt.Sprintf("%d/%s", p.PrivatePort, p.Type))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s:%d->%d/%s", p.IP, p.PublicPort, p.PrivatePort, p.Type))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return &usageError{cmd: cmd, err: fmt.Errorf("%q requires at least %d and at most %d arguments", cmd.CommandPath(), lo, hi)}
		}
		return nil
	}
}
