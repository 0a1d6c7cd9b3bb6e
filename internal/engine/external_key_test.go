package engine

import (
	"errors"
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
