package dockerplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// fakeEngine keeps networks by name and counts reservations.
type fakeEngine struct {
	nets     map[string]model.Network
	reserved map[netip.Addr]bool
	attached map[string]api.ExternalAttach
}

func newFake() *fakeEngine {
	return &fakeEngine{nets: map[string]model.Network{}, reserved: map[netip.Addr]bool{}, attached: map[string]api.ExternalAttach{}}
}

func (f *fakeEngine) find(ref string) (model.Network, bool) {
	for _, n := range f.nets {
		if n.ID == ref || n.Name == ref {
			return n, true
		}
	}
	return model.Network{}, false
}

func (f *fakeEngine) CreateNetwork(ctx context.Context, req api.NetworkCreate) (model.Network, error) {
	cfgs := []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.99.0.0/24")}}
	if req.EnableIPv6 {
		cfgs = append(cfgs, model.IPAMConfig{Subnet: netip.MustParsePrefix("fd00:99::/64")})
	}
	for _, c := range req.IPAM {
		for i := range cfgs {
			if cfgs[i].Subnet.Addr().Is6() == c.Subnet.Addr().Is6() {
				cfgs[i] = c
			}
		}
	}
	for i := range cfgs {
		if !cfgs[i].Gateway.IsValid() {
			cfgs[i].Gateway = cfgs[i].Subnet.Masked().Addr().Next()
		}
	}
	n := model.Network{ID: "id-" + req.Name, Name: req.Name, Driver: req.Driver, Internal: req.Internal, Options: req.Options, IPAM: cfgs, VNI: 7, EnableIPv6: req.EnableIPv6}
	f.nets[n.Name] = n
	return n, nil
}

func (f *fakeEngine) InspectNetwork(ctx context.Context, ref string, verbose bool) (api.NetworkView, error) {
	if n, ok := f.find(ref); ok {
		return api.NetworkView{Network: n}, nil
	}
	return api.NetworkView{}, &testErr{"network " + ref + " not found", model.ErrNotFound}
}

func (f *fakeEngine) ListNetworks(ctx context.Context) ([]api.NetworkView, error) {
	var out []api.NetworkView
	for _, n := range f.nets {
		out = append(out, api.NetworkView{Network: n})
	}
	return out, nil
}

func (f *fakeEngine) RemoveNetwork(ctx context.Context, ref string) error {
	n, ok := f.find(ref)
	if !ok {
		return &testErr{"not found", model.ErrNotFound}
	}
	delete(f.nets, n.Name)
	return nil
}

func (f *fakeEngine) ReserveAddress(ctx context.Context, netRef string, ip netip.Addr, v6 bool) (netip.Prefix, error) {
	n, _ := f.find(netRef)
	cfg, _ := ipamOf(n, v6)
	if !ip.IsValid() {
		ip = cfg.Subnet.Masked().Addr().Next().Next()
		for f.reserved[ip] {
			ip = ip.Next()
		}
	}
	f.reserved[ip] = true
	return netip.PrefixFrom(ip, cfg.Subnet.Bits()), nil
}

func (f *fakeEngine) ReleaseAddress(ctx context.Context, netRef string, ip netip.Addr) error {
	delete(f.reserved, ip)
	return nil
}

func (f *fakeEngine) AttachExternal(ctx context.Context, req api.ExternalAttach) (api.ExternalView, error) {
	f.attached[req.Key] = req
	return api.ExternalView{External: model.External{IfName: req.IfName}}, nil
}

func (f *fakeEngine) DetachExternal(ctx context.Context, owner, key string) error {
	if r, ok := f.attached[key]; ok {
		delete(f.reserved, r.IP)
	}
	delete(f.attached, key)
	return nil
}

func (f *fakeEngine) CheckExternal(ctx context.Context, owner, key string) (api.ExternalView, error) {
	return api.ExternalView{}, nil
}

func (f *fakeEngine) ListExternal(ctx context.Context, owner string) ([]api.ExternalView, error) {
	return nil, nil
}

type testErr struct {
	msg   string
	class error
}

func (e *testErr) Error() string { return e.msg }
func (e *testErr) Unwrap() error { return e.class }

