package engine_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
	"github.com/vxnet/vxnet/internal/model"
)

// A static address must lie in a subnet the user configured, in its
// ip-range if it has one (Docker 28's validateEndpointSettings), with
// Docker's wording: "invalid endpoint settings:\n..." on connect, prefixed
// by "invalid config for network N: " on create. Nothing is created.
func TestStaticAddressOutsideSubnets(t *testing.T) {
	env := newTestEngine(t, t.TempDir(), enginetest.NewRuntime())
	e := env.e
	mustNet(t, e, api.NetworkCreate{Name: "auto"})
	mustNet(t, e, api.NetworkCreate{Name: "given", IPAM: []model.IPAMConfig{{
		Subnet: netip.MustParsePrefix("10.61.0.0/24"), IPRange: netip.MustParsePrefix("10.61.0.128/25")}}})
	mustNet(t, e, api.NetworkCreate{Name: "ds", EnableIPv6: true, IPAM: []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.62.0.0/24")}}})
	c := mustRun(t, e, api.ContainerCreate{Name: "c", Network: "given"})

	const noUser = "user specified IP address is supported only when connecting to networks with user configured subnets"
	exact := func(what string, err error, want string) {
		t.Helper()
		if err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", what, err, want)
		}
		if err != nil && !errors.Is(err, model.ErrInvalid) {
			t.Errorf("%s: error %v is not ErrInvalid (400)", what, err)
		}
	}
	ip := func(s string) api.EndpointRequest { return api.EndpointRequest{IP: netip.MustParseAddr(s)} }

	// Create: the network's name as the request gave it.
	_, err := e.CreateContainer(bg, api.ContainerCreate{Image: "busybox", Cmd: []string{"true"}, Network: "auto", Endpoint: ip("172.30.0.5")})
	exact("create on a default-pool network", err, "invalid config for network auto: invalid endpoint settings:\n"+noUser)
	_, err = e.CreateContainer(bg, api.ContainerCreate{Image: "busybox", Cmd: []string{"true"}, Network: "given", Endpoint: ip("10.99.0.5")})
	exact("create outside the subnet", err, "invalid config for network given: invalid endpoint settings:\nno configured subnet or ip-range contain the IP address 10.99.0.5")
	_, err = e.CreateContainer(bg, api.ContainerCreate{Image: "busybox", Cmd: []string{"true"}, Network: "given", Endpoint: ip("10.61.0.5")})
	exact("create in the subnet, outside the ip-range", err, "invalid config for network given: invalid endpoint settings:\nno configured subnet or ip-range contain the IP address 10.61.0.5")
	_, err = e.CreateContainer(bg, api.ContainerCreate{Image: "busybox", Cmd: []string{"true"}, Network: "given",
		Extra: []api.NetworkAttach{{Network: "auto", Endpoint: ip("10.61.0.200")}}})
	exact("create, second network", err, "invalid config for network auto: invalid endpoint settings:\n"+noUser)
	// Both families wrong: moby's list form.
	_, err = e.CreateContainer(bg, api.ContainerCreate{Image: "busybox", Cmd: []string{"true"}, Network: "ds",
		Endpoint: api.EndpointRequest{IP: netip.MustParseAddr("10.99.0.5"), IP6: netip.MustParseAddr("fd00:99::5")}})
	exact("create, both families", err, "invalid config for network ds: invalid endpoint settings:\n* no configured subnet or ip-range contain the IP address 10.99.0.5\n* "+noUser)
	if cs, _ := e.ListContainers(bg, true); len(cs) != 1 {
		t.Errorf("refused creates left containers: %d, want 1", len(cs))
	}

	// Connect.
	exact("connect to a default-pool network", e.ConnectNetwork(bg, "auto", c.ID, ip("172.30.0.5")), "invalid endpoint settings:\n"+noUser)
	exact("connect outside the subnets", e.ConnectNetwork(bg, "ds", c.ID, ip("10.61.0.200")),
		"invalid endpoint settings:\nno configured subnet or ip-range contain the IP address 10.61.0.200")
	if v, _ := e.InspectContainer(bg, c.ID); len(v.Endpoints) != 1 {
		t.Errorf("refused connects left endpoints: %d, want 1", len(v.Endpoints))
	}

	// In range: taken.
	mustRun(t, e, api.ContainerCreate{Name: "d", Network: "given", Endpoint: ip("10.61.0.200")})
	if err := e.ConnectNetwork(bg, "ds", c.ID, ip("10.62.0.9")); err != nil {
		t.Errorf("connect with an address in the subnet: %v", err)
	}
}
