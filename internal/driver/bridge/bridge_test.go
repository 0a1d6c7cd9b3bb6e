package bridge

import (
	"errors"
	"strings"
	"testing"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
)

func TestValidateOptions(t *testing.T) {
	d := New(Options{})
	tests := []struct {
		name string
		opts map[string]string
		ok   bool
	}{
		{"none", nil, true},
		{"unknown ignored", map[string]string{"foo": "bar"}, true},
		{"good", map[string]string{
			model.OptBridgeName: "br-test_1.x", model.OptMTU: "9000",
			model.OptICC: "false", model.OptMasquerade: "1", model.OptDefaultBridge: "true",
		}, true},
		{"mtu min", map[string]string{model.OptMTU: "68"}, true},
		{"mtu max", map[string]string{model.OptMTU: "65535"}, true},
		{"name 15", map[string]string{model.OptBridgeName: "abcdefghijklmno"}, true},
		{"name 16", map[string]string{model.OptBridgeName: "abcdefghijklmnop"}, false},
		{"name empty", map[string]string{model.OptBridgeName: ""}, false},
		{"name slash", map[string]string{model.OptBridgeName: "a/b"}, false},
		{"name colon", map[string]string{model.OptBridgeName: "a:b"}, false},
		{"name space", map[string]string{model.OptBridgeName: "a b"}, false},
		{"name dot", map[string]string{model.OptBridgeName: "."}, false},
		{"mtu low", map[string]string{model.OptMTU: "67"}, false},
		{"mtu high", map[string]string{model.OptMTU: "65536"}, false},
		{"mtu text", map[string]string{model.OptMTU: "big"}, false},
		{"icc", map[string]string{model.OptICC: "maybe"}, false},
		{"masquerade", map[string]string{model.OptMasquerade: ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.ValidateOptions(tt.opts)
			if tt.ok && err != nil {
				t.Fatalf("ValidateOptions(%v) = %v, want nil", tt.opts, err)
			}
			if !tt.ok {
				if !errors.Is(err, driver.ErrInvalid) {
					t.Fatalf("ValidateOptions(%v) = %v, want ErrInvalid", tt.opts, err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
			}
		})
	}
}

func TestNames(t *testing.T) {
	n := model.Network{ID: "0123456789abcdef0123"}
	if got := BridgeName(n); got != "vx-0123456789ab" {
		t.Errorf("BridgeName = %q", got)
	}
	n.Options = map[string]string{model.OptBridgeName: "mybr"}
	if got := BridgeName(n); got != "mybr" {
		t.Errorf("BridgeName with option = %q", got)
	}
	a, b := HostVethName("ep1"), HostVethName("ep2")
	if a == b || a != HostVethName("ep1") {
		t.Errorf("HostVethName not deterministic and distinct: %q %q", a, b)
	}
	for _, s := range []string{a, tempPeerName("ep1")} {
		if len(s) != 15 || validIfName(s) != nil {
			t.Errorf("name %q is not a valid 15-byte interface name", s)
		}
	}
	if !strings.HasPrefix(a, "vxv") {
		t.Errorf("HostVethName = %q, want vxv prefix", a)
	}
}