// call posts a plugin call and decodes the answer; Err is returned as a string.
func call(t *testing.T, h http.Handler, name string, req any, out any) string {
	t.Helper()
	b, _ := json.Marshal(req)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/"+name, bytes.NewReader(b)))
	var e struct{ Err string }
	json.Unmarshal(rec.Body.Bytes(), &e)
	if e.Err != "" {
		return e.Err
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("%s: status %d: %s", name, rec.Code, rec.Body)
	}
	if out != nil {
		json.Unmarshal(rec.Body.Bytes(), out)
	}
	return ""
}

type authzBody struct {
	RequestMethod      string
	RequestURI         string `json:"RequestUri"`
	RequestBody        []byte
	ResponseStatusCode int
	ResponseBody       []byte
}

// create runs dockerd's sequence for docker network create: AuthZReq,
// RequestPool, the gateway's RequestAddress, CreateNetwork, AuthZRes.
func create(t *testing.T, h http.Handler, body string, pool string) (string, string) {
	t.Helper()
	uri := "/v1.41/networks/create"
	var allow struct {
		Allow bool
		Msg   string
	}
	call(t, h, "AuthZPlugin.AuthZReq", authzBody{RequestMethod: "POST", RequestURI: uri, RequestBody: []byte(body)}, &allow)
	defer call(t, h, "AuthZPlugin.AuthZRes", authzBody{RequestMethod: "POST", RequestURI: uri, ResponseStatusCode: 201}, nil)
	if !allow.Allow {
		return "", allow.Msg
	}
	var pr struct{ PoolID, Pool string }
	if err := call(t, h, "IpamDriver.RequestPool", map[string]any{"Pool": pool}, &pr); err != "" {
		return "", err
	}
	return pr.PoolID, ""
}

func TestNetworkMappingByName(t *testing.T) {
	eng := newFake()
	h := New(eng, nil).Handler()
	var act struct{ Implements []string }
	call(t, h, "Plugin.Activate", nil, &act)
	if strings.Join(act.Implements, ",") != "NetworkDriver,IpamDriver,authz" {
		t.Fatalf("Implements %v", act.Implements)
	}
	// Without the authorization plugin the name is unknown: refused.
	if err := call(t, h, "IpamDriver.RequestPool", map[string]any{"Pool": "10.90.0.0/24"}, nil); !strings.Contains(err, "--authorization-plugin=vxnet") {
		t.Errorf("RequestPool without authz: %q", err)
	}
	prod := `{"Name":"prod","Driver":"vxnet","IPAM":{"Driver":"vxnet","Config":[{"Subnet":"10.90.0.0/24"}]}}`
	id, err := create(t, h, prod, "10.90.0.0/24")
	if err != "" || id != "id-prod" || eng.nets["prod"].Driver != "overlay" {
		t.Fatalf("first create: %q %q %+v", id, err, eng.nets)
	}
	// A later create of the same name without --subnet joins it.
	if id2, err := create(t, h, `{"Name":"prod","Driver":"vxnet","IPAM":{"Driver":"vxnet"}}`, ""); err != "" || id2 != id {
		t.Fatalf("joining create: %q %q", id2, err)
	}
	for _, tc := range []struct{ body, pool, want string }{
		{`{"Name":"prod","Driver":"vxnet","IPAM":{"Driver":"vxnet","Config":[{"Subnet":"10.91.0.0/24"}]}}`, "10.91.0.0/24", "--subnet 10.91.0.0/24 conflicts"},
		{`{"Name":"prod","Driver":"vxnet","Internal":true,"IPAM":{"Driver":"vxnet"}}`, "", "--internal conflicts"},
		{`{"Name":"prod","Driver":"vxnet","Options":{"com.docker.network.driver.mtu":"1400"},"IPAM":{"Driver":"vxnet"}}`, "", "other driver options"},
		{`{"Name":"x","Driver":"vxnet","IPAM":{"Driver":"default"}}`, "", "--ipam-driver vxnet"},
		{`{"Name":"prod","Driver":"vxnet","EnableIPv6":true,"IPAM":{"Driver":"vxnet"}}`, "", "--ipv6 conflicts"},
		{`{"Name":"x","Driver":"vxnet","EnableIPv6":true,"EnableIPv4":false,"IPAM":{"Driver":"vxnet"}}`, "", "IPv6-only networks (--ipv4=false) are not supported"},
		{`{"Name":"x","Driver":"vxnet","IPAM":{"Driver":"vxnet","Config":[{"Subnet":"fd00:94::/64"}]}}`, "", "needs --ipv6"},
		{`{"Name":"x","Driver":"vxnet","IPAM":{"Driver":"vxnet","Config":[{"Subnet":"10.94.0.0/24"},{"Subnet":"10.95.0.0/24"}]}}`, "10.94.0.0/24", "one --subnet per address family"},
		{`{"Name":"x","Driver":"vxnet","EnableIPv6":true,"IPAM":{"Driver":"vxnet","Config":[{"Subnet":"fd00:94::/64","Gateway":"10.94.0.1"}]}}`, "", "not of --subnet"},
		{`{"Name":"x","Driver":"vxnet","IPAM":{"Driver":"vxnet","Config":[{"Subnet":"10.94.0.0/24","AuxAddress":{"a":"10.94.0.9"}}]}}`, "10.94.0.0/24", "--aux-address"},
	} {
		if _, err := create(t, h, tc.body, tc.pool); !strings.Contains(err, tc.want) {
			t.Errorf("create %s: error %q, want %q", tc.body, err, tc.want)
		}
	}
	if len(eng.nets) != 1 {
		t.Errorf("refused creates made networks: %+v", eng.nets)
	}
	if err := call(t, h, "IpamDriver.RequestPool", map[string]any{"Pool": "10.95.0.0/24", "SubPool": "10.95.0.0/25"}, nil); !strings.Contains(err, "--ip-range") {
		t.Errorf("RequestPool with SubPool: %q", err)
	}
}

