// Package host is the driver of the predefined "host" network: the
// container shares the host's network namespace, so there is nothing to
// create or plumb. The engine gives such containers the host namespace
// (model.Sandbox.HostNetwork); this driver owns no kernel objects.
package host

import (
	"context"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
)

// Type is the driver name.
const Type = "host"

// Driver is the host driver. The zero value is ready to use.
type Driver struct{}

var _ driver.Driver = (*Driver)(nil)

// New returns a host driver.
func New() *Driver { return &Driver{} }

// Type returns "host".
func (*Driver) Type() string { return Type }

// Scope returns model.ScopeLocal.
func (*Driver) Scope() string { return model.ScopeLocal }

// CreateNetwork does nothing: the host namespace already exists.
func (*Driver) CreateNetwork(context.Context, model.Network) error { return nil }

// DeleteNetwork does nothing.
func (*Driver) DeleteNetwork(context.Context, model.Network) error { return nil }

// Join does nothing: the container uses the host's interfaces.
func (*Driver) Join(context.Context, model.Network, model.Endpoint, driver.JoinInfo) error {
	return nil
}

// Leave does nothing.
func (*Driver) Leave(context.Context, model.Network, model.Endpoint, model.Sandbox) error {
	return nil
}
