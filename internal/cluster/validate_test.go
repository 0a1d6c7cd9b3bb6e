package cluster

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/vxnet/vxnet/internal/model"
)

var (
	vNet  = oid("v-net")
	vEP1  = oid("v-ep1")
	vEP2  = oid("v-ep2")
	vEP3  = oid("v-ep3")
	vSelf = nid("v-self")
	vPeer = nid("v-peer")
	vEvil = nid("v-evil")
)

func vNetwork() model.Network {
	return model.Network{ID: vNet, Name: "prod", Driver: "overlay", Scope: model.ScopeGlobal, VNI: 4096,
		IPAM: []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.5.0.0/24"), Gateway: netip.MustParseAddr("10.5.0.1")}}}
}

func vAdvert(ep, node, ip, vtep string) Advert {
	a := netip.MustParseAddr(ip)
	return Advert{NetworkID: vNet, EndpointID: ep, IP: a, MAC: model.MACForIP(a), VTEP: netip.MustParseAddr(vtep),
		NodeID: node, Name: "c1", key: "/vxnet/v1/adverts/" + node + "/" + vNet + "/" + ep}
}

func vNetwork6() model.Network {
	n := vNetwork()
	n.EnableIPv6 = true
	n.IPAM = append(n.IPAM, model.IPAMConfig{Subnet: netip.MustParsePrefix("fd00:5::/64"), Gateway: netip.MustParseAddr("fd00:5::1")})
	return n
}

func TestValidateNetwork(t *testing.T) {
	ok := vNetwork()
	if err := ValidateNetwork(vNet, ok); err != nil {
		t.Fatalf("valid network refused: %v", err)
	}
	if err := ValidateNetwork(vNet, vNetwork6()); err != nil {
		t.Fatalf("valid dual-stack network refused: %v", err)
	}
	for name, mutate := range map[string]func(*model.Network){
		"short ID":          func(n *model.Network) { n.ID = "abc" },
		"upper-case ID":     func(n *model.Network) { n.ID = strings.ToUpper(n.ID) },
		"ID not the key's":  func(n *model.Network) { n.ID = oid("other") },
		"name with newline": func(n *model.Network) { n.Name = "prod\n10.0.0.1 evil" },
		"empty name":        func(n *model.Network) { n.Name = "" },
		"name with slash":   func(n *model.Network) { n.Name = "a/b" },
		"name with tab":     func(n *model.Network) { n.Name = "a\tb" },
		"local scope":       func(n *model.Network) { n.Scope = model.ScopeLocal },
		"predefined":        func(n *model.Network) { n.Predefined = true },
		"VNI 0":             func(n *model.Network) { n.VNI = 0 },
		"VNI too big":       func(n *model.Network) { n.VNI = 1 << 24 },
		"no subnet":         func(n *model.Network) { n.IPAM = nil },
		"gateway outside": func(n *model.Network) {
			n.IPAM[0].Gateway = netip.MustParseAddr("10.6.0.1")
		},
		"overlapping subnets": func(n *model.Network) {
			n.IPAM = append(n.IPAM, model.IPAMConfig{Subnet: netip.MustParsePrefix("10.5.0.128/25")})
		},
		"host bits in subnet": func(n *model.Network) { n.IPAM[0].Subnet = netip.MustParsePrefix("10.5.0.7/24") },
		"option with newline": func(n *model.Network) { n.Options = map[string]string{"a": "b\nc"} },
		"driver with space":   func(n *model.Network) { n.Driver = "over lay" },
		"IPv6 subnet without EnableIPv6": func(n *model.Network) {
			n.IPAM = append(n.IPAM, model.IPAMConfig{Subnet: netip.MustParsePrefix("fd00:5::/64")})
		},
		"IPv6 enabled without IPv6 subnet": func(n *model.Network) { n.EnableIPv6 = true },
		"only an IPv6 subnet": func(n *model.Network) {
			n.EnableIPv6 = true
			n.IPAM[0] = model.IPAMConfig{Subnet: netip.MustParsePrefix("fd00:5::/64")}
		},
		"IPv6 subnet with host bits": func(n *model.Network) {
			n.EnableIPv6 = true
			n.IPAM = append(n.IPAM, model.IPAMConfig{Subnet: netip.MustParsePrefix("fd00:5::7/64")})
		},
	} {
		t.Run(name, func(t *testing.T) {
			n := vNetwork()
			mutate(&n)
			if err := ValidateNetwork(vNet, n); err == nil || !IsInvalidRecord(err) {
				t.Fatalf("ValidateNetwork accepted %+v (err %v)", n, err)
			}
		})
	}
}

func TestValidateAdvert(t *testing.T) {
	good := vAdvert(vEP1, vPeer, "10.5.0.2", "192.0.2.2")
	if err := ValidateAdvert(vPeer, vNet, vEP1, good); err != nil {
		t.Fatalf("valid advert refused: %v", err)
	}
	good.IP6, good.ContainerID = netip.MustParseAddr("fd00:5::2"), oid("ctr")
	if err := ValidateAdvert(vPeer, vNet, vEP1, good); err != nil {
		t.Fatalf("valid advert with IPv6 address and container ID refused: %v", err)
	}
	for name, mutate := range map[string]func(*Advert){
		"short network ID":   func(a *Advert) { a.NetworkID = "0123" },
		"other network":      func(a *Advert) { a.NetworkID = oid("x") },
		"short endpoint ID":  func(a *Advert) { a.EndpointID = "ep" },
		"endpoint not key":   func(a *Advert) { a.EndpointID = vEP2 },
		"node ID":            func(a *Advert) { a.NodeID = "n1" },
		"node not the key's": func(a *Advert) { a.NodeID = vEvil },
		"no IP":              func(a *Advert) { a.IP = netip.Addr{} },
		"multicast IP":       func(a *Advert) { a.IP = netip.MustParseAddr("224.0.0.1") },
		"loopback IP":        func(a *Advert) { a.IP = netip.MustParseAddr("127.0.0.1") },
		"zero MAC":           func(a *Advert) { a.MAC = make([]byte, 6) },
		"multicast MAC":      func(a *Advert) { a.MAC = []byte{1, 0, 0x5e, 0, 0, 1} },
		"long MAC":           func(a *Advert) { a.MAC = make([]byte, 8) },
		"no VTEP":            func(a *Advert) { a.VTEP = netip.Addr{} },
		"name with newline":  func(a *Advert) { a.Name = "web\n10.5.0.9 bank" },
		"alias with space":   func(a *Advert) { a.Aliases = []string{"a b"} },
		"too many aliases":   func(a *Advert) { a.Aliases = make([]string, 100) },
		"IPv4 as IPv6":       func(a *Advert) { a.IP6 = netip.MustParseAddr("10.5.0.3") },
		"IPv4-mapped IPv6":   func(a *Advert) { a.IP6 = netip.MustParseAddr("::ffff:10.5.0.3") },
		"loopback IPv6":      func(a *Advert) { a.IP6 = netip.IPv6Loopback() },
		"link-local IPv6":    func(a *Advert) { a.IP6 = netip.MustParseAddr("fe80::1") },
		"multicast IPv6":     func(a *Advert) { a.IP6 = netip.MustParseAddr("ff02::1") },
		"short container ID": func(a *Advert) { a.ContainerID = "abc" },
		"container ID text":  func(a *Advert) { a.ContainerID = strings.Repeat("z", 64) },
	} {
		t.Run(name, func(t *testing.T) {
			a := vAdvert(vEP1, vPeer, "10.5.0.2", "192.0.2.2")
			mutate(&a)
			if err := ValidateAdvert(vPeer, vNet, vEP1, a); err == nil || !IsInvalidRecord(err) {
				t.Fatalf("ValidateAdvert accepted %+v (err %v)", a, err)
			}
		})
	}
}

func TestValidateNode(t *testing.T) {
	r := nodeRecord{ID: vPeer, Hostname: "host-1", Addr: netip.MustParseAddr("192.0.2.2"), Role: RoleVoter}
	if err := validateNode(vPeer, r); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*nodeRecord){
		"short ID":       func(r *nodeRecord) { r.ID = "n" },
		"ID not key's":   func(r *nodeRecord) { r.ID = vEvil },
		"no address":     func(r *nodeRecord) { r.Addr = netip.Addr{} },
		"any address":    func(r *nodeRecord) { r.Addr = netip.IPv4Unspecified() },
		"hostname \\n":   func(r *nodeRecord) { r.Hostname = "h\nx" },
		"hostname space": func(r *nodeRecord) { r.Hostname = "h x" },
		"unknown role":   func(r *nodeRecord) { r.Role = "king" },
		"multicast VTE":  func(r *nodeRecord) { r.Addr = netip.MustParseAddr("239.1.1.1") },
	} {
		t.Run(name, func(t *testing.T) {
			x := r
			mutate(&x)
			if err := validateNode(vPeer, x); err == nil {
				t.Fatalf("validateNode accepted %+v", x)
			}
		})
	}
}

