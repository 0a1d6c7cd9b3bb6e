package engine

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// A Docker attachment's sandbox key (where vxnet serves DNS) must be an
// absolute path; CNI attachments take none.
func TestCheckExternalRequestSandboxKey(t *testing.T) {
	docker := api.ExternalAttach{Owner: model.OwnerDocker, Key: "ep1", Network: "prod", IfName: "vxdep1", Name: "vm3"}
	cni := api.ExternalAttach{Owner: model.OwnerCNI, Key: "c/eth0", Network: "prod", NetnsPath: "/run/netns/x", IfName: "eth0", Name: "x"}
	for _, tc := range []struct {
		req  api.ExternalAttach
		key  string
		want string
	}{
		{docker, "", ""},
		{docker, "/var/run/docker/netns/0123456789ab", ""},
		{docker, "netns/0123456789ab", "sandbox key"},
		{cni, "/var/run/docker/netns/0123456789ab", "CNI attachments take no sandbox key"},
	} {
		tc.req.SandboxKey = tc.key
		err := checkExternalRequest(tc.req)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s key %q: %v", tc.req.Owner, tc.key, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, model.ErrInvalid) {
			t.Errorf("%s key %q: got %v, want an invalid-request error with %q", tc.req.Owner, tc.key, err, tc.want)
		}
	}
}

// A static IPv6 address of an attachment must be an IPv6 address.
func TestCheckExternalRequestIP6(t *testing.T) {
	req := api.ExternalAttach{Owner: model.OwnerDocker, Key: "ep1", Network: "prod", IfName: "vxdep1", Name: "vm3"}
	for _, tc := range []struct {
		ip6  string
		want string
	}{
		{"fd00:97::a6", ""},
		{"10.0.0.5", "invalid IPv6 address"},
		{"::ffff:10.0.0.5", "invalid IPv6 address"},
	} {
		req.IP6 = netip.MustParseAddr(tc.ip6)
		err := checkExternalRequest(req)
		if (tc.want == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), tc.want) || !errors.Is(err, model.ErrInvalid))) {
			t.Errorf("IP6 %s: got %v, want %q", tc.ip6, err, tc.want)
		}
	}
}
