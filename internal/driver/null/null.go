// Package null is the driver of the predefined "none" network: the
// container gets a namespace with only loopback. It owns no kernel objects.
package null

import (
	"context"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
)

// Type is the driver name.
const Type = "null"

// Driver is the null driver. The zero value is ready to use.
type Driver struct{}

var _ driver.Driver = (*Driver)(nil)

// New returns a null driver.
func New() *Driver { return &Driver{} }

// The methods do nothing: a "none" sandbox keeps only its loopback.

func (*Driver) Type() string                                       { return Type }
func (*Driver) Scope() string                                      { return model.ScopeLocal }
func (*Driver) CreateNetwork(context.Context, model.Network) error { return nil }
func (*Driver) DeleteNetwork(context.Context, model.Network) error { return nil }
func (*Driver) Join(context.Context, model.Network, model.Endpoint, driver.JoinInfo) error {
	return nil
}
func (*Driver) Leave(context.Context, model.Network, model.Endpoint, model.Sandbox) error {
	return nil
}