func advKeys(ads []Advert) string {
	var out []string
	for _, a := range ads {
		out = append(out, a.EndpointID[:4]+"@"+a.NodeID[:4])
	}
	return strings.Join(out, ",")
}

func TestFilterAdverts(t *testing.T) {
	n := vNetwork()
	nodes := map[string]netip.Addr{
		vSelf: netip.MustParseAddr("192.0.2.1"),
		vPeer: netip.MustParseAddr("192.0.2.2"),
		vEvil: netip.MustParseAddr("192.0.2.3"),
	}
	mine := vAdvert(vEP1, vSelf, "10.5.0.2", "192.0.2.1")
	mine.created = 50
	peer := vAdvert(vEP2, vPeer, "10.5.0.3", "192.0.2.2")
	peer.created = 10

	tests := []struct {
		name string
		ads  []Advert
		want string
	}{
		{"all good", []Advert{mine, peer}, advKeys([]Advert{mine, peer})},
		{"address outside the subnet", []Advert{mine, with(peer, func(a *Advert) { a.IP = netip.MustParseAddr("10.6.0.3") })}, advKeys([]Advert{mine})},
		{"gateway address", []Advert{with(peer, func(a *Advert) { a.IP = netip.MustParseAddr("10.5.0.1") })}, ""},
		{"broadcast address", []Advert{with(peer, func(a *Advert) { a.IP = netip.MustParseAddr("10.5.0.255") })}, ""},
		{"unregistered node", []Advert{with(peer, func(a *Advert) { a.NodeID = nid("ghost") })}, ""},
		{"VTEP not the node's", []Advert{with(peer, func(a *Advert) { a.VTEP = netip.MustParseAddr("203.0.113.9") })}, ""},
		{"another member claims my address (created earlier)", []Advert{mine, vAdvert(vEP3, vEvil, "10.5.0.2", "192.0.2.3")}, advKeys([]Advert{mine})},
		{"a later claim on a peer's address", []Advert{peer, with(vAdvert(vEP3, vEvil, "10.5.0.3", "192.0.2.3"), func(a *Advert) { a.created = 20 })}, advKeys([]Advert{peer})},
		{"a claim on a peer's MAC", []Advert{peer, with(vAdvert(vEP3, vEvil, "10.5.0.9", "192.0.2.3"), func(a *Advert) { a.created = 20; a.MAC = peer.MAC })}, advKeys([]Advert{peer})},
		{"a claim on a peer's endpoint", []Advert{peer, with(vAdvert(vEP2, vEvil, "10.5.0.9", "192.0.2.3"), func(a *Advert) { a.created = 20; a.key += "x" })}, advKeys([]Advert{peer})},
		{"wrong network", []Advert{with(peer, func(a *Advert) { a.NetworkID = oid("x") })}, ""},
		{"IPv6 address on a network without IPv6", []Advert{with(peer, func(a *Advert) { a.IP6 = netip.MustParseAddr("fd00:5::3") })}, ""},
	}
	n6 := vNetwork6()
	peer6 := with(peer, func(a *Advert) { a.IP6 = netip.MustParseAddr("fd00:5::3") })
	tests6 := []struct {
		name string
		ads  []Advert
		want string
	}{
		{"IPv6: all good", []Advert{mine, peer6}, advKeys([]Advert{mine, peer6})},
		{"IPv6: no IPv6 address (older host)", []Advert{mine, peer}, advKeys([]Advert{mine, peer})},
		{"IPv6: address outside the subnet", []Advert{with(peer6, func(a *Advert) { a.IP6 = netip.MustParseAddr("fd00:6::3") })}, ""},
		{"IPv6: gateway address", []Advert{with(peer6, func(a *Advert) { a.IP6 = netip.MustParseAddr("fd00:5::1") })}, ""},
		{"IPv6: subnet-router anycast address", []Advert{with(peer6, func(a *Advert) { a.IP6 = netip.MustParseAddr("fd00:5::") })}, ""},
		{"IPv6: IPv4 subnet's address as IPv6", []Advert{with(peer6, func(a *Advert) { a.IP6 = netip.MustParseAddr("10.5.0.9") })}, ""},
		{"IPv6: a later claim on a peer's IPv6 address", []Advert{peer6, with(vAdvert(vEP3, vEvil, "10.5.0.9", "192.0.2.3"), func(a *Advert) { a.created = 20; a.IP6 = peer6.IP6 })}, advKeys([]Advert{peer6})},
	}
	for _, tt := range tests6 {
		t.Run(tt.name, func(t *testing.T) {
			kept, rejected := FilterAdverts(n6, tt.ads, nodes, vSelf, nil)
			if got := advKeys(kept); got != tt.want {
				t.Fatalf("kept %s, want %s (rejected %+v)", got, tt.want, rejected)
			}
			if len(kept)+len(rejected) != len(tt.ads) {
				t.Fatalf("%d kept + %d rejected != %d given", len(kept), len(rejected), len(tt.ads))
			}
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kept, rejected := FilterAdverts(n, tt.ads, nodes, vSelf, nil)
			if got := advKeys(kept); got != tt.want {
				t.Fatalf("kept %s, want %s (rejected %+v)", got, tt.want, rejected)
			}
			if len(kept)+len(rejected) != len(tt.ads) {
				t.Fatalf("%d kept + %d rejected != %d given", len(kept), len(rejected), len(tt.ads))
			}
			for _, r := range rejected {
				if r.Key == "" || !IsInvalidRecord(r.Reason) {
					t.Fatalf("rejection without key or reason: %+v", r)
				}
				if want := strings.Contains(tt.name, "claim"); r.Dispute != want {
					t.Fatalf("rejection %v: dispute %v, want %v", r.Reason, r.Dispute, want)
				}
			}
		})
	}
	t.Run("owner record wins over the first claim", func(t *testing.T) {
		evil := with(vAdvert(vEP3, vEvil, "10.5.0.3", "192.0.2.3"), func(a *Advert) { a.created = 5 })
		owners := map[netip.Addr]AddrOwner{peer.IP: {Node: vPeer}}
		kept, _ := FilterAdverts(n, []Advert{peer, evil}, nodes, vSelf, owners)
		if advKeys(kept) != advKeys([]Advert{peer}) {
			t.Fatalf("kept %s", advKeys(kept))
		}
		kept, _ = FilterAdverts(n, []Advert{evil}, nodes, vSelf, owners)
		if len(kept) != 0 {
			t.Fatalf("an advert for an address owned by another node was kept: %s", advKeys(kept))
		}
	})
}

