package driver

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/model"
)

// CheckJoin refuses, with ErrInvalid, an endpoint that cannot be plumbed
// into its sandbox: a sandbox without a namespace of its own, an endpoint
// without an address or without a 6-byte MAC.
func CheckJoin(sb model.Sandbox, ep model.Endpoint) error {
	switch {
	case sb.HostNetwork || sb.NetnsPath == "":
		return fmt.Errorf("sandbox %s has no namespace of its own: %w", sb.ID, ErrInvalid)
	case !ep.Addr.IsValid() && !ep.Addr6.IsValid():
		return fmt.Errorf("no address: %w", ErrInvalid)
	case len(ep.MAC) != 6:
		return fmt.Errorf("bad MAC %q: %w", ep.MAC, ErrInvalid)
	}
	return nil
}

// CheckIfName applies the kernel's rules for interface names. The error
// does not wrap ErrInvalid; callers add it where they need it.
func CheckIfName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > unix.IFNAMSIZ-1:
		return fmt.Errorf("interface name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r < 0x21 || r == 0x7f {
			return fmt.Errorf("interface name %q contains %q", name, r)
		}
	}
	return nil
}
