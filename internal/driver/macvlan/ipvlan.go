package macvlan

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
)

// IPVlan stands in for Docker's ipvlan driver, which vxnet does not
// implement: every network create is refused with a message that says why,
// naming the missing kernel module when the kernel has no ipvlan support
// (the usual reason on small kernels) rather than "plugin not found".
type IPVlan struct {
	d *Driver
}

var (
	_ driver.Driver          = (*IPVlan)(nil)
	_ driver.OptionValidator = (*IPVlan)(nil)
)

// NewIPVlan returns the ipvlan refuser; it probes the kernel in the same
// namespace as d.
func NewIPVlan(d *Driver) *IPVlan { return &IPVlan{d: d} }

func (*IPVlan) Type() string  { return "ipvlan" }
func (*IPVlan) Scope() string { return model.ScopeLocal }

// KernelSupport reports whether the kernel knows the ipvlan link type. It
// asks for an ipvlan on the loopback device, which a kernel with ipvlan
// refuses as an invalid parent and a kernel without it as an unknown type;
// nothing is created either way.
func (v *IPVlan) KernelSupport() (bool, error) {
	h, err := v.d.hostHandle()
	if err != nil {
		return false, err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return false, fmt.Errorf("ipvlan: probe: %w", err)
	}
	probe := &netlink.IPVlan{LinkAttrs: netlink.LinkAttrs{Name: "vxnetprobe", ParentIndex: lo.Attrs().Index}, Mode: netlink.IPVLAN_MODE_L2}
	err = h.LinkAdd(probe)
	if err == nil {
		h.LinkDel(probe) // cannot happen on a sane kernel; do not keep it
		return true, nil
	}
	return !unsupportedKind(err), nil
}

// ValidateOptions refuses every ipvlan network.
func (v *IPVlan) ValidateOptions(map[string]string) error {
	ok, err := v.KernelSupport()
	if err != nil {
		return err
	}
	if !ok {
		return &invalidError{msg: "ipvlan: this kernel has no ipvlan support (module ipvlan not available); use -d macvlan"}
	}
	return &invalidError{msg: "ipvlan: vxnet does not implement ipvlan networks; use -d macvlan"}
}

func (v *IPVlan) CreateNetwork(context.Context, model.Network) error { return v.ValidateOptions(nil) }
func (*IPVlan) DeleteNetwork(context.Context, model.Network) error   { return nil }
func (v *IPVlan) Join(context.Context, model.Network, model.Endpoint, driver.JoinInfo) error {
	return v.ValidateOptions(nil)
}
func (*IPVlan) Leave(context.Context, model.Network, model.Endpoint, model.Sandbox) error { return nil }