// The decision on one advertisement against its address's owner record.
func TestCheckOwner(t *testing.T) {
	a := vAdvert(vEP2, vPeer, "10.5.0.3", "192.0.2.2")
	for _, tt := range []struct {
		name string
		o    AddrOwner
		has  bool
		ok   bool
	}{
		{"owned by the node and endpoint", AddrOwner{Node: vPeer, Endpoint: vEP2}, true, true},
		{"owned by the node, no endpoint recorded", AddrOwner{Node: vPeer}, true, true},
		{"no owner record (never allocated)", AddrOwner{}, false, false},
		{"allocated to another node", AddrOwner{Node: vEvil, Endpoint: vEP2}, true, false},
		{"allocated to another endpoint of the node", AddrOwner{Node: vPeer, Endpoint: vEP3}, true, false},
	} {
		err := CheckOwner(a, a.IP, tt.o, tt.has)
		if (err == nil) != tt.ok || (err != nil && !IsInvalidRecord(err)) {
			t.Errorf("%s: CheckOwner = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

// Both addresses of a dual-stack advertisement must be the node's.
func TestCheckOwnersDualStack(t *testing.T) {
	a := vAdvert(vEP2, vPeer, "10.5.0.3", "192.0.2.2")
	a.IP6 = netip.MustParseAddr("fd00:5::3")
	owners := map[netip.Addr]AddrOwner{a.IP: {Node: vPeer, Endpoint: vEP2}}
	if err := checkOwners(a, owners); err == nil {
		t.Fatal("an IPv6 address without an owner record passed")
	}
	owners[a.IP6] = AddrOwner{Node: vEvil}
	if err := checkOwners(a, owners); err == nil {
		t.Fatal("an IPv6 address of another node passed")
	}
	owners[a.IP6] = AddrOwner{Node: vPeer, Endpoint: vEP2}
	if err := checkOwners(a, owners); err != nil {
		t.Fatalf("owned addresses refused: %v", err)
	}
}

// With owner records, a lone advertisement (no competing claim) of an
// address IPAM gave to another member, or to nobody, is rejected; this
// node's own advertisements are not judged by them.
func TestFilterAdvertsLoneClaim(t *testing.T) {
	n := vNetwork()
	nodes := map[string]netip.Addr{
		vSelf: netip.MustParseAddr("192.0.2.1"),
		vPeer: netip.MustParseAddr("192.0.2.2"),
		vEvil: netip.MustParseAddr("192.0.2.3"),
	}
	mine := vAdvert(vEP1, vSelf, "10.5.0.2", "192.0.2.1")
	peer := vAdvert(vEP2, vPeer, "10.5.0.3", "192.0.2.2")
	owners := map[netip.Addr]AddrOwner{
		mine.IP:                         {Node: vSelf, Endpoint: vEP1},
		peer.IP:                         {Node: vPeer, Endpoint: vEP2},
		netip.MustParseAddr("10.5.0.9"): {Node: vPeer}, // a dead container's, still allocated
	}
	for _, tt := range []struct {
		name string
		ads  []Advert
		want []Advert
	}{
		{"legitimate", []Advert{mine, peer}, []Advert{mine, peer}},
		{"lone claim on an address of this node's container", []Advert{peer, vAdvert(vEP3, vEvil, "10.5.0.2", "192.0.2.3")}, []Advert{peer}},
		{"lone claim on another member's still-allocated address", []Advert{mine, vAdvert(vEP3, vEvil, "10.5.0.9", "192.0.2.3")}, []Advert{mine}},
		{"lone claim on an address never allocated", []Advert{mine, peer, vAdvert(vEP3, vEvil, "10.5.0.77", "192.0.2.3")}, []Advert{mine, peer}},
		{"the owner node advertising another endpoint on the address", []Advert{with(peer, func(a *Advert) { a.EndpointID = vEP3; a.key += "x" })}, nil},
		{"own advertisement without a visible owner record", []Advert{with(mine, func(a *Advert) { a.IP = netip.MustParseAddr("10.5.0.40") })},
			[]Advert{with(mine, func(a *Advert) { a.IP = netip.MustParseAddr("10.5.0.40") })}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kept, rejected := FilterAdverts(n, tt.ads, nodes, vSelf, owners)
			if advKeys(kept) != advKeys(tt.want) {
				t.Fatalf("kept %s, want %s (rejected %+v)", advKeys(kept), advKeys(tt.want), rejected)
			}
			for _, r := range rejected {
				if r.Key == "" || !IsInvalidRecord(r.Reason) {
					t.Fatalf("rejection without key or reason: %+v", r)
				}
			}
		})
	}
	// Without owner records (nil) only conflicts decide: the lone claim
	// passes, which is why the Cluster always passes its owner view.
	if kept, _ := FilterAdverts(n, []Advert{vAdvert(vEP3, vEvil, "10.5.0.9", "192.0.2.3")}, nodes, vSelf, nil); len(kept) != 1 {
		t.Fatalf("nil owners: kept %s", advKeys(kept))
	}
}

func with(a Advert, f func(*Advert)) Advert {
	f(&a)
	return a
}

// The decoders take whatever a member wrote; they must never panic, and
// what they accept must be valid.
func FuzzDecodeAdvert(f *testing.F) {
	good := string(encodeAdvert(vAdvert(vEP1, vPeer, "10.5.0.2", "192.0.2.2")))
	for _, s := range []string{good, "", "{", "null", `{"MAC":"zz"}`, `{"IP":"1.2.3.4","MAC":"00:00:00:00:00:00"}`,
		strings.Replace(good, `"c1"`, `"c1\n10.5.0.9 bank"`, 1), strings.Replace(good, vEP1, "ab", 1)} {
		f.Add("/vxnet/v1/adverts/"+vPeer+"/"+vNet+"/"+vEP1, s)
	}
	c := &Cluster{opts: Options{Prefix: DefaultPrefix}, log: nopLog(), invalid: map[string]invalidSeen{}}
	f.Fuzz(func(t *testing.T, key, val string) {
		a, ok := c.decodeAdvertKV(&mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: 1, ModRevision: 1})
		if !ok {
			return
		}
		parts := strings.SplitN(strings.TrimPrefix(key, DefaultPrefix+"/adverts/"), "/", 3)
		if err := ValidateAdvert(parts[0], parts[1], parts[2], a); err != nil {
			t.Fatalf("decoded an invalid advert: %v", err)
		}
		if strings.ContainsAny(a.Name+strings.Join(a.Aliases, ""), "\n\r\t ") {
			t.Fatalf("name with white space accepted: %q", a.Name)
		}
		kept, rej := FilterAdverts(vNetwork(), []Advert{a, a}, map[string]netip.Addr{a.NodeID: a.VTEP}, vSelf, nil)
		if len(kept)+len(rej) != 2 {
			t.Fatal("FilterAdverts lost an advert")
		}
	})
}

func FuzzDecodeNetwork(f *testing.F) {
	good, _ := json.Marshal(vNetwork())
	for _, s := range []string{string(good), "", "[]", `{"ID":"abc"}`, strings.Replace(string(good), `"prod"`, `"a\nb"`, 1)} {
		f.Add("/vxnet/v1/networks/id/"+vNet, s)
	}
	c := &Cluster{opts: Options{Prefix: DefaultPrefix}, log: nopLog(), invalid: map[string]invalidSeen{}}
	f.Fuzz(func(t *testing.T, key, val string) {
		n, ok := c.decodeNetwork(&mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), ModRevision: 1})
		if !ok {
			return
		}
		if len(n.ID) != ObjectIDLen || !ValidName(n.Name) || len(n.IPAM) == 0 {
			t.Fatalf("decoded an invalid network %+v", n)
		}
		_ = n.ID[:12] // what the engine logs
	})
}

