package ipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in      string
		want    netip.Prefix
		wantMsg string // substring of the error, "" for success
	}{
		{in: "10.1.2.0/24", want: pfx("10.1.2.0/24")},
		{in: " 172.18.0.0/16 ", want: pfx("172.18.0.0/16")},
		{in: "10.1.2.3/32", want: pfx("10.1.2.3/32")},
		{in: "10.1.2.3/24", wantMsg: "invalid subnet 10.1.2.3/24: it should be 10.1.2.0/24"},
		{in: "2001:db8::/64", want: pfx("2001:db8::/64")},
		{in: "2001:db8::1/64", wantMsg: "it should be 2001:db8::/64"},
		{in: "::ffff:10.0.0.0/104", wantMsg: "IPv4-mapped"},
		{in: "10.1.2.0", wantMsg: "invalid subnet"},
		{in: "10.1.2.0/33", wantMsg: "invalid subnet"},
		{in: "", wantMsg: "invalid subnet"},
		{in: "banana", wantMsg: "invalid subnet"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePrefix(tt.in)
			if tt.wantMsg == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ParsePrefix(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParsePrefix(%q) err = %v, want ErrInvalid containing %q", tt.in, err, tt.wantMsg)
			}
		})
	}
}

func TestParseAddr(t *testing.T) {
	if a, err := ParseAddr("10.0.0.7"); err != nil || a != ip("10.0.0.7") {
		t.Fatalf("ParseAddr = %v, %v", a, err)
	}
	for _, in := range []string{"", "10.0.0", "::ffff:10.0.0.1", "fe80::1%eth0", "10.0.0.1/24"} {
		if _, err := ParseAddr(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseAddr(%q) err = %v, want ErrInvalid", in, err)
		}
	}
}

// FuzzParsePrefix checks that ParsePrefix never panics, accepts only
// canonical IPv4 prefixes, and that NewSubnet accepts any of them of /8 or
// longer and then allocates an address inside.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"10.1.2.0/24", "10.1.2.3/24", "0.0.0.0/0", "255.255.255.255/32", "10.0.0.0/8", "10.0.0.0/31", "::/0", "1.2.3.4", "", "10.0.0.0/-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if p.Addr().Is4In6() || p.Masked() != p {
			t.Fatalf("accepted %q as %v", s, p)
		}
		sn, err := NewSubnet(Config{Subnet: p})
		if p.Bits() < MaxPrefixBits {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("NewSubnet(%v) err = %v, want ErrInvalid", p, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("NewSubnet(%v): %v", p, err)
		}
		if !p.Contains(sn.Gateway()) {
			t.Fatalf("gateway %v outside %v", sn.Gateway(), p)
		}
		a, err := sn.Allocate(netip.Addr{})
		if err != nil {
			if p.Bits() >= p.Addr().BitLen()-1 && (p.Bits() == 32 || p.Addr().Is6()) && errors.Is(err, ErrNoAvailableAddress) {
				return // the gateway took the only address
			}
			t.Fatalf("Allocate in %v: %v", p, err)
		}
		if !p.Contains(a) || a == sn.Gateway() {
			t.Fatalf("allocated %v in %v (gateway %v)", a, p, sn.Gateway())
		}
	})
}

// FuzzConfig feeds arbitrary subnet, ip-range, gateway and aux strings through
// validation: a Subnet that is accepted must hold everything inside itself and
// survive a JSON round trip.
func FuzzConfig(f *testing.F) {
	f.Add("10.0.0.0/24", "10.0.0.128/25", "10.0.0.1", "10.0.0.5", "10.0.0.200")
	f.Add("10.0.0.0/24", "10.0.1.0/25", "", "", "")
	f.Add("10.0.0.0/24", "", "10.0.1.1", "", "10.0.0.0")
	f.Add("10.0.0.0/24", "", "", "10.9.9.9", "")
	f.Add("192.168.0.0/30", "192.168.0.0/30", "192.168.0.3", "", "192.168.0.2")
	f.Fuzz(func(t *testing.T, subnet, rng, gw, aux, static string) {
		var c Config
		c.Subnet, _ = netip.ParsePrefix(subnet)
		c.IPRange, _ = netip.ParsePrefix(rng)
		c.Gateway, _ = netip.ParseAddr(gw)
		if a, err := netip.ParseAddr(aux); err == nil {
			c.AuxAddress = map[string]netip.Addr{"a": a}
		}
		if c.Subnet.IsValid() && c.Subnet.Bits() < 16 {
			return // keep each run cheap
		}
		s, err := NewSubnet(c)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("NewSubnet(%+v) err = %v, want ErrInvalid", c, err)
			}
			return
		}
		p := s.Prefix()
		if !p.Contains(s.Gateway()) || (c.IPRange.IsValid() && !p.Contains(c.IPRange.Addr())) {
			t.Fatalf("accepted config outside its subnet: %+v", c)
		}
		st, _ := netip.ParseAddr(static)
		got, err := s.Allocate(st)
		if err == nil {
			if !p.Contains(got) || got == s.Gateway() {
				t.Fatalf("allocated %v in %v (gateway %v)", got, p, s.Gateway())
			}
			for _, a := range c.AuxAddress {
				if a == got {
					t.Fatalf("allocated aux address %v", got)
				}
			}
		}
		b, err := s.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var back Subnet
		if err := back.UnmarshalJSON(b); err != nil {
			t.Fatalf("round trip of %s: %v", b, err)
		}
		b2, _ := back.MarshalJSON()
		if string(b) != string(b2) {
			t.Fatalf("round trip changed state:\n%s\n%s", b, b2)
		}
	})
}
