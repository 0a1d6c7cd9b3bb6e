package dockerplugin

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// gatewayRequest is the RequestAddress option dockerd sets when it asks
// for the network's gateway.
const gatewayRequest = "com.docker.network.gateway"

// requestPool maps the Docker network being created (its name comes from
// the authorization plugin) to the cluster network of that name: created
// if missing, joined if present with the same settings, refused when the
// settings conflict. The pool ID is the vxnet network ID.
func (p *Plugin) requestPool(ctx context.Context, body []byte) (any, error) {
	var req struct {
		AddressSpace, Pool, SubPool string
		Options                     map[string]string
		V6                          bool
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.V6 {
		return nil, errors.New("IPv6 is not supported on vxnet networks (--ipv6)")
	}
	if req.SubPool != "" {
		return nil, fmt.Errorf("--ip-range %s is not supported on vxnet networks", req.SubPool)
	}
	for k := range req.Options {
		return nil, fmt.Errorf("--ipam-opt %s is not supported by the vxnet IPAM driver", k)
	}
	cr, ok := p.authz.pendingCreate()
	if !ok {
		return nil, errors.New("the network's name is unknown: start dockerd with --authorization-plugin=vxnet (vxnet reads the name of docker network create from it)")
	}
	want, err := cr.want(req.Pool)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		v, err := p.eng.InspectNetwork(ctx, cr.Name, false)
		if err == nil {
			if err := sameNetwork(v.Network, want); err != nil {
				return nil, err
			}
			return poolReply(v.Network), nil
		}
		if !errors.Is(err, model.ErrNotFound) {
			return nil, err
		}
		n, err := p.eng.CreateNetwork(ctx, want)
		if err == nil {
			p.log.Info("docker network defines cluster network", "name", n.Name, "subnet", n.IPAM[0].Subnet)
			return poolReply(n), nil
		}
		if !errors.Is(err, model.ErrConflict) || attempt > 0 {
			return nil, err
		}
		// Another host created it at the same time: join it.
	}
}

func poolReply(n model.Network) any {
	return map[string]any{"PoolID": n.ID, "Pool": n.IPAM[0].Subnet.String(), "Data": map[string]string{}}
}

// want is the cluster network a Docker create asks for.
func (c networkCreate) want(pool string) (api.NetworkCreate, error) {
	req := api.NetworkCreate{Name: c.Name, Driver: "overlay", Internal: c.Internal, Options: c.Options, Labels: c.Labels}
	if c.EnableIPv6 {
		return req, errors.New("IPv6 is not supported on vxnet networks (--ipv6)")
	}
	if c.Attachable || c.Ingress || c.Scope != "" || c.ConfigOnly || c.ConfigFrom != nil {
		return req, errors.New("--attachable, --ingress, --scope, --config-only and --config-from are not supported on vxnet networks")
	}
	if len(c.IPAM.Config) > 1 {
		return req, errors.New("vxnet networks take one --subnet")
	}
	var cfg model.IPAMConfig
	if pool != "" {
		p, err := netip.ParsePrefix(pool)
		if err != nil {
			return req, fmt.Errorf("invalid --subnet %s: %w", pool, err)
		}
		cfg.Subnet = p
	}
	if len(c.IPAM.Config) == 1 {
		x := c.IPAM.Config[0]
		if len(x.AuxAddress) > 0 {
			return req, errors.New("--aux-address is not supported on vxnet networks")
		}
		if x.Gateway != "" {
			g, err := netip.ParseAddr(x.Gateway)
			if err != nil {
				return req, fmt.Errorf("invalid --gateway %s: %w", x.Gateway, err)
			}
			cfg.Gateway = g
		}
	}
	if cfg.Subnet.IsValid() {
		req.IPAM = []model.IPAMConfig{cfg}
	} else if cfg.Gateway.IsValid() {
		return req, errors.New("--gateway needs --subnet")
	}
	return req, nil
}

