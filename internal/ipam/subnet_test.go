package ipam

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func mustSubnet(t *testing.T, c Config) *Subnet {
	t.Helper()
	s, err := NewSubnet(c)
	if err != nil {
		t.Fatalf("NewSubnet(%+v): %v", c, err)
	}
	return s
}

func alloc(t *testing.T, s *Subnet) netip.Addr {
	t.Helper()
	a, err := s.Allocate(netip.Addr{})
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	return a
}

func TestNewSubnetValidation(t *testing.T) {
	aux := func(kv ...string) map[string]netip.Addr {
		m := map[string]netip.Addr{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = ip(kv[i+1])
		}
		return m
	}
	tests := []struct {
		name    string
		cfg     Config
		wantGW  netip.Addr
		wantMsg string // exact error text, "" for success
	}{
		{name: "gateway defaults to first usable", cfg: Config{Subnet: pfx("172.18.0.0/16")}, wantGW: ip("172.18.0.1")},
		{name: "given gateway", cfg: Config{Subnet: pfx("10.0.0.0/24"), Gateway: ip("10.0.0.254")}, wantGW: ip("10.0.0.254")},
		{name: "gateway outside ip-range is fine", cfg: Config{Subnet: pfx("10.0.0.0/24"), IPRange: pfx("10.0.0.128/25")}, wantGW: ip("10.0.0.1")},
		{name: "/31 has no network address", cfg: Config{Subnet: pfx("10.0.0.0/31")}, wantGW: ip("10.0.0.0")},
		{name: "/8 is the largest", cfg: Config{Subnet: pfx("10.0.0.0/8")}, wantGW: ip("10.0.0.1")},
		{name: "aux inside", cfg: Config{Subnet: pfx("10.0.0.0/24"), AuxAddress: aux("host", "10.0.0.9")}, wantGW: ip("10.0.0.1")},
		{name: "no subnet", cfg: Config{}, wantMsg: "ipam: a subnet is required"},
		{name: "too large", cfg: Config{Subnet: pfx("10.0.0.0/7")}, wantMsg: "invalid subnet 10.0.0.0/7: too large, the largest allowed is /8"},
		{name: "host bits", cfg: Config{Subnet: pfx("10.0.0.5/24")}, wantMsg: "invalid subnet 10.0.0.5/24: it should be 10.0.0.0/24"},
		{name: "ipv6 gateway in ipv4", cfg: Config{Subnet: pfx("10.0.0.0/24"), Gateway: ip("2001:db8::1")}, wantMsg: "no matching subnet for gateway 2001:db8::1"},
		{name: "gateway outside", cfg: Config{Subnet: pfx("10.0.0.0/24"), Gateway: ip("10.0.1.1")}, wantMsg: "no matching subnet for gateway 10.0.1.1"},
		{name: "gateway network address", cfg: Config{Subnet: pfx("10.0.0.0/24"), Gateway: ip("10.0.0.0")}, wantMsg: "invalid gateway 10.0.0.0: it is the network or broadcast address of 10.0.0.0/24"},
		{name: "gateway broadcast", cfg: Config{Subnet: pfx("10.0.0.0/24"), Gateway: ip("10.0.0.255")}, wantMsg: "invalid gateway 10.0.0.255: it is the network or broadcast address of 10.0.0.0/24"},
		{name: "range outside", cfg: Config{Subnet: pfx("10.0.0.0/24"), IPRange: pfx("10.0.1.0/25")}, wantMsg: "no matching subnet for range 10.0.1.0/25"},
		{name: "range larger than subnet", cfg: Config{Subnet: pfx("10.0.0.0/24"), IPRange: pfx("10.0.0.0/23")}, wantMsg: "no matching subnet for range 10.0.0.0/23"},
		{name: "range host bits", cfg: Config{Subnet: pfx("10.0.0.0/24"), IPRange: pfx("10.0.0.5/25")}, wantMsg: "invalid ip-range 10.0.0.5/25: it should be 10.0.0.0/25"},
		{name: "aux outside", cfg: Config{Subnet: pfx("10.0.0.0/24"), AuxAddress: aux("h", "10.9.0.1")}, wantMsg: "no matching subnet for aux-address 10.9.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSubnet(tt.cfg)
			if tt.wantMsg != "" {
				if err == nil || err.Error() != tt.wantMsg || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid %q", err, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Gateway() != tt.wantGW || s.Config().Gateway != tt.wantGW {
				t.Fatalf("gateway = %v, want %v", s.Gateway(), tt.wantGW)
			}
		})
	}
}

