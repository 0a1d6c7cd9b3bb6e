// Package ipam assigns IPv4 subnets to networks and addresses to endpoints.
//
// It is pure computation: no I/O except HostRoutes, which reads the host's
// routing table so that default pools avoid networks the host already reaches.
//
// The allocation state of one subnet is a Subnet: a plain value with a compact
// JSON form (allocated addresses as ranges plus the serial cursor), so a global
// store can read it, allocate, and write it back with compare-and-swap. The
// Allocator holds the Subnets of local-scope networks keyed by network ID and
// is safe for concurrent use.
//
// Error messages begin with Docker's own wording so users of the docker CLI see
// familiar text; callers branch on the sentinel errors with errors.Is.
package ipam

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap exactly one of them.
var (
	// ErrPoolOverlap: a requested subnet overlaps one already in use.
	ErrPoolOverlap = errors.New("Pool overlaps with other one on this address space") //nolint:staticcheck // Docker's wording
	// ErrNoAvailablePool: every default pool is used or overlaps a host route.
	ErrNoAvailablePool = errors.New("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")
	// ErrAddressInUse: a requested static address is already allocated or reserved.
	ErrAddressInUse = errors.New("Address already in use") //nolint:staticcheck // Docker's wording
	// ErrNoAvailableAddress: the subnet (or its ip-range) is exhausted.
	ErrNoAvailableAddress = errors.New("no available addresses on this pool")
	// ErrInvalid: a subnet, ip-range, gateway, aux address or static address
	// is malformed or outside its subnet.
	ErrInvalid = errors.New("ipam: invalid argument")
	// ErrNotFound: no pool is held for the network ID.
	ErrNotFound = errors.New("ipam: network not found")
)

// ipamError prints msg and unwraps to one sentinel, so err.Error() shows
// Docker's wording while errors.Is still works.
type ipamError struct {
	msg      string
	sentinel error
}

func (e *ipamError) Error() string { return e.msg }
func (e *ipamError) Unwrap() error { return e.sentinel }

// errorf returns an error printing the formatted message and matching sentinel.
func errorf(sentinel error, format string, args ...any) error {
	return &ipamError{msg: fmt.Sprintf(format, args...), sentinel: sentinel}
}

// detailf returns an error printing the sentinel's text, ": ", then the detail.
func detailf(sentinel error, format string, args ...any) error {
	return &ipamError{msg: sentinel.Error() + ": " + fmt.Sprintf(format, args...), sentinel: sentinel}
}