func TestEndpointLifecycle(t *testing.T) {
	eng := newFake()
	h := New(eng, nil).Handler()
	id, err := create(t, h, `{"Name":"prod","Driver":"vxnet","IPAM":{"Driver":"vxnet","Config":[{"Subnet":"10.90.0.0/24"}]}}`, "10.90.0.0/24")
	if err != "" {
		t.Fatal(err)
	}
	var gw struct{ Address string }
	call(t, h, "IpamDriver.RequestAddress", map[string]any{"PoolID": id, "Options": map[string]string{"RequestAddressType": gatewayRequest}}, &gw)
	if gw.Address != "10.90.0.1/24" {
		t.Errorf("gateway %q", gw.Address)
	}
	if err := call(t, h, "NetworkDriver.CreateNetwork", map[string]any{"NetworkID": "d1", "IPv4Data": []map[string]string{{"Pool": "10.90.0.0/24", "Gateway": gw.Address}}}, nil); err != "" {
		t.Fatalf("CreateNetwork: %s", err)
	}
	if err := call(t, h, "NetworkDriver.CreateNetwork", map[string]any{"NetworkID": "d2", "IPv4Data": []map[string]string{{"Pool": "172.30.0.0/16"}}}, nil); !strings.Contains(err, "--ipam-driver vxnet") {
		t.Errorf("CreateNetwork with a foreign pool: %q", err)
	}
	var addr struct{ Address string }
	call(t, h, "IpamDriver.RequestAddress", map[string]any{"PoolID": id}, &addr)
	if addr.Address != "10.90.0.2/24" {
		t.Fatalf("address %q", addr.Address)
	}
	var ce struct{ Interface struct{ MacAddress string } }
	if err := call(t, h, "NetworkDriver.CreateEndpoint", map[string]any{"NetworkID": "d1", "EndpointID": "ep1234567890abcdef", "Interface": map[string]string{"Address": addr.Address}}, &ce); err != "" {
		t.Fatal(err)
	}
	if ce.Interface.MacAddress != "02:42:0a:5a:00:02" {
		t.Errorf("MAC %q", ce.Interface.MacAddress)
	}
	if err := call(t, h, "NetworkDriver.CreateEndpoint", map[string]any{"NetworkID": "d1", "EndpointID": "ep2", "Interface": map[string]string{"Address": "10.90.0.77/24"}}, nil); !strings.Contains(err, "not handed out") {
		t.Errorf("CreateEndpoint with a foreign address: %q", err)
	}
	var jr struct {
		InterfaceName struct{ SrcName, DstPrefix string }
	}
	if err := call(t, h, "NetworkDriver.Join", map[string]any{"NetworkID": "d1", "EndpointID": "ep1234567890abcdef", "SandboxKey": "/x"}, &jr); err != "" {
		t.Fatal(err)
	}
	a := eng.attached["ep1234567890abcdef"]
	if jr.InterfaceName.SrcName != "vxdep1234567890" || jr.InterfaceName.DstPrefix != "eth" || !a.Reserved || a.IP.String() != "10.90.0.2" || a.Name != "docker-ep1234567890" {
		t.Errorf("join: %+v, attach %+v", jr, a)
	}
	// The endpoint took the reservation over: ReleaseAddress after
	// DeleteEndpoint must not release it a second time.
	call(t, h, "NetworkDriver.DeleteEndpoint", map[string]any{"NetworkID": "d1", "EndpointID": "ep1234567890abcdef"}, nil)
	eng.reserved[netip.MustParseAddr("10.90.0.2")] = true // someone else took it since
	call(t, h, "IpamDriver.ReleaseAddress", map[string]any{"PoolID": id, "Address": "10.90.0.2"}, nil)
	if !eng.reserved[netip.MustParseAddr("10.90.0.2")] {
		t.Error("ReleaseAddress released an address the endpoint had taken over")
	}
	if err := call(t, h, "NetworkDriver.AllocateNetwork", map[string]any{}, nil); !strings.Contains(err, "swarm") {
		t.Errorf("AllocateNetwork: %q", err)
	}
	call(t, h, "IpamDriver.ReleasePool", map[string]any{"PoolID": id}, nil)
	if len(eng.nets) != 0 {
		t.Errorf("ReleasePool left %+v", eng.nets)
	}
}