// sameNetwork refuses a Docker create whose settings differ from the
// cluster network of the same name.
func sameNetwork(n model.Network, want api.NetworkCreate) error {
	if n.Driver != "overlay" {
		return fmt.Errorf("network %s exists in vxnet with driver %s: Docker's vxnet networks are vxnet overlay networks", n.Name, n.Driver)
	}
	if len(n.IPAM) == 0 {
		return fmt.Errorf("network %s has no subnet", n.Name)
	}
	if len(want.IPAM) == 1 {
		if want.IPAM[0].Subnet.Masked() != n.IPAM[0].Subnet.Masked() {
			return fmt.Errorf("network %s exists in the cluster with subnet %s: --subnet %s conflicts", n.Name, n.IPAM[0].Subnet, want.IPAM[0].Subnet)
		}
		if g := want.IPAM[0].Gateway; g.IsValid() && g != n.IPAM[0].Gateway {
			return fmt.Errorf("network %s exists in the cluster with gateway %s: --gateway %s conflicts", n.Name, n.IPAM[0].Gateway, g)
		}
	}
	if want.Internal != n.Internal {
		return fmt.Errorf("network %s exists in the cluster with internal=%v: --internal conflicts", n.Name, n.Internal)
	}
	if d := diffOptions(n.Options, want.Options); d != "" {
		return fmt.Errorf("network %s exists in the cluster with other driver options: %s", n.Name, d)
	}
	return nil
}

func diffOptions(have, want map[string]string) string {
	var d []string
	for k, v := range want {
		if have[k] != v {
			d = append(d, fmt.Sprintf("-o %s=%s (cluster: %q)", k, v, have[k]))
		}
	}
	for k, v := range have {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("missing -o %s=%s", k, v))
		}
	}
	sort.Strings(d)
	return strings.Join(d, ", ")
}

// releasePool is docker network rm: the cluster network goes when no host
// has endpoints on it; while others do, it stays for them.
func (p *Plugin) releasePool(ctx context.Context, body []byte) (any, error) {
	var req struct{ PoolID string }
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	err := p.eng.RemoveNetwork(ctx, req.PoolID)
	switch {
	case err == nil:
		p.log.Info("docker network rm removed cluster network", "id", req.PoolID)
	case errors.Is(err, model.ErrNotFound):
	case errors.Is(err, model.ErrForbidden):
		p.log.Info("cluster network kept: other hosts have endpoints on it", "id", req.PoolID)
	default:
		return nil, err
	}
	return struct{}{}, nil
}