func TestDynamicSkipsReserved(t *testing.T) {
	s := mustSubnet(t, Config{Subnet: pfx("10.0.0.0/29"), AuxAddress: map[string]netip.Addr{"a": ip("10.0.0.3"), "b": ip("10.0.0.4")}})
	var got []netip.Addr
	for {
		a, err := s.Allocate(netip.Addr{})
		if errors.Is(err, ErrNoAvailableAddress) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a)
		if len(got) > 8 {
			t.Fatalf("more addresses than a /29 holds: %v", got)
		}
	}
	// .0 network, .1 gateway, .3 .4 aux, .7 broadcast
	want := []netip.Addr{ip("10.0.0.2"), ip("10.0.0.5"), ip("10.0.0.6")}
	if !slices.Equal(got, want) {
		t.Fatalf("allocated %v, want %v", got, want)
	}
	for _, a := range []string{"10.0.0.1", "10.0.0.3"} {
		if _, err := s.Allocate(ip(a)); !errors.Is(err, ErrAddressInUse) {
			t.Errorf("static %s (reserved) err = %v, want ErrAddressInUse", a, err)
		}
	}
	// Releasing a reserved address does not free it.
	if err := s.Release(ip("10.0.0.3")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allocate(netip.Addr{}); !errors.Is(err, ErrNoAvailableAddress) {
		t.Fatalf("after releasing aux: err = %v, want ErrNoAvailableAddress", err)
	}
}

func TestIPRangeLimitsDynamicOnly(t *testing.T) {
	s := mustSubnet(t, Config{Subnet: pfx("10.0.0.0/24"), IPRange: pfx("10.0.0.252/30")})
	var got []netip.Addr
	for range 3 {
		got = append(got, alloc(t, s))
	}
	// .252 .253 .254 (.255 is the broadcast address)
	if want := []netip.Addr{ip("10.0.0.252"), ip("10.0.0.253"), ip("10.0.0.254")}; !slices.Equal(got, want) {
		t.Fatalf("dynamic = %v, want %v", got, want)
	}
	if _, err := s.Allocate(netip.Addr{}); !errors.Is(err, ErrNoAvailableAddress) || err.Error() != "no available addresses on this pool: 10.0.0.0/24" {
		t.Fatalf("exhausted range err = %v", err)
	}
	if a, err := s.Allocate(ip("10.0.0.7")); err != nil || a != ip("10.0.0.7") {
		t.Fatalf("static outside ip-range = %v, %v", a, err)
	}
}

func TestStatic(t *testing.T) {
	s := mustSubnet(t, Config{Subnet: pfx("10.0.0.0/24")})
	if a, err := s.Allocate(ip("10.0.0.50")); err != nil || a != ip("10.0.0.50") {
		t.Fatalf("static = %v, %v", a, err)
	}
	tests := []struct {
		ip      string
		sent    error
		wantMsg string
	}{
		{"10.0.0.50", ErrAddressInUse, "Address already in use: 10.0.0.50"},
		{"10.0.0.1", ErrAddressInUse, "Address already in use: 10.0.0.1"},
		{"10.0.1.5", ErrInvalid, "no configured subnet contains IP address 10.0.1.5"},
		{"10.0.0.0", ErrInvalid, "invalid IP address 10.0.0.0: it is the network or broadcast address of 10.0.0.0/24"},
		{"10.0.0.255", ErrInvalid, "invalid IP address 10.0.0.255: it is the network or broadcast address of 10.0.0.0/24"},
		{"2001:db8::1", ErrInvalid, "no configured subnet contains IP address 2001:db8::1"},
	}
	for _, tt := range tests {
		_, err := s.Allocate(ip(tt.ip))
		if !errors.Is(err, tt.sent) || err.Error() != tt.wantMsg {
			t.Errorf("static %s: err = %v, want %q", tt.ip, err, tt.wantMsg)
		}
	}
	// Static allocation does not move the cursor.
	if a := alloc(t, s); a != ip("10.0.0.2") {
		t.Fatalf("dynamic after static = %v, want 10.0.0.2", a)
	}
}