func TestContainerNames(t *testing.T) {
	eng := newFake()
	p := New(eng, nil)
	h := p.Handler()
	call(t, h, "AuthZPlugin.AuthZRes", authzBody{RequestMethod: "POST", RequestURI: "/v1.41/containers/create?name=vm3",
		ResponseStatusCode: 201, ResponseBody: []byte(`{"Id":"abcdef123456789"}`)}, nil)
	start := authzBody{RequestMethod: "POST", RequestURI: "/v1.41/containers/abcdef123456789/start"}
	call(t, h, "AuthZPlugin.AuthZReq", start, nil)
	if got := p.authz.currentName(); got != "vm3" {
		t.Errorf("name during start: %q", got)
	}
	call(t, h, "AuthZPlugin.AuthZRes", start, nil)
	if got := p.authz.currentName(); got != "" {
		t.Errorf("name after start: %q", got)
	}
	// docker start by name, and connect by ID prefix.
	byName := authzBody{RequestMethod: "POST", RequestURI: "/v1.41/containers/vm3/start"}
	call(t, h, "AuthZPlugin.AuthZReq", byName, nil)
	if got := p.authz.currentName(); got != "vm3" {
		t.Errorf("name during start by name: %q", got)
	}
	call(t, h, "AuthZPlugin.AuthZRes", byName, nil)
	conn := authzBody{RequestMethod: "POST", RequestURI: "/v1.41/networks/prod/connect", RequestBody: []byte(`{"Container":"abcdef"}`)}
	call(t, h, "AuthZPlugin.AuthZReq", conn, nil)
	if got := p.authz.currentName(); got != "vm3" {
		t.Errorf("name during connect: %q", got)
	}
	call(t, h, "AuthZPlugin.AuthZRes", conn, nil)
}

