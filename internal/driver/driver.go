// Package driver defines the contract between the engine and network
// drivers (bridge, overlay, host, null). The interface is small and shaped
// around desired state: every method may be called again with the same
// arguments and must converge to the same kernel state. Extra abilities are
// optional interfaces that the engine finds by type assertion.
package driver

import (
	"context"
	"errors"
	"net/netip"

	"github.com/vxnet/vxnet/internal/model"
)

// ErrInvalid marks bad driver options (mapped to HTTP 400 by the API layer).
var ErrInvalid = errors.New("invalid argument")

// JoinInfo says where and how an endpoint is plumbed.
type JoinInfo struct {
	Sandbox model.Sandbox
	// DefaultRoute is true when this endpoint's gateway becomes the
	// sandbox's default route (the first network with a gateway).
	DefaultRoute bool
}

// Driver makes the kernel objects of one network type.
//
// All methods are idempotent: creating what exists (with compatible
// settings) and deleting what is gone are successes. The driver owns no
// persistent state; the engine passes the full network and endpoint values
// on every call, also after a daemon restart.
type Driver interface {
	// Type is the driver's name as users give it with -d (bridge, overlay, host, null).
	Type() string
	// Scope is model.ScopeLocal or model.ScopeGlobal.
	Scope() string
	// CreateNetwork ensures the network's kernel objects exist.
	CreateNetwork(ctx context.Context, n model.Network) error
	// DeleteNetwork removes the network's kernel objects.
	DeleteNetwork(ctx context.Context, n model.Network) error
	// Join plumbs ep into the sandbox: its interface named ep.IfName with
	// ep.Addr, ep.MAC and ep.MTU, and the default route if asked. Joining
	// again repairs a partial join.
	Join(ctx context.Context, n model.Network, ep model.Endpoint, ji JoinInfo) error
	// Leave removes ep's interface from the sandbox and the host.
	Leave(ctx context.Context, n model.Network, ep model.Endpoint, sb model.Sandbox) error
}

// OptionValidator is implemented by drivers that check -o options at
// network create time. Errors wrap ErrInvalid.
type OptionValidator interface {
	ValidateOptions(opts map[string]string) error
}

// Sweeper is implemented by drivers that can delete kernel objects carrying
// vxnet's marks that belong to no known network or endpoint (leftovers of a
// crash). Objects without vxnet's marks are never touched.
type Sweeper interface {
	Sweep(ctx context.Context, networks []model.Network, endpoints []model.Endpoint) error
}

// LinkLocalPrefixes are an endpoint's extra link-local addresses
// (IPAMConfig.LinkLocalIPs) with their link's prefix: /16 for IPv4
// (169.254.0.0/16), /64 for IPv6 (fe80::/64).
func LinkLocalPrefixes(ep model.Endpoint) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range ep.LinkLocalIPs {
		bits := 64
		if a.Is4() {
			bits = 16
		}
		out = append(out, netip.PrefixFrom(a, bits))
	}
	return out
}
