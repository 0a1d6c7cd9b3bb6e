package ipam

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func TestDefaultLocalPoolsOrder(t *testing.T) {
	got := slices.Collect(DefaultLocalPools())
	var want []netip.Prefix
	for i := 17; i <= 31; i++ {
		want = append(want, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i), 0, 0}), 16))
	}
	for i := 0; i < 16; i++ {
		want = append(want, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i * 16), 0}), 20))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("DefaultLocalPools:\n got %v\nwant %v", got, want)
	}
}

func TestDefaultGlobalPools(t *testing.T) {
	var first []netip.Prefix
	for p := range DefaultGlobalPools() {
		first = append(first, p)
		if len(first) == 3 {
			break // the iterator must honour an early stop
		}
	}
	want := []netip.Prefix{pfx("10.0.0.0/24"), pfx("10.0.1.0/24"), pfx("10.0.2.0/24")}
	if !slices.Equal(first, want) {
		t.Fatalf("first global pools = %v, want %v", first, want)
	}
	n, last := 0, netip.Prefix{}
	for p := range DefaultGlobalPools() {
		n++
		last = p
	}
	if n != 65536 || last != pfx("10.255.255.0/24") {
		t.Fatalf("global pools: %d ending %v, want 65536 ending 10.255.255.0/24", n, last)
	}
}

func TestPickPool(t *testing.T) {
	tests := []struct {
		name        string
		used, avoid []netip.Prefix
		want        netip.Prefix
		wantErr     error
	}{
		{name: "first", want: pfx("172.17.0.0/16")},
		{name: "skip used", used: []netip.Prefix{pfx("172.17.0.0/16"), pfx("172.18.0.0/16")}, want: pfx("172.19.0.0/16")},
		{name: "skip host route inside pool", avoid: []netip.Prefix{pfx("172.17.5.0/24")}, want: pfx("172.18.0.0/16")},
		{name: "skip host route covering pools", avoid: []netip.Prefix{pfx("172.16.0.0/13")}, want: pfx("172.24.0.0/16")},
		{name: "used and routes", used: []netip.Prefix{pfx("172.17.0.0/16")}, avoid: []netip.Prefix{pfx("172.18.0.1/32")}, want: pfx("172.19.0.0/16")},
		{name: "to 192.168", avoid: []netip.Prefix{pfx("172.16.0.0/12")}, want: pfx("192.168.0.0/20")},
		{name: "192.168 partly routed", avoid: []netip.Prefix{pfx("172.16.0.0/12"), pfx("192.168.0.0/19")}, want: pfx("192.168.32.0/20")},
		{name: "exhausted", avoid: []netip.Prefix{pfx("172.16.0.0/12"), pfx("192.168.0.0/16")}, wantErr: ErrNoAvailablePool},
		{name: "exhausted by a wide route", avoid: []netip.Prefix{pfx("128.0.0.0/1")}, wantErr: ErrNoAvailablePool},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PickPool(DefaultLocalPools(), tt.used, tt.avoid)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNoAvailablePoolWording(t *testing.T) {
	_, err := PickPool(DefaultLocalPools(), nil, []netip.Prefix{pfx("0.0.0.0/1"), pfx("128.0.0.0/1")})
	const want = "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}