// TestIPv6Pools: dockerd's sequence for docker network create --ipv6 and
// a container on it: the IPv4 pool creates the dual-stack cluster network,
// the IPv6 pool answers its IPv6 subnet, gateways and addresses come per
// family, the endpoint takes both reservations over.
func TestIPv6Pools(t *testing.T) {
	eng := newFake()
	h := New(eng, nil).Handler()
	body := `{"Name":"ds","Driver":"vxnet","EnableIPv6":true,"IPAM":{"Driver":"vxnet","Config":[{"Subnet":"10.96.0.0/24"},{"Subnet":"fd00:96::/64","Gateway":"fd00:96::fe"}]}}`
	uri := "/v1.41/networks/create"
	call(t, h, "AuthZPlugin.AuthZReq", authzBody{RequestMethod: "POST", RequestURI: uri, RequestBody: []byte(body)}, nil)
	var p4, p6 struct{ PoolID, Pool string }
	if err := call(t, h, "IpamDriver.RequestPool", map[string]any{"Pool": "10.96.0.0/24"}, &p4); err != "" {
		t.Fatal(err)
	}
	if err := call(t, h, "IpamDriver.RequestPool", map[string]any{"Pool": "fd00:96::/64", "V6": true}, &p6); err != "" {
		t.Fatal(err)
	}
	call(t, h, "AuthZPlugin.AuthZRes", authzBody{RequestMethod: "POST", RequestURI: uri, ResponseStatusCode: 201}, nil)
	n := eng.nets["ds"]
	if !n.EnableIPv6 || len(n.IPAM) != 2 || p4.PoolID != n.ID || p6.PoolID == p4.PoolID || p6.Pool != "fd00:96::/64" {
		t.Fatalf("pools %+v %+v, network %+v", p4, p6, n)
	}
	var gw6 struct{ Address string }
	call(t, h, "IpamDriver.RequestAddress", map[string]any{"PoolID": p6.PoolID, "Options": map[string]string{"RequestAddressType": gatewayRequest}}, &gw6)
	if gw6.Address != "fd00:96::fe/64" {
		t.Errorf("IPv6 gateway %q", gw6.Address)
	}
	if err := call(t, h, "NetworkDriver.CreateNetwork", map[string]any{"NetworkID": "d1",
		"IPv4Data": []map[string]string{{"Pool": "10.96.0.0/24"}}, "IPv6Data": []map[string]string{{"Pool": "fd00:96::/64"}}}, nil); err != "" {
		t.Fatalf("CreateNetwork: %s", err)
	}
	if err := call(t, h, "NetworkDriver.CreateNetwork", map[string]any{"NetworkID": "d2",
		"IPv4Data": []map[string]string{{"Pool": "10.96.0.0/24"}}}, nil); !strings.Contains(err, "--ipv6 must match") {
		t.Errorf("CreateNetwork without the IPv6 pool: %q", err)
	}
	var a4, a6 struct{ Address string }
	call(t, h, "IpamDriver.RequestAddress", map[string]any{"PoolID": p4.PoolID}, &a4)
	call(t, h, "IpamDriver.RequestAddress", map[string]any{"PoolID": p6.PoolID}, &a6)
	if a4.Address != "10.96.0.2/24" || a6.Address != "fd00:96::2/64" {
		t.Fatalf("addresses %q %q", a4.Address, a6.Address)
	}
	if err := call(t, h, "IpamDriver.RequestAddress", map[string]any{"PoolID": p6.PoolID, "Address": "fd00:97::5"}, nil); !strings.Contains(err, "outside the pool") {
		t.Errorf("RequestAddress outside the IPv6 pool: %q", err)
	}
	if err := call(t, h, "NetworkDriver.CreateEndpoint", map[string]any{"NetworkID": "d1", "EndpointID": "epx",
		"Interface": map[string]string{"Address": a4.Address, "AddressIPv6": "fd00:96::77/64"}}, nil); !strings.Contains(err, "not handed out") {
		t.Errorf("CreateEndpoint with a foreign IPv6 address: %q", err)
	}
	if err := call(t, h, "NetworkDriver.CreateEndpoint", map[string]any{"NetworkID": "d1", "EndpointID": "ep6",
		"Interface": map[string]string{"Address": a4.Address, "AddressIPv6": a6.Address}}, nil); err != "" {
		t.Fatal(err)
	}
	if err := call(t, h, "NetworkDriver.Join", map[string]any{"NetworkID": "d1", "EndpointID": "ep6"}, nil); err != "" {
		t.Fatal(err)
	}
	if a := eng.attached["ep6"]; !a.Reserved || a.IP.String() != "10.96.0.2" || a.IP6.String() != "fd00:96::2" {
		t.Errorf("attach %+v", a)
	}
	call(t, h, "IpamDriver.ReleasePool", map[string]any{"PoolID": p4.PoolID}, nil)
	if err := call(t, h, "IpamDriver.ReleasePool", map[string]any{"PoolID": p6.PoolID}, nil); err != "" || len(eng.nets) != 0 {
		t.Errorf("ReleasePool: %q, left %+v", err, eng.nets)
	}
}
