package overlay

import (
	"net"
	"net/netip"
	"reflect"
	"testing"
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

var (
	local = netip.MustParseAddr("192.0.2.1")
	vtep2 = netip.MustParseAddr("192.0.2.2")
	vtep3 = netip.MustParseAddr("192.0.2.3")
	ipA   = netip.MustParseAddr("198.51.100.11")
	ipB   = netip.MustParseAddr("198.51.100.12")
	ipC   = netip.MustParseAddr("198.51.100.13")
	macA  = mac("02:42:c6:33:64:0b")
	macB  = mac("02:42:c6:33:64:0c")
	macC  = mac("02:42:c6:33:64:0d")
)

func TestDesiredState(t *testing.T) {
	peers := []Peer{
		{IP: ipA, MAC: macA, VTEP: local},        // local: ignored
		{IP: ipB, MAC: macB, VTEP: vtep2},        //
		{IP: ipC, MAC: macC, VTEP: vtep2},        // same VTEP: one BUM entry
		{IP: ipC, MAC: nil, VTEP: vtep3},         // invalid MAC: ignored
		{IP: ipB, MAC: macB, VTEP: netip.Addr{}}, // no VTEP: ignored
	}
	got := desiredState(local, peers)
	want := State{
		FDB: []FDBEntry{
			{MAC: zeroMAC, VTEP: vtep2},
			{MAC: macB, VTEP: vtep2},
			{MAC: macC, VTEP: vtep2},
		},
		Neigh: []NeighEntry{{IP: ipB, MAC: macB}, {IP: ipC, MAC: macC}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("desiredState:\n got %+v\nwant %+v", got, want)
	}
}

func TestDiff(t *testing.T) {
	desired := desiredState(local, []Peer{
		{IP: ipB, MAC: macB, VTEP: vtep2},
		{IP: ipC, MAC: macC, VTEP: vtep3},
	})
	tests := []struct {
		name   string
		actual State
		check  func(t *testing.T, p plan)
	}{
		{
			name:   "empty kernel: add everything, delete nothing",
			actual: State{},
			check: func(t *testing.T, p plan) {
				if len(p.fdbReplace) != 2 || len(p.fdbAppend) != 2 || len(p.neighSet) != 2 {
					t.Errorf("want 2 replace, 2 append, 2 neigh; got %+v", p)
				}
				if len(p.fdbDel)+len(p.neighDel) != 0 {
					t.Errorf("want no deletes, got %+v", p)
				}
			},
		},
		{
			name:   "in sync: no-op",
			actual: desired,
			check: func(t *testing.T, p plan) {
				if !p.empty() {
					t.Errorf("want empty plan, got %+v", p)
				}
			},
		},
		{
			name: "moved MAC, stale neighbour, extra peer",
			actual: State{
				FDB: []FDBEntry{
					{MAC: zeroMAC, VTEP: vtep2},
					{MAC: zeroMAC, VTEP: vtep3},
					{MAC: macB, VTEP: vtep3}, // moved to vtep2
					{MAC: macC, VTEP: vtep3},
					{MAC: macA, VTEP: vtep2}, // gone
				},
				Neigh: []NeighEntry{
					{IP: ipB, MAC: macB},
					{IP: ipC, MAC: nil},  // not permanent
					{IP: ipA, MAC: macA}, // gone
				},
			},
			check: func(t *testing.T, p plan) {
				wantP := plan{
					fdbReplace: []FDBEntry{{MAC: macB, VTEP: vtep2}},
					neighSet:   []NeighEntry{{IP: ipC, MAC: macC}},
					neighDel:   []NeighEntry{{IP: ipA, MAC: macA}},
					fdbDel:     []FDBEntry{{MAC: macB, VTEP: vtep3}, {MAC: macA, VTEP: vtep2}},
					keepMACs:   map[string]bool{string(macB): true, string(macC): true},
				}
				if !reflect.DeepEqual(p, wantP) {
					t.Errorf("plan:\n got %+v\nwant %+v", p, wantP)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.check(t, diff(desired, tt.actual)) })
	}
}

// An endpoint with an IPv6 address gets a second neighbour entry (the
// VXLAN proxy answers neighbour solicitations from it), to the same MAC.
func TestDesiredStateIPv6(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x42, 10, 0, 0, 2}
	p := Peer{IP: netip.MustParseAddr("10.0.0.2"), IP6: netip.MustParseAddr("fd00::2"), MAC: mac, VTEP: netip.MustParseAddr("192.0.2.2")}
	s := desiredState(netip.MustParseAddr("192.0.2.1"), []Peer{p})
	if len(s.Neigh) != 2 || s.Neigh[0].IP != p.IP || s.Neigh[1].IP != p.IP6 || s.Neigh[1].MAC.String() != mac.String() {
		t.Fatalf("neighbours %+v, want %s and %s -> %s", s.Neigh, p.IP, p.IP6, mac)
	}
	if len(s.FDB) != 2 {
		t.Fatalf("fdb %+v, want the MAC and the replication entry", s.FDB)
	}
}
