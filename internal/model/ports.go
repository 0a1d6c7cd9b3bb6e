package model

import (
	"fmt"
	"net/netip"
)

// Port is a container port with its protocol (80/tcp).
type Port struct {
	Num   uint16 `json:"Num"`
	Proto string `json:"Proto"` // tcp, udp or sctp
}

func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Num, p.Proto) }

// PortBinding is one requested publication of a container port
// (HostConfig.PortBindings): on HostIP (invalid: every address), on a host
// port in [HostPortFirst, HostPortLast] (both 0: any free port).
type PortBinding struct {
	Port          Port       `json:"Port"`
	HostIP        netip.Addr `json:"HostIP,omitzero"`
	HostPortFirst uint16     `json:"HostPortFirst,omitempty"`
	HostPortLast  uint16     `json:"HostPortLast,omitempty"`
}

// PortMapping is a publication in force while the container runs: HostIP
// (invalid: every address) and the host port chosen for a PortBinding.
type PortMapping struct {
	Port     Port       `json:"Port"`
	HostIP   netip.Addr `json:"HostIP,omitzero"`
	HostPort uint16     `json:"HostPort"`
	// IPv6: a mapping on every address that is also served on the host's
	// IPv6 addresses (the container has an IPv6 address there); inspect
	// then shows a second binding on "::", as Docker does.
	IPv6 bool `json:"IPv6,omitempty"`
}

// Conflicts reports whether two mappings claim the same host port: same
// protocol and port, and host addresses that overlap (equal, one of them
// every address, or one of them every address of the other's family:
// 0.0.0.0 or ::).
func (m PortMapping) Conflicts(o PortMapping) bool {
	if m.Port.Proto != o.Port.Proto || m.HostPort != o.HostPort {
		return false
	}
	a, b := m.HostIP.Unmap(), o.HostIP.Unmap()
	if !a.IsValid() || !b.IsValid() {
		return true
	}
	if a.Is4() != b.Is4() {
		return false
	}
	return a.IsUnspecified() || b.IsUnspecified() || a == b
}
