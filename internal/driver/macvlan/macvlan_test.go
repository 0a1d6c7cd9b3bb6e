package macvlan

import (
	"errors"
	"testing"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
)

func TestOptions(t *testing.T) {
	good := map[string]netOptions{
		"eth0":    {parent: "eth0"},
		"eth0.10": {parent: "eth0.10", vlan: 10, base: "eth0"},
		"br.x":    {parent: "br.x"},
	}
	for p, want := range good {
		o, err := parseOptions(map[string]string{OptParent: p, OptMode: "bridge"})
		if err != nil || o != want {
			t.Errorf("parent %s: %+v, %v; want %+v", p, o, err, want)
		}
	}
	bad := []map[string]string{
		{OptParent: "eth0.0"},
		{OptParent: "eth0.4095"},
		{OptParent: "a/b"},
		{OptParent: "averyveryverylongname"},
		{OptMode: "vepa"},
		{OptMode: "passthru"},
		{"ipvlan_mode": "l2"},
		{model.OptMTU: "20"},
	}
	for _, opts := range bad {
		if _, err := parseOptions(opts); !errors.Is(err, driver.ErrInvalid) {
			t.Errorf("%v: err = %v, want ErrInvalid", opts, err)
		}
	}
	if err := checkNetwork(model.Network{}, netOptions{}); !errors.Is(err, driver.ErrInvalid) {
		t.Errorf("no parent, not internal: %v", err)
	}
	if err := checkNetwork(model.Network{Internal: true}, netOptions{}); err != nil {
		t.Errorf("no parent, internal: %v", err)
	}
	if a, b := IsolatedParentName("n1"), IsolatedParentName("n2"); a == b || len(a) > 15 {
		t.Errorf("isolated parent names %q %q", a, b)
	}
}
