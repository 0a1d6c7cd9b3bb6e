//go:build !linux

package ipam

import (
	"errors"
	"net/netip"
)

// HostRoutes is not supported outside Linux.
func HostRoutes() ([]netip.Prefix, error) {
	return nil, errors.New("ipam: list host routes: not supported on this OS")
}
