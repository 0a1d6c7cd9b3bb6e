package ipam

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/testreq"
)

func TestHostRoutesNoDefault(t *testing.T) {
	rs, err := HostRoutes()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Bits() == 0 || !r.Addr().Is4() {
			t.Fatalf("HostRoutes returned %v", r)
		}
	}
}

// TestHostRoutesInNamespace builds a namespace whose routes cover 172.17/16,
// and checks that a default pool request fed its routes skips that pool.
func TestHostRoutesInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		testreq.Skip(t, "needs root: creates a network namespace")
	}
	tok := make([]byte, 4)
	rand.Read(tok)
	path := filepath.Join(t.TempDir(), "ipam-"+hex.EncodeToString(tok))
	if err := netns.Create(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(path); err != nil {
			t.Error(err)
		}
	})
	h, err := netns.Handle(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// A veth pair with both ends inside (the dummy module may be absent).
	link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v0"}, PeerName: "v1"}
	if err := h.LinkAdd(link); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"v0", "v1"} {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	addr, _ := netlink.ParseAddr("198.51.100.1/24")
	if err := h.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"172.17.0.0/16", "0.0.0.0/0"} {
		_, n, _ := net.ParseCIDR(dst)
		if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: n}); err != nil {
			t.Fatalf("route %s: %v", dst, err)
		}
	}
	rs, err := HostRoutesAt(h)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(rs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	want := []netip.Prefix{pfx("172.17.0.0/16"), pfx("198.51.100.0/24")}
	if !slices.Equal(rs, want) {
		t.Fatalf("HostRoutesAt = %v, want %v", rs, want)
	}
	got, err := NewAllocator().RequestPool("n", nil, rs)
	if err != nil || got[0].Subnet != pfx("172.18.0.0/16") {
		t.Fatalf("RequestPool with namespace routes = %v, %v", got, err)
	}
}