func FuzzDecodeNode(f *testing.F) {
	good, _ := json.Marshal(nodeRecord{ID: vPeer, Hostname: "h", Addr: netip.MustParseAddr("192.0.2.2"), Role: RoleClient, LastSeen: time.Unix(1, 0)})
	for _, s := range []string{string(good), "", "{}", `{"ID":"` + vPeer + `","Addr":"::"}`} {
		f.Add("/vxnet/v1/nodes/"+vPeer, s)
	}
	c := &Cluster{opts: Options{Prefix: DefaultPrefix}, log: nopLog(), invalid: map[string]invalidSeen{}}
	f.Fuzz(func(t *testing.T, key, val string) {
		r, ok := c.decodeNode(&mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), ModRevision: 1})
		if ok && (!ValidHexID(r.ID, NodeIDLen) || !r.Addr.IsValid()) {
			t.Fatalf("decoded an invalid node %+v", r)
		}
	})
}

func nopLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// IPv6-only networks: the record has only IPv6 subnets and DisableIPv4;
// its advertisements carry IP6 and no IP, and the other way round is
// rejected on either kind of network.
func TestValidateIPv6Only(t *testing.T) {
	n := vNetwork6()
	n.DisableIPv4 = true
	n.IPAM = n.IPAM[1:]
	if err := ValidateNetwork(vNet, n); err != nil {
		t.Fatalf("IPv6-only network refused: %v", err)
	}
	with4 := vNetwork6()
	with4.DisableIPv4 = true
	if err := ValidateNetwork(vNet, with4); err == nil {
		t.Fatal("IPv6-only network with an IPv4 subnet accepted")
	}
	nodes := map[string]netip.Addr{vPeer: netip.MustParseAddr("192.0.2.2"), vEvil: netip.MustParseAddr("192.0.2.3")}
	only6 := vAdvert(vEP1, vPeer, "10.5.0.2", "192.0.2.2")
	only6.IP, only6.IP6 = netip.Addr{}, netip.MustParseAddr("fd00:5::2")
	if err := ValidateAdvert(vPeer, vNet, vEP1, only6); err != nil {
		t.Fatalf("advert with only an IPv6 address refused: %v", err)
	}
	other6 := with(vAdvert(vEP2, vEvil, "10.5.0.3", "192.0.2.3"), func(a *Advert) {
		a.IP, a.IP6, a.created = netip.Addr{}, netip.MustParseAddr("fd00:5::3"), 20
	})
	if kept, rej := FilterAdverts(n, []Advert{only6, other6}, nodes, vSelf, nil); len(kept) != 2 {
		t.Fatalf("two IPv6-only adverts: kept %s, rejected %+v", advKeys(kept), rej)
	}
	dup := with(other6, func(a *Advert) { a.IP6 = only6.IP6 })
	if kept, _ := FilterAdverts(n, []Advert{only6, dup}, nodes, vSelf, nil); advKeys(kept) != advKeys([]Advert{only6}) {
		t.Fatalf("a second claim on an IPv6 address kept: %s", advKeys(kept))
	}
	dual := with(only6, func(a *Advert) { a.IP = netip.MustParseAddr("10.5.0.2") })
	if kept, _ := FilterAdverts(n, []Advert{dual}, nodes, vSelf, nil); len(kept) != 0 {
		t.Fatal("an advert with an IPv4 address kept on an IPv6-only network")
	}
	if kept, _ := FilterAdverts(vNetwork6(), []Advert{only6}, nodes, vSelf, nil); len(kept) != 0 {
		t.Fatal("an advert without an IPv4 address kept on a dual-stack network")
	}
}

