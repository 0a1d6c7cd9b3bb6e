package firewall

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/vxnet/vxnet/internal/model"
)

func TestPortMappingsValidated(t *testing.T) {
	ok := PortMapping{ID: "c", Proto: "tcp", HostPort: 8080, ContainerIP: netip.MustParseAddr("198.51.100.2"), ContainerPort: 80, Bridge: "br-a"}
	mod := func(f func(*PortMapping)) []PortMapping { m := ok; f(&m); return []PortMapping{m} }
	bad := map[string][]PortMapping{
		"protocol":        mod(func(m *PortMapping) { m.Proto = "icmp" }),
		"host port 0":     mod(func(m *PortMapping) { m.HostPort = 0 }),
		"no container ip": mod(func(m *PortMapping) { m.ContainerIP = netip.Addr{} }),
		"unknown bridge":  mod(func(m *PortMapping) { m.Bridge = "eth0" }),
		"ipv6 host ip":    mod(func(m *PortMapping) { m.HostIP = netip.MustParseAddr("2001:db8::1") }),
		"twice":           {ok, ok},
		"twice, 0.0.0.0":  {ok, mod(func(m *PortMapping) { m.HostIP = netip.MustParseAddr("0.0.0.0") })[0]},
	}
	for name, ports := range bad {
		_, err := plan(Config{Networks: []Network{netA}, Ports: ports})
		if !errors.Is(err, model.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	udp := mod(func(m *PortMapping) { m.Proto = "udp" })[0]
	one := mod(func(m *PortMapping) { m.HostIP = netip.MustParseAddr("203.0.113.1") })[0]
	d, err := plan(Config{Networks: []Network{netA}, Ports: []PortMapping{ok, udp, one}})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.maps) != 3 || !d.localnet["br-a"] {
		t.Errorf("maps %v localnet %v", d.maps, d.localnet)
	}
}