func TestSerialReuseAndWrap(t *testing.T) {
	s := mustSubnet(t, Config{Subnet: pfx("10.0.0.0/29")}) // hosts .2-.6 after gateway
	for _, want := range []string{"10.0.0.2", "10.0.0.3", "10.0.0.4"} {
		if a := alloc(t, s); a != ip(want) {
			t.Fatalf("got %v, want %s", a, want)
		}
	}
	if err := s.Release(ip("10.0.0.3")); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ip("10.0.0.3")); err != nil { // twice is harmless
		t.Fatal(err)
	}
	// The freed .3 is not handed out again at once.
	for _, want := range []string{"10.0.0.5", "10.0.0.6", "10.0.0.3"} {
		if a := alloc(t, s); a != ip(want) {
			t.Fatalf("got %v, want %s", a, want)
		}
	}
	if _, err := s.Allocate(netip.Addr{}); !errors.Is(err, ErrNoAvailableAddress) {
		t.Fatalf("full: err = %v", err)
	}
	if err := s.Release(ip("10.0.0.2")); err != nil {
		t.Fatal(err)
	}
	if a := alloc(t, s); a != ip("10.0.0.2") { // wraps past the end
		t.Fatalf("wrap got %v, want 10.0.0.2", a)
	}
	if err := s.Release(ip("10.1.0.2")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("release outside: err = %v", err)
	}
}

