package ipam

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestIPv6Subnet(t *testing.T) {
	s, err := NewSubnet(Config{Subnet: pfx("fd00:1:2:3::/64")})
	if err != nil {
		t.Fatal(err)
	}
	if gw := s.Gateway(); gw != ip("fd00:1:2:3::1") {
		t.Fatalf("gateway %v, want fd00:1:2:3::1", gw)
	}
	a, err := s.Allocate(netip.Addr{})
	if err != nil || a != ip("fd00:1:2:3::2") {
		t.Fatalf("Allocate = %v, %v; want fd00:1:2:3::2", a, err)
	}
	if _, err := s.Allocate(ip("fd00:1:2:3::2")); !errors.Is(err, ErrAddressInUse) {
		t.Fatalf("taken static: %v", err)
	}
	if a, err := s.Allocate(ip("fd00:1:2:3::ab")); err != nil || a != ip("fd00:1:2:3::ab") {
		t.Fatalf("static = %v, %v", a, err)
	}
	if _, err := s.Allocate(ip("fd00:1:2:3:1::5")); err == nil || !strings.Contains(err.Error(), "first 2^32 addresses") {
		t.Fatalf("static beyond the first 2^32: %v", err)
	}
	if _, err := s.Allocate(ip("fd00:1:2:3::")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("subnet-router anycast address: %v", err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Subnet
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !back.Allocated(ip("fd00:1:2:3::ab")) || !back.Allocated(ip("fd00:1:2:3::2")) || back.Last() != ip("fd00:1:2:3::2") {
		t.Fatalf("round trip lost state: %s", b)
	}
	if err := s.Release(ip("fd00:1:2:3::2")); err != nil || s.Allocated(ip("fd00:1:2:3::2")) {
		t.Fatalf("release: %v", err)
	}

	small, err := NewSubnet(Config{Subnet: pfx("2001:db8::/126"), Gateway: ip("2001:db8::3")})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"2001:db8::1", "2001:db8::2"} {
		if a, err := small.Allocate(netip.Addr{}); err != nil || a != ip(want) {
			t.Fatalf("Allocate = %v, %v; want %s", a, err, want)
		}
	}
	if _, err := small.Allocate(netip.Addr{}); !errors.Is(err, ErrNoAvailableAddress) {
		t.Fatalf("full /126: %v", err)
	}
}

func TestAllocatorDualStack(t *testing.T) {
	a := NewAllocator()
	a.SetULA([5]byte{1, 2, 3, 4, 5})
	cfgs, err := a.RequestPool("n1", []Config{{}, {Subnet: DefaultIPv6Pool}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfgs[1].Subnet != pfx("fd01:203:405::/64") || cfgs[1].Gateway != ip("fd01:203:405::1") {
		t.Fatalf("default IPv6 pool %+v", cfgs[1])
	}
	cfgs2, err := a.RequestPool("n2", []Config{{}, {Subnet: DefaultIPv6Pool}}, nil)
	if err != nil || cfgs2[1].Subnet != pfx("fd01:203:405:1::/64") {
		t.Fatalf("second default IPv6 pool %+v, %v", cfgs2, err)
	}
	if _, err := a.RequestPool("n3", []Config{{Subnet: pfx("fd01:203:405:1::/80")}}, nil); !errors.Is(err, ErrPoolOverlap) {
		t.Fatalf("overlapping IPv6 subnet: %v", err)
	}
	p4, err := a.AllocateAddress("n1", netip.Addr{})
	if err != nil || !p4.Addr().Is4() {
		t.Fatalf("AllocateAddress = %v, %v", p4, err)
	}
	p6, err := a.AllocateAddress6("n1", netip.Addr{})
	if err != nil || p6 != pfx("fd01:203:405::2/64") {
		t.Fatalf("AllocateAddress6 = %v, %v", p6, err)
	}
	if p6, err := a.AllocateAddress6("n1", ip("fd01:203:405::99")); err != nil || p6 != pfx("fd01:203:405::99/64") {
		t.Fatalf("static AllocateAddress6 = %v, %v", p6, err)
	}
	if _, err := a.AllocateAddress6("n1", ip("10.9.9.9")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("IPv4 to AllocateAddress6: %v", err)
	}
	v4only, _ := a.RequestPool("n4", nil, nil)
	_ = v4only
	if _, err := a.AllocateAddress6("n4", netip.Addr{}); !errors.Is(err, ErrNoAvailableAddress) {
		t.Fatalf("AllocateAddress6 on an IPv4-only network: %v", err)
	}
	if err := a.Restore("n5", []Config{{Subnet: pfx("2001:db8:5::/64")}}, []netip.Addr{ip("2001:db8:5::7")}); err != nil {
		t.Fatal(err)
	}
	if p6, err := a.AllocateAddress6("n5", netip.Addr{}); err != nil || p6 != pfx("2001:db8:5::8/64") {
		t.Fatalf("after restore AllocateAddress6 = %v, %v", p6, err)
	}
}

func TestDefaultAddressPools(t *testing.T) {
	for _, bad := range []string{"base=10.0.0.0/16", "size=24", "base=10.0.0.0/16,size=12", "base=10.0.0.0/16,size=33",
		"base=fd00::/8,size=64", "base=nope,size=24", "base=10.0.0.0/16,size=24,x=1"} {
		if _, err := ParsePool(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParsePool(%q) err = %v, want ErrInvalid", bad, err)
		}
	}
	p4, err := ParsePool("base=10.99.0.0/16,size=24")
	if err != nil {
		t.Fatal(err)
	}
	p6, err := ParsePool("base=fd12:3456::/48,size=64")
	if err != nil {
		t.Fatal(err)
	}
	var got []netip.Prefix
	for s := range p6.Subnets() {
		got = append(got, s)
		if len(got) == 3 {
			break
		}
	}
	if got[0] != pfx("fd12:3456::/64") || got[2] != pfx("fd12:3456:0:2::/64") {
		t.Fatalf("IPv6 pool subnets %v", got)
	}
	got = got[:0]
	for s := range p4.Subnets() {
		got = append(got, s)
	}
	if len(got) != 256 || got[0] != pfx("10.99.0.0/24") || got[255] != pfx("10.99.255.0/24") {
		t.Fatalf("IPv4 pool subnets: %d, %v ... %v", len(got), got[0], got[len(got)-1])
	}
	a := NewAllocator()
	a.SetDefaultPools([]Pool{p4, p6})
	cfgs, err := a.RequestPool("n", []Config{{}, {Subnet: DefaultIPv6Pool}}, []netip.Prefix{pfx("10.99.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if cfgs[0].Subnet != pfx("10.99.1.0/24") || cfgs[1].Subnet != pfx("fd12:3456::/64") {
		t.Fatalf("pools from --default-address-pool: %+v", cfgs)
	}
}

// Subnets from a default pool are marked Auto (Docker 28 takes static
// addresses only in configured subnets); the mark survives JSON.
func TestDefaultPoolMarkedAuto(t *testing.T) {
	a := NewAllocator()
	cfgs, err := a.RequestPool("n", []Config{{Subnet: netip.MustParsePrefix("10.70.0.0/24")}, {}, {Subnet: DefaultIPv6Pool}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfgs[0].Auto || !cfgs[1].Auto || !cfgs[2].Auto {
		t.Errorf("Auto = %v %v %v, want false true true", cfgs[0].Auto, cfgs[1].Auto, cfgs[2].Auto)
	}
	s, err := NewSubnet(cfgs[1])
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Subnet
	if err := json.Unmarshal(b, &back); err != nil || !back.Config().Auto {
		t.Errorf("JSON round trip %s: Auto lost (err %v)", b, err)
	}
}