func (p *Plugin) requestAddress(ctx context.Context, body []byte) (any, error) {
	var req struct {
		PoolID, Address string
		Options         map[string]string
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	v, err := p.eng.InspectNetwork(ctx, req.PoolID, false)
	if err != nil {
		return nil, fmt.Errorf("network of pool %s: %w", req.PoolID, err)
	}
	n := v.Network
	if len(n.IPAM) == 0 {
		return nil, fmt.Errorf("network %s has no subnet", n.Name)
	}
	var ip netip.Addr
	if req.Address != "" {
		if ip, err = netip.ParseAddr(req.Address); err != nil {
			return nil, fmt.Errorf("invalid address %s: %w", req.Address, err)
		}
	}
	if req.Options["RequestAddressType"] == gatewayRequest {
		gw := n.IPAM[0].Gateway
		if ip.IsValid() && ip != gw {
			return nil, fmt.Errorf("network %s has gateway %s in the cluster: %s conflicts", n.Name, gw, ip)
		}
		return map[string]any{"Address": netip.PrefixFrom(gw, n.IPAM[0].Subnet.Bits()).String(), "Data": map[string]string{}}, nil
	}
	addr, err := p.eng.ReserveAddress(ctx, n.ID, ip)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.pending[addr.Addr()] = n.ID
	p.mu.Unlock()
	return map[string]any{"Address": addr.String(), "Data": map[string]string{}}, nil
}

// releaseAddress gives back an address that no endpoint took over; an
// endpoint's address goes with the endpoint (DeleteEndpoint), the
// gateway is the cluster's.
func (p *Plugin) releaseAddress(ctx context.Context, body []byte) (any, error) {
	var req struct{ PoolID, Address string }
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(req.Address)
	if err != nil {
		return nil, fmt.Errorf("invalid address %s: %w", req.Address, err)
	}
	p.mu.Lock()
	netID, ok := p.pending[ip]
	delete(p.pending, ip)
	p.mu.Unlock()
	if ok {
		return struct{}{}, p.eng.ReleaseAddress(ctx, netID, ip)
	}
	return struct{}{}, nil
}

// createNetwork checks that the pool dockerd got is a vxnet network's.
func (p *Plugin) createNetwork(ctx context.Context, body []byte) (any, error) {
	var req struct {
		NetworkID string
		Options   map[string]any
		IPv4Data  []struct {
			AddressSpace, Pool, Gateway string
			AuxAddresses                map[string]string
		}
		IPv6Data []any
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if len(req.IPv6Data) > 0 {
		return nil, errors.New("IPv6 is not supported on vxnet networks (--ipv6)")
	}
	if len(req.IPv4Data) != 1 {
		return nil, errors.New("vxnet networks take exactly one IPv4 pool from the vxnet IPAM driver (--ipam-driver vxnet)")
	}
	if _, err := p.networkOfPool(ctx, req.IPv4Data[0].Pool); err != nil {
		return nil, fmt.Errorf("%w: use --ipam-driver vxnet", err)
	}
	return struct{}{}, nil
}

// networkOfPool finds the cluster network whose subnet is pool.
func (p *Plugin) networkOfPool(ctx context.Context, pool string) (model.Network, error) {
	pfx, err := netip.ParsePrefix(pool)
	if err != nil {
		return model.Network{}, fmt.Errorf("invalid pool %s: %w", pool, err)
	}
	vs, err := p.eng.ListNetworks(ctx)
	if err != nil {
		return model.Network{}, err
	}
	for _, v := range vs {
		n := v.Network
		if n.Driver == "overlay" && len(n.IPAM) > 0 && n.IPAM[0].Subnet.Masked() == pfx.Masked() {
			return n, nil
		}
	}
	return model.Network{}, fmt.Errorf("pool %s is not a vxnet network's subnet", pool)
}

func (p *Plugin) createEndpoint(ctx context.Context, body []byte) (any, error) {
	var req struct {
		NetworkID, EndpointID string
		Interface             *struct{ Address, AddressIPv6, MacAddress string }
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.Interface == nil || req.Interface.Address == "" {
		return nil, errors.New("endpoint has no address: use --ipam-driver vxnet")
	}
	if req.Interface.AddressIPv6 != "" {
		return nil, errors.New("IPv6 is not supported on vxnet networks")
	}
	addr, err := netip.ParsePrefix(req.Interface.Address)
	if err != nil {
		return nil, fmt.Errorf("invalid address %s: %w", req.Interface.Address, err)
	}
	mac := model.MACForIP(addr.Addr()).String()
	if req.Interface.MacAddress != "" && !strings.EqualFold(req.Interface.MacAddress, mac) {
		return nil, fmt.Errorf("--mac-address is not supported on vxnet networks (the MAC follows the address: %s)", mac)
	}
	p.mu.Lock()
	netID, ok := p.pending[addr.Addr()]
	if ok {
		p.endpoints[req.EndpointID] = endpointReq{netID: netID, addr: addr}
	}
	p.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("address %s was not handed out by the vxnet IPAM driver", addr)
	}
	out := map[string]any{}
	if req.Interface.MacAddress == "" {
		out["Interface"] = map[string]string{"MacAddress": mac}
	}
	return out, nil
}

func (p *Plugin) endpointInfo(ctx context.Context, body []byte) (any, error) {
	var req struct{ NetworkID, EndpointID string }
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	val := map[string]string{}
	if v, err := p.eng.CheckExternal(ctx, model.OwnerDocker, req.EndpointID); err == nil {
		val["vxnet.network"] = v.Network.Name
		val["vxnet.address"] = v.Endpoint.Addr.String()
	}
	return map[string]any{"Value": val}, nil
}

// join attaches the endpoint: the engine leaves a veth end named SrcName in
// the host namespace, dockerd moves it into the container as eth<N> and
// gives it the address. No gateway: like Docker's overlay, the container
// gets its way out through docker_gwbridge (unless --internal).
func (p *Plugin) join(ctx context.Context, body []byte) (any, error) {
	var req struct{ NetworkID, EndpointID, SandboxKey string }
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	p.mu.Lock()
	er, ok := p.endpoints[req.EndpointID]
	p.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown endpoint %s (created before the vxnet daemon restarted?): restart the container", short(req.EndpointID))
	}
	name := p.authz.currentName()
	if name == "" {
		name = "docker-" + short(req.EndpointID)
	}
	v, err := p.eng.AttachExternal(ctx, api.ExternalAttach{Owner: model.OwnerDocker, Key: req.EndpointID, Network: er.netID,
		IfName: "vxd" + short(req.EndpointID), Name: name, IP: er.addr.Addr(), Reserved: true, SandboxKey: req.SandboxKey})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	delete(p.pending, er.addr.Addr())
	delete(p.endpoints, req.EndpointID)
	p.mu.Unlock()
	return map[string]any{
		"InterfaceName":         map[string]string{"SrcName": v.External.IfName, "DstPrefix": "eth"},
		"DisableGatewayService": false,
	}, nil
}

func (p *Plugin) deleteEndpoint(ctx context.Context, body []byte) (any, error) {
	var req struct{ NetworkID, EndpointID string }
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	p.mu.Lock()
	delete(p.endpoints, req.EndpointID)
	p.mu.Unlock()
	return struct{}{}, p.eng.DetachExternal(ctx, model.OwnerDocker, req.EndpointID)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
