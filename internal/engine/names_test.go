package engine

import (
	"net/netip"
	"testing"

	"github.com/vxnet/vxnet/internal/model"
)

// The default route goes to the highest GwPriority among networks with a
// gateway and a way out; ties go to the network name that sorts first.
func TestDefaultRouteEndpoint(t *testing.T) {
	gw := []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.0.0.0/24"), Gateway: netip.MustParseAddr("10.0.0.1")}}
	nets := map[string]model.Network{
		"a": {ID: "a", Name: "alpha", Driver: "bridge", IPAM: gw},
		"b": {ID: "b", Name: "beta", Driver: "bridge", IPAM: gw},
		"i": {ID: "i", Name: "aaa-internal", Driver: "bridge", IPAM: gw, Internal: true},
		"o": {ID: "o", Name: "aaa-overlay", Driver: "overlay", IPAM: gw},
	}
	cases := []struct {
		eps  []model.Endpoint
		want string
	}{
		{[]model.Endpoint{{ID: "1", NetworkID: "b"}, {ID: "2", NetworkID: "a"}}, "2"},
		{[]model.Endpoint{{ID: "1", NetworkID: "a"}, {ID: "2", NetworkID: "b", GwPriority: 1}}, "2"},
		{[]model.Endpoint{{ID: "1", NetworkID: "a", GwPriority: -1}, {ID: "2", NetworkID: "b"}}, "2"},
		{[]model.Endpoint{{ID: "1", NetworkID: "i", GwPriority: 9}, {ID: "2", NetworkID: "o", GwPriority: 9}, {ID: "3", NetworkID: "b"}}, "3"},
		{[]model.Endpoint{{ID: "1", NetworkID: "i"}}, ""},
	}
	for i, c := range cases {
		if got := defaultRouteEndpoint(c.eps, nets); got != c.want {
			t.Errorf("case %d: %q, want %q", i, got, c.want)
		}
	}
}
