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

// v6Suffix marks the PoolID of a network's IPv6 pool; the IPv4 pool's
// PoolID is the vxnet network ID itself.
const v6Suffix = "/v6"

func poolID(n model.Network, v6 bool) string {
	if v6 {
		return n.ID + v6Suffix
	}
	return n.ID
}

// parsePoolID splits a PoolID into the network ID and the family.
func parsePoolID(id string) (string, bool) {
	if n, ok := strings.CutSuffix(id, v6Suffix); ok {
		return n, true
	}
	return id, false
}

// ipamOf is the network's IPAM configuration of one family.
func ipamOf(n model.Network, v6 bool) (model.IPAMConfig, bool) {
	for _, c := range n.IPAM {
		if c.Subnet.Addr().Is6() == v6 {
			return c, true
		}
	}
	return model.IPAMConfig{}, false
}

// requestPool maps the Docker network being created (its name comes from
// the authorization plugin) to the cluster network of that name: created
// if missing, joined if present with the same settings, refused when the
// settings conflict. dockerd asks for the IPv4 pool, then (--ipv6) for the
// IPv6 pool of the same network: the first call creates the cluster
// network with both subnets, the second answers its IPv6 subnet. The
// pool ID is the vxnet network ID (with v6Suffix for the IPv6 pool).
func (p *Plugin) requestPool(ctx context.Context, body []byte) (any, error) {
	var req struct {
		AddressSpace, Pool, SubPool string
		Options                     map[string]string
		V6                          bool
	}
	if err := decode(body, &req); err != nil {
		return nil, err
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
	if req.V6 && !cr.EnableIPv6 {
		return nil, errors.New("an IPv6 pool was asked for a network without --ipv6")
	}
	want, err := cr.want()
	if err != nil {
		return nil, err
	}
	if req.Pool != "" {
		pfx, err := netip.ParsePrefix(req.Pool)
		if err != nil {
			return nil, fmt.Errorf("invalid --subnet %s: %w", req.Pool, err)
		}
		if cfg, ok := ipamOfCreate(want, req.V6); !ok || cfg.Subnet.Masked() != pfx.Masked() {
			return nil, fmt.Errorf("pool %s is not the network's --subnet", req.Pool)
		}
	}
	for attempt := 0; ; attempt++ {
		v, err := p.eng.InspectNetwork(ctx, cr.Name, false)
		if err == nil {
			if err := sameNetwork(v.Network, want); err != nil {
				return nil, err
			}
			return poolReply(v.Network, req.V6)
		}
		if !errors.Is(err, model.ErrNotFound) {
			return nil, err
		}
		n, err := p.eng.CreateNetwork(ctx, want)
		if err == nil {
			p.log.Info("docker network defines cluster network", "name", n.Name, "ipam", n.IPAM)
			return poolReply(n, req.V6)
		}
		if !errors.Is(err, model.ErrConflict) || attempt > 0 {
			return nil, err
		}
		// Another host created it at the same time: join it.
	}
}

func ipamOfCreate(c api.NetworkCreate, v6 bool) (model.IPAMConfig, bool) {
	for _, x := range c.IPAM {
		if x.Subnet.Addr().Is6() == v6 {
			return x, true
		}
	}
	return model.IPAMConfig{}, false
}

func poolReply(n model.Network, v6 bool) (any, error) {
	cfg, ok := ipamOf(n, v6)
	if !ok {
		fam := "IPv4"
		if v6 {
			fam = "IPv6"
		}
		return nil, fmt.Errorf("network %s has no %s subnet", n.Name, fam)
	}
	return map[string]any{"PoolID": poolID(n, v6), "Pool": cfg.Subnet.String(), "Data": map[string]string{}}, nil
}

// want is the cluster network a Docker create asks for: one --subnet per
// family at most (the IPv6 one with --ipv6), each with its --gateway.
func (c networkCreate) want() (api.NetworkCreate, error) {
	req := api.NetworkCreate{Name: c.Name, Driver: "overlay", Internal: c.Internal, Options: c.Options, Labels: c.Labels, EnableIPv6: c.EnableIPv6}
	if c.EnableIPv4 != nil && !*c.EnableIPv4 {
		return req, errors.New("IPv6-only networks (--ipv4=false) are not supported on vxnet's Docker networks")
	}
	if c.Attachable || c.Ingress || c.Scope != "" || c.ConfigOnly || c.ConfigFrom != nil {
		return req, errors.New("--attachable, --ingress, --scope, --config-only and --config-from are not supported on vxnet networks")
	}
	seen := map[bool]bool{}
	for _, x := range c.IPAM.Config {
		if len(x.AuxAddress) > 0 {
			return req, errors.New("--aux-address is not supported on vxnet networks")
		}
		if x.IPRange != "" {
			return req, fmt.Errorf("--ip-range %s is not supported on vxnet networks", x.IPRange)
		}
		if x.Subnet == "" {
			if x.Gateway != "" {
				return req, errors.New("--gateway needs --subnet")
			}
			continue
		}
		var cfg model.IPAMConfig
		pfx, err := netip.ParsePrefix(x.Subnet)
		if err != nil {
			return req, fmt.Errorf("invalid --subnet %s: %w", x.Subnet, err)
		}
		cfg.Subnet = pfx
		v6 := pfx.Addr().Is6()
		if seen[v6] {
			return req, errors.New("vxnet networks take one --subnet per address family")
		}
		seen[v6] = true
		if v6 && !c.EnableIPv6 {
			return req, fmt.Errorf("an IPv6 --subnet %s needs --ipv6", x.Subnet)
		}
		if x.Gateway != "" {
			g, err := netip.ParseAddr(x.Gateway)
			if err != nil {
				return req, fmt.Errorf("invalid --gateway %s: %w", x.Gateway, err)
			}
			if g.Is6() != v6 {
				return req, fmt.Errorf("--gateway %s is not of --subnet %s's family", x.Gateway, x.Subnet)
			}
			cfg.Gateway = g
		}
		req.IPAM = append(req.IPAM, cfg)
	}
	return req, nil
}

// sameNetwork refuses a Docker create whose settings differ from the
// cluster network of the same name.
func sameNetwork(n model.Network, want api.NetworkCreate) error {
	if n.Driver != "overlay" {
		return fmt.Errorf("network %s exists in vxnet with driver %s: Docker's vxnet networks are vxnet overlay networks", n.Name, n.Driver)
	}
	if n.DisableIPv4 {
		return fmt.Errorf("network %s is IPv6-only in the cluster: vxnet's Docker networks need IPv4", n.Name)
	}
	if _, ok := ipamOf(n, false); !ok {
		return fmt.Errorf("network %s has no subnet", n.Name)
	}
	if want.EnableIPv6 != n.EnableIPv6 {
		return fmt.Errorf("network %s exists in the cluster with IPv6 enabled=%v: --ipv6 conflicts", n.Name, n.EnableIPv6)
	}
	for _, w := range want.IPAM {
		have, _ := ipamOf(n, w.Subnet.Addr().Is6())
		if w.Subnet.Masked() != have.Subnet.Masked() {
			return fmt.Errorf("network %s exists in the cluster with subnet %s: --subnet %s conflicts", n.Name, have.Subnet, w.Subnet)
		}
		if g := w.Gateway; g.IsValid() && g != have.Gateway {
			return fmt.Errorf("network %s exists in the cluster with gateway %s: --gateway %s conflicts", n.Name, have.Gateway, g)
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
	// Both pools of a dual-stack network stand for it: the first release
	// removes it (or keeps it for other hosts), the second finds it gone
	// (or kept again).
	id, _ := parsePoolID(req.PoolID)
	err := p.eng.RemoveNetwork(ctx, id)
	switch {
	case err == nil:
		p.log.Info("docker network rm removed cluster network", "id", id)
	case errors.Is(err, model.ErrNotFound):
	case errors.Is(err, model.ErrForbidden):
		p.log.Info("cluster network kept: other hosts have endpoints on it", "id", id)
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
	netID, v6 := parsePoolID(req.PoolID)
	v, err := p.eng.InspectNetwork(ctx, netID, false)
	if err != nil {
		return nil, fmt.Errorf("network of pool %s: %w", req.PoolID, err)
	}
	n := v.Network
	cfg, ok := ipamOf(n, v6)
	if !ok {
		return nil, fmt.Errorf("network %s has no subnet for pool %s", n.Name, req.PoolID)
	}
	var ip netip.Addr
	if req.Address != "" {
		if ip, err = netip.ParseAddr(req.Address); err != nil {
			return nil, fmt.Errorf("invalid address %s: %w", req.Address, err)
		}
		if !cfg.Subnet.Contains(ip) {
			return nil, fmt.Errorf("address %s is outside the pool %s", ip, cfg.Subnet)
		}
	}
	if req.Options["RequestAddressType"] == gatewayRequest {
		gw := cfg.Gateway
		if ip.IsValid() && ip != gw {
			return nil, fmt.Errorf("network %s has gateway %s in the cluster: %s conflicts", n.Name, gw, ip)
		}
		return map[string]any{"Address": netip.PrefixFrom(gw, cfg.Subnet.Bits()).String(), "Data": map[string]string{}}, nil
	}
	addr, err := p.eng.ReserveAddress(ctx, n.ID, ip, v6)
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
		IPv6Data []struct {
			AddressSpace, Pool, Gateway string
			AuxAddresses                map[string]string
		}
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if len(req.IPv4Data) != 1 {
		return nil, errors.New("vxnet networks take exactly one IPv4 pool from the vxnet IPAM driver (--ipam-driver vxnet)")
	}
	n, err := p.networkOfPool(ctx, req.IPv4Data[0].Pool, false)
	if err != nil {
		return nil, fmt.Errorf("%w: use --ipam-driver vxnet", err)
	}
	if len(req.IPv6Data) > 1 {
		return nil, errors.New("vxnet networks take at most one IPv6 pool (--ipv6 with one IPv6 --subnet)")
	}
	if (len(req.IPv6Data) == 1) != n.EnableIPv6 {
		return nil, fmt.Errorf("network %s has IPv6 enabled=%v in the cluster: the Docker network's --ipv6 must match", n.Name, n.EnableIPv6)
	}
	if len(req.IPv6Data) == 1 {
		n6, err := p.networkOfPool(ctx, req.IPv6Data[0].Pool, true)
		if err != nil {
			return nil, fmt.Errorf("%w: use --ipam-driver vxnet", err)
		}
		if n6.ID != n.ID {
			return nil, fmt.Errorf("pools %s and %s belong to different vxnet networks", req.IPv4Data[0].Pool, req.IPv6Data[0].Pool)
		}
	}
	return struct{}{}, nil
}

// networkOfPool finds the cluster network whose subnet of pool's family
// is pool.
func (p *Plugin) networkOfPool(ctx context.Context, pool string, v6 bool) (model.Network, error) {
	pfx, err := netip.ParsePrefix(pool)
	if err != nil {
		return model.Network{}, fmt.Errorf("invalid pool %s: %w", pool, err)
	}
	if pfx.Addr().Is6() != v6 {
		return model.Network{}, fmt.Errorf("pool %s is not of its family", pool)
	}
	vs, err := p.eng.ListNetworks(ctx)
	if err != nil {
		return model.Network{}, err
	}
	for _, v := range vs {
		n := v.Network
		if cfg, ok := ipamOf(n, v6); ok && n.Driver == "overlay" && cfg.Subnet.Masked() == pfx.Masked() {
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
	addr, err := netip.ParsePrefix(req.Interface.Address)
	if err != nil || !addr.Addr().Is4() {
		return nil, fmt.Errorf("invalid IPv4 address %s", req.Interface.Address)
	}
	var addr6 netip.Prefix
	if req.Interface.AddressIPv6 != "" {
		if addr6, err = netip.ParsePrefix(req.Interface.AddressIPv6); err != nil || !addr6.Addr().Is6() || addr6.Addr().Is4In6() {
			return nil, fmt.Errorf("invalid IPv6 address %s", req.Interface.AddressIPv6)
		}
	}
	mac := model.MACForIP(addr.Addr()).String()
	if req.Interface.MacAddress != "" && !strings.EqualFold(req.Interface.MacAddress, mac) {
		return nil, fmt.Errorf("--mac-address is not supported on vxnet networks (the MAC follows the address: %s)", mac)
	}
	p.mu.Lock()
	netID, ok := p.pending[addr.Addr()]
	netID6, ok6 := p.pending[addr6.Addr()]
	if ok && (!addr6.IsValid() || ok6 && netID6 == netID) {
		p.endpoints[req.EndpointID] = endpointReq{netID: netID, addr: addr, addr6: addr6}
	}
	p.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("address %s was not handed out by the vxnet IPAM driver", addr)
	}
	if addr6.IsValid() && (!ok6 || netID6 != netID) {
		return nil, fmt.Errorf("IPv6 address %s was not handed out by the vxnet IPAM driver for this network", addr6)
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
		if v.Endpoint.Addr6.IsValid() {
			val["vxnet.address6"] = v.Endpoint.Addr6.String()
		}
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
		IfName: "vxd" + short(req.EndpointID), Name: name, IP: er.addr.Addr(), IP6: er.addr6.Addr(), Reserved: true, SandboxKey: req.SandboxKey})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	delete(p.pending, er.addr.Addr())
	if er.addr6.IsValid() {
		delete(p.pending, er.addr6.Addr())
	}
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