// Advertisements written before IPv6 and container IDs existed decode
// with neither and stay valid; new ones round-trip both.
func TestAdvertJSONCompat(t *testing.T) {
	old := `{"NetworkID":"` + vNet + `","EndpointID":"` + vEP1 + `","IP":"10.5.0.2","MAC":"02:42:0a:05:00:02","VTEP":"192.0.2.2","NodeID":"` + vPeer + `","Name":"c1"}`
	a, err := decodeAdvert([]byte(old))
	if err != nil || a.IP6.IsValid() || a.ContainerID != "" || a.Name != "c1" {
		t.Fatalf("old advert decoded as %+v, %v", a, err)
	}
	if err := ValidateAdvert(vPeer, vNet, vEP1, a); err != nil {
		t.Fatalf("old advert refused: %v", err)
	}
	a.IP6, a.ContainerID = netip.MustParseAddr("fd00:5::2"), oid("ctr")
	b, err := decodeAdvert(encodeAdvert(a))
	if err != nil || b.IP6 != a.IP6 || b.ContainerID != a.ContainerID {
		t.Fatalf("round trip: %+v, %v", b, err)
	}
}

// A cluster's underlay is one address family (a VXLAN device has one local
// address family): a node record of another host advertising the other
// family is skipped with a logged reason, and an advertisement whose VTEP
// is of the other family is rejected saying why, so neither is ever
// programmed; both directions.
func TestUnderlayFamily(t *testing.T) {
	v4, v4peer := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	v6, v6peer := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	const why = "a cluster's hosts all advertise IPv4 or all IPv6 addresses"
	for _, tc := range []struct {
		name              string
		self, same, other netip.Addr
	}{
		{"IPv4 host, IPv6 peer", v4, v4peer, v6peer},
		{"IPv6 host, IPv4 peer", v6, v6peer, v4peer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Advertisements: the peer's own registered address, of the
			// other family (a record that got past the node check).
			nodes := map[string]netip.Addr{vSelf: tc.self, vPeer: tc.other, vEvil: tc.same}
			odd := vAdvert(vEP2, vPeer, "10.5.0.3", tc.other.String())
			good := vAdvert(vEP3, vEvil, "10.5.0.4", tc.same.String())
			kept, rejected := FilterAdverts(vNetwork(), []Advert{odd, good}, nodes, vSelf, nil)
			if advKeys(kept) != advKeys([]Advert{good}) {
				t.Fatalf("kept %s, want only the same-family advertisement", advKeys(kept))
			}
			if len(rejected) != 1 || !strings.Contains(rejected[0].Reason.Error(), why) {
				t.Fatalf("rejected %+v, want the other family's VTEP with %q", rejected, why)
			}
			// Node records: the other family's is skipped and logged.
			var logged strings.Builder
			c := &Cluster{opts: Options{Prefix: DefaultPrefix, NodeID: vSelf, AdvertiseAddr: tc.self},
				log: slog.New(slog.NewTextHandler(&logged, nil)), invalid: map[string]invalidSeen{}}
			decode := func(id string, addr netip.Addr) bool {
				b, _ := json.Marshal(nodeRecord{ID: id, Hostname: "h", Addr: addr, Role: RoleClient})
				_, ok := c.decodeNode(&mvccpb.KeyValue{Key: []byte(DefaultPrefix + "/nodes/" + id), Value: b, ModRevision: 1})
				return ok
			}
			if !decode(vEvil, tc.same) {
				t.Fatalf("a node record of the same family was skipped: %s", logged.String())
			}
			if decode(vPeer, tc.other) {
				t.Fatal("a node record of the other family was accepted")
			}
			if !strings.Contains(logged.String(), why) || !strings.Contains(logged.String(), tc.other.String()) {
				t.Fatalf("the skipped node record's log does not say why: %s", logged.String())
			}
		})
	}
}