func TestExhaustSlash24NoDuplicates(t *testing.T) {
	s := mustSubnet(t, Config{Subnet: pfx("10.0.0.0/24")})
	seen := map[netip.Addr]bool{}
	for i := 0; ; i++ {
		a, err := s.Allocate(netip.Addr{})
		if errors.Is(err, ErrNoAvailableAddress) {
			break
		}
		if err != nil || i > 300 {
			t.Fatalf("allocation %d: %v, %v", i, a, err)
		}
		if seen[a] || a == s.Gateway() || !s.isHost(a) {
			t.Fatalf("bad or duplicate address %v", a)
		}
		seen[a] = true
	}
	if len(seen) != 253 || len(s.InUse()) != 253 {
		t.Fatalf("allocated %d (InUse %d), want 253", len(seen), len(s.InUse()))
	}
	// Free a few scattered ones; exactly those come back, in serial order.
	for _, a := range []string{"10.0.0.200", "10.0.0.7", "10.0.0.100"} {
		if err := s.Release(ip(a)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"10.0.0.7", "10.0.0.100", "10.0.0.200"} {
		if a := alloc(t, s); a != ip(want) {
			t.Fatalf("refill got %v, want %s", a, want)
		}
	}
}

func TestTinySubnets(t *testing.T) {
	s31 := mustSubnet(t, Config{Subnet: pfx("10.0.0.0/31")})
	if a := alloc(t, s31); a != ip("10.0.0.1") {
		t.Fatalf("/31 got %v", a)
	}
	s32 := mustSubnet(t, Config{Subnet: pfx("10.0.0.9/32")})
	if _, err := s32.Allocate(netip.Addr{}); !errors.Is(err, ErrNoAvailableAddress) {
		t.Fatalf("/32 err = %v", err)
	}
}

func TestLargeSubnet(t *testing.T) {
	s := mustSubnet(t, Config{Subnet: pfx("10.0.0.0/8")})
	for range 1000 {
		alloc(t, s)
	}
	if _, err := s.Allocate(ip("10.255.255.254")); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 200 {
		t.Fatalf("state of 1001 addresses is %d bytes: %s", len(b), b)
	}
	if a := alloc(t, s); a != ip("10.0.3.234") { // .2 + 1000
		t.Fatalf("next = %v", a)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	s := mustSubnet(t, Config{Subnet: pfx("10.0.0.0/24"), IPRange: pfx("10.0.0.0/25"), AuxAddress: map[string]netip.Addr{"r": ip("10.0.0.10")}})
	for range 20 {
		alloc(t, s)
	}
	for _, a := range []string{"10.0.0.5", "10.0.0.6", "10.0.0.15"} {
		if err := s.Release(ip(a)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Allocate(ip("10.0.0.200")); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"Config":{"Subnet":"10.0.0.0/24","IPRange":"10.0.0.0/25","Gateway":"10.0.0.1","AuxiliaryAddresses":{"r":"10.0.0.10"}},` +
		`"Allocated":["10.0.0.2-10.0.0.4","10.0.0.7-10.0.0.9","10.0.0.11-10.0.0.14","10.0.0.16-10.0.0.22","10.0.0.200"],"Last":"10.0.0.22"}`
	if string(b) != want {
		t.Fatalf("JSON:\n got %s\nwant %s", b, want)
	}
	var back Subnet
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.InUse(), s.InUse()) || back.Last() != s.Last() || back.Gateway() != s.Gateway() {
		t.Fatalf("round trip lost state: %v / %v", back.InUse(), back.Last())
	}
	// Both continue identically: after the cursor, not at the freed .5.
	for range 3 {
		a1, a2 := alloc(t, s), alloc(t, &back)
		if a1 != a2 {
			t.Fatalf("diverged: %v vs %v", a1, a2)
		}
	}
	if a := alloc(t, &back); a != ip("10.0.0.26") {
		t.Fatalf("next = %v, want 10.0.0.26", a)
	}
	if _, err := back.Allocate(ip("10.0.0.10")); !errors.Is(err, ErrAddressInUse) {
		t.Fatalf("aux after round trip: err = %v", err)
	}
}

func TestJSONRejectsCorruptState(t *testing.T) {
	head := `{"Config":{"Subnet":"10.0.0.0/24","Gateway":"10.0.0.1"},`
	tests := map[string]string{
		"garbage":        `{`,
		"bad config":     `{"Config":{"Subnet":"10.0.0.0/24","Gateway":"10.0.1.1"}}`,
		"outside":        head + `"Allocated":["10.0.1.2"]}`,
		"broadcast":      head + `"Allocated":["10.0.0.255"]}`,
		"reversed run":   head + `"Allocated":["10.0.0.9-10.0.0.3"]}`,
		"not ascending":  head + `"Allocated":["10.0.0.9","10.0.0.3"]}`,
		"overlapping":    head + `"Allocated":["10.0.0.2-10.0.0.9","10.0.0.5"]}`,
		"holds gateway":  head + `"Allocated":["10.0.0.1-10.0.0.4"]}`,
		"bad address":    head + `"Allocated":["10.0.0.x"]}`,
		"cursor outside": head + `"Last":"10.0.1.1"}`,
	}
	for name, in := range tests {
		var s Subnet
		if err := s.UnmarshalJSON([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	// Adjacent runs are merged.
	var s Subnet
	if err := json.Unmarshal([]byte(head+`"Allocated":["10.0.0.2-10.0.0.4","10.0.0.5"]}`), &s); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(&s)
	if !strings.Contains(string(b), `"Allocated":["10.0.0.2-10.0.0.5"]`) {
		t.Fatalf("not merged: %s", b)
	}
}

// FuzzUnmarshalSubnet: state read back from a store never panics, and state
// that is accepted round-trips and never hands out an allocated address.
func FuzzUnmarshalSubnet(f *testing.F) {
	f.Add(`{"Config":{"Subnet":"10.0.0.0/24","Gateway":"10.0.0.1"},"Allocated":["10.0.0.2-10.0.0.4","10.0.0.9"],"Last":"10.0.0.4"}`)
	f.Add(`{"Config":{"Subnet":"10.0.0.0/29","IPRange":"10.0.0.4/30","AuxiliaryAddresses":{"a":"10.0.0.5"}},"Allocated":["10.0.0.4","10.0.0.6"],"Last":"10.0.0.6"}`)
	f.Add(`{"Config":{"Subnet":"10.0.0.0/30"},"Allocated":["10.0.0.2-10.0.0.1"]}`)
	f.Add(`{"Config":{"Subnet":"10.0.0.0/31"},"Last":"10.0.0.1"}`)
	f.Fuzz(func(t *testing.T, in string) {
		var s Subnet
		if err := s.UnmarshalJSON([]byte(in)); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			return
		}
		b, err := json.Marshal(&s)
		if err != nil {
			t.Fatal(err)
		}
		var back Subnet
		if err := back.UnmarshalJSON(b); err != nil {
			t.Fatalf("re-read %s: %v", b, err)
		}
		if b2, _ := json.Marshal(&back); string(b2) != string(b) {
			t.Fatalf("unstable: %s vs %s", b, b2)
		}
		if s.Prefix().Bits() < 16 {
			return // keep each run cheap
		}
		held := map[netip.Addr]bool{}
		for _, a := range s.InUse() {
			held[a] = true
		}
		a, err := s.Allocate(netip.Addr{})
		if err == nil && (held[a] || a == s.Gateway() || !s.Contains(a)) {
			t.Fatalf("allocated %v: held %v, gateway %v", a, held[a], s.Gateway())
		}
	})
}
