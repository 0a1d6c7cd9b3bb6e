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
		"protocol":                            mod(func(m *PortMapping) { m.Proto = "icmp" }),
		"host port 0":                         mod(func(m *PortMapping) { m.HostPort = 0 }),
		"no container ip":                     mod(func(m *PortMapping) { m.ContainerIP = netip.Addr{} }),
		"unknown bridge":                      mod(func(m *PortMapping) { m.Bridge = "eth0" }),
		"ipv6 host ip without container ipv6": mod(func(m *PortMapping) { m.HostIP = netip.MustParseAddr("2001:db8::1") }),
		"ipv6 loopback":                       mod(func(m *PortMapping) { m.HostIP = netip.IPv6Loopback(); m.ContainerIP6 = netip.MustParseAddr("fd00::2") }),
		"ipv4 as ipv6":                        mod(func(m *PortMapping) { m.ContainerIP6 = netip.MustParseAddr("198.51.100.3") }),
		"twice, ::": {mod(func(m *PortMapping) { m.ContainerIP6 = netip.MustParseAddr("fd00::2") })[0], mod(func(m *PortMapping) {
			m.HostIP = netip.IPv6Unspecified()
			m.ContainerIP6 = netip.MustParseAddr("fd00::2")
		})[0]},
		"twice":          {ok, ok},
		"twice, 0.0.0.0": {ok, mod(func(m *PortMapping) { m.HostIP = netip.MustParseAddr("0.0.0.0") })[0]},
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
	// A dual-stack container: every address gives an IPv4 and an IPv6
	// element, an IPv6 host address only an IPv6 one; an IPv6-only
	// container only IPv6 elements.
	ds := mod(func(m *PortMapping) { m.ContainerIP6 = netip.MustParseAddr("fd00::2") })[0]
	on6 := ds
	on6.HostIP, on6.HostPort = netip.MustParseAddr("2001:db8::1"), 8081
	only6 := ds
	only6.ContainerIP, only6.HostPort = netip.Addr{}, 8082
	d, err = plan(Config{Networks: []Network{netA}, Ports: []PortMapping{ds, on6, only6}})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range d.maps {
		count[e.mapName]++
	}
	if count[mapPub4Any] != 1 || count[mapPub6Any] != 2 || count[mapPub6IP] != 1 || count[mapPub4IP] != 0 {
		t.Errorf("dual-stack maps %v", count)
	}
}

func TestConflictsByFamily(t *testing.T) {
	m := func(ip string) model.PortMapping {
		x := model.PortMapping{Port: model.Port{Num: 80, Proto: "tcp"}, HostPort: 8080}
		if ip != "" {
			x.HostIP = netip.MustParseAddr(ip)
		}
		return x
	}
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"", "::1", true}, {"", "192.0.2.1", true}, {"::", "::1", true}, {"0.0.0.0", "192.0.2.1", true},
		{"::", "192.0.2.1", false}, {"0.0.0.0", "::1", false}, {"::1", "2001:db8::1", false}, {"::1", "::1", true},
	} {
		if got := m(c.a).Conflicts(m(c.b)); got != c.want {
			t.Errorf("%q vs %q: conflict %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
