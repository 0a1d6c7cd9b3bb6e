// Package model holds vxnet's domain values, shaped after Docker's Container
// Network Model: Network, Endpoint, Sandbox and Container. They are plain
// values with no persistence or kernel code; the store package serialises
// them and the engine decides what they mean.
package model

import (
	"crypto/sha256"
	"net"
	"net/netip"
	"time"
)

// Scopes of a network, as Docker names them.
const (
	ScopeLocal  = "local"
	ScopeGlobal = "global"
)

// Predefined network names.
const (
	NetBridge = "bridge"
	NetHost   = "host"
	NetNone   = "none"
)

// Docker's driver option names that vxnet understands.
const (
	OptBridgeName    = "com.docker.network.bridge.name"
	OptMTU           = "com.docker.network.driver.mtu"
	OptICC           = "com.docker.network.bridge.enable_icc"
	OptMasquerade    = "com.docker.network.bridge.enable_ip_masquerade"
	OptDefaultBridge = "com.docker.network.bridge.default_bridge"
	// OptEndpointIfName is the endpoint driver option naming the
	// container's interface.
	OptEndpointIfName = "com.docker.network.endpoint.ifname"
)

// IPAMConfig is one subnet of a network.
type IPAMConfig struct {
	Subnet     netip.Prefix          `json:"Subnet"`
	IPRange    netip.Prefix          `json:"IPRange,omitempty"`
	Gateway    netip.Addr            `json:"Gateway,omitempty"`
	AuxAddress map[string]netip.Addr `json:"AuxiliaryAddresses,omitempty"`
	// Auto: the subnet came from a default pool (no --subnet for it).
	// Docker 28 takes a static address (--ip, --ip6) only in a subnet the
	// user configured. Records written before it are taken as configured.
	Auto bool `json:"Auto,omitempty"`
}

// Network is a set of endpoints that reach each other directly.
type Network struct {
	ID         string            `json:"ID"`
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver"`
	Scope      string            `json:"Scope"`
	Created    time.Time         `json:"Created"`
	IPAM       []IPAMConfig      `json:"IPAM"`
	Internal   bool              `json:"Internal"`
	Attachable bool              `json:"Attachable"`
	Labels     map[string]string `json:"Labels,omitempty"`
	Options    map[string]string `json:"Options,omitempty"`
	// Predefined networks (bridge, host, none) can be neither created nor removed.
	Predefined bool `json:"Predefined,omitempty"`
	// VNI is the VXLAN network identifier of an overlay network (0 otherwise).
	VNI uint32 `json:"VNI,omitempty"`
	// EnableIPv6: the network has an IPv6 subnet (bridge and overlay
	// networks) and its endpoints an IPv6 address.
	EnableIPv6 bool `json:"EnableIPv6,omitempty"`
	// DisableIPv4: an IPv6-only network (Docker's EnableIPv4 false): no
	// IPv4 subnet, endpoints without an IPv4 address. Records written
	// before IPv6-only networks existed have IPv4.
	DisableIPv4 bool `json:"DisableIPv4,omitempty"`
}

// Endpoint is one container's attachment to one network.
type Endpoint struct {
	ID        string `json:"ID"`
	NetworkID string `json:"NetworkID"`
	// ContainerID is the container (and sandbox) the endpoint belongs to.
	ContainerID string           `json:"ContainerID"`
	Name        string           `json:"Name"` // container name, for hosts files and DNS
	Addr        netip.Prefix     `json:"Addr"` // address with the subnet's prefix length
	Gateway     netip.Addr       `json:"Gateway,omitempty"`
	MAC         net.HardwareAddr `json:"MAC"`
	Aliases     []string         `json:"Aliases,omitempty"`
	// StaticIP is true when the user asked for the address (--ip).
	StaticIP bool `json:"StaticIP,omitempty"`
	// Addr6 and Gateway6: the IPv6 address (with the subnet's prefix
	// length) and gateway on a network with EnableIPv6.
	Addr6    netip.Prefix `json:"Addr6,omitzero"`
	Gateway6 netip.Addr   `json:"Gateway6,omitzero"`
	// StaticIP6 is true when the user asked for the IPv6 address (--ip6).
	StaticIP6 bool `json:"StaticIP6,omitempty"`
	// IfName is the interface name inside the sandbox (eth0, eth1, ...).
	IfName string `json:"IfName"`
	// HostVeth is the host-side veth name (empty for host/null networks).
	HostVeth string `json:"HostVeth,omitempty"`
	// MTU of the container interface.
	MTU int `json:"MTU,omitempty"`
	// Order is the attach order within the sandbox (0 for the first).
	Order int `json:"Order"`
	// GwPriority decides which endpoint gives the default route (the
	// highest; ties: the network name that sorts first).
	GwPriority int `json:"GwPriority,omitempty"`
	// LinkLocalIPs are extra link-local addresses of the interface.
	LinkLocalIPs []netip.Addr `json:"LinkLocalIPs,omitempty"`
	// MACStatic and IfNameStatic: the user asked for the MAC / the
	// interface name.
	MACStatic    bool `json:"MACStatic,omitempty"`
	IfNameStatic bool `json:"IfNameStatic,omitempty"`
}

// MACForIP returns Docker's MAC for an IPv4 address: 02:42 followed by the
// four address bytes, so one IP always maps to one MAC. For an IPv6
// address (the endpoints of IPv6-only networks) it is 02:42 followed by
// the low four bytes, unique among the addresses vxnet hands out in a
// subnet (the first 2^32).
func MACForIP(a netip.Addr) net.HardwareAddr {
	if a.Is6() && !a.Is4In6() {
		b := a.As16()
		return net.HardwareAddr{0x02, 0x42, b[12], b[13], b[14], b[15]}
	}
	b := a.Unmap().As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

// DerivedMAC is a locally administered unicast MAC address derived from
// seed: the same seed always gives the same address.
func DerivedMAC(seed string) net.HardwareAddr {
	h := sha256.Sum256([]byte(seed))
	mac := net.HardwareAddr(h[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// Sandbox is a container's network namespace, pinned by a bind mount under
// the daemon's exec root so it outlives processes and daemon restarts.
type Sandbox struct {
	ID          string `json:"ID"`
	ContainerID string `json:"ContainerID"`
	// NetnsPath is the bind-mounted namespace file; empty for --net host.
	NetnsPath string `json:"NetnsPath"`
	// HostNetwork is true for --net host (the sandbox is the host namespace).
	HostNetwork bool `json:"HostNetwork,omitempty"`
}

// ExtraHost is one --add-host NAME:IP; HostGateway stands for Docker's
// "host-gateway" (the default bridge's gateway address).
type ExtraHost struct {
	Name        string     `json:"Name"`
	Addr        netip.Addr `json:"Addr,omitempty"`
	HostGateway bool       `json:"HostGateway,omitempty"`
}

// Container states, with Docker's words.
const (
	StateCreated = "created"
	StateRunning = "running"
	StateExited  = "exited"
)

// Container is a runc container whose namespace is its sandbox's.
// Mount is a bind mount (a host path) or a volume of a container.
type Mount struct {
	Type string `json:"Type"` // "bind" or "volume"
	// Name is the volume's name (volumes only).
	Name string `json:"Name,omitempty"`
	// Source is the host path: the bind source or the volume's directory.
	Source      string `json:"Source"`
	Destination string `json:"Destination"`
	ReadOnly    bool   `json:"ReadOnly,omitempty"`
	// Propagation is the bind propagation (rprivate, private, rshared,
	// shared, rslave, slave); "" is rprivate.
	Propagation string `json:"Propagation,omitempty"`
	// Anonymous: a volume made for this container (-v /path), removed
	// with it by rm -v and --rm.
	Anonymous bool `json:"Anonymous,omitempty"`
	// CreateSource: a bind from -v creates a missing host directory.
	CreateSource bool `json:"-"`
	// NoCopy: the image's content under Destination is not copied into
	// a new, empty volume.
	NoCopy bool `json:"NoCopy,omitempty"`
}

type Container struct {
	ID   string `json:"ID"`
	Name string `json:"Name"`
	// Image is the image reference as the client gave it (Config.Image:
	// "busybox", as docker ps and inspect show it).
	Image string `json:"Image"`
	// Mounts are the container's binds and volumes.
	Mounts []Mount `json:"Mounts,omitempty"`
	// ImageID is the ID of the image Image named at create.
	ImageID  string    `json:"ImageID,omitempty"`
	Cmd      []string  `json:"Cmd"`
	Env      []string  `json:"Env,omitempty"`
	Hostname string    `json:"Hostname"`
	Created  time.Time `json:"Created"`
	// AutoRemove is --rm.
	AutoRemove bool `json:"AutoRemove,omitempty"`
	// NetworkMode is the network named at run time (--net).
	NetworkMode string `json:"NetworkMode"`
	// ExposedPorts are the container's ports (--expose, the image's, and
	// those of PortBindings); PortBindings the publications asked for (-p);
	// PublishAll is -P (every exposed port on a random host port).
	ExposedPorts []Port        `json:"ExposedPorts,omitempty"`
	PortBindings []PortBinding `json:"PortBindings,omitempty"`
	PublishAll   bool          `json:"PublishAll,omitempty"`
	// Ports are the host ports held while the container runs.
	Ports []PortMapping `json:"Ports,omitempty"`
	// DNS, DNSSearch and DNSOptions are --dns, --dns-search and
	// --dns-option.
	DNS        []netip.Addr `json:"Dns,omitempty"`
	DNSSearch  []string     `json:"DnsSearch,omitempty"`
	DNSOptions []string     `json:"DnsOptions,omitempty"`
	// ExtraHosts are --add-host entries (hosts file lines).
	ExtraHosts []ExtraHost `json:"ExtraHosts,omitempty"`
	// Links are legacy --link entries on the default bridge, "NAME:ALIAS".
	Links []string `json:"Links,omitempty"`
	// Tty, OpenStdin and StdinOnce: docker run -t, -i (and the CLI's
	// stdin-once).
	Tty       bool `json:"Tty,omitempty"`
	OpenStdin bool `json:"OpenStdin,omitempty"`
	StdinOnce bool `json:"StdinOnce,omitempty"`
	// Run are the process, resource and security options.
	Run        RunConfig `json:"Run"`
	State      string    `json:"State"`
	Pid        int       `json:"Pid,omitempty"`
	ExitCode   int       `json:"ExitCode"`
	StartedAt  time.Time `json:"StartedAt,omitempty"`
	FinishedAt time.Time `json:"FinishedAt,omitempty"`
	// Error is why the last start failed ("" after a start that worked).
	Error string `json:"Error,omitempty"`
	// Paused: a running container whose processes are frozen (docker
	// pause).
	Paused bool `json:"Paused,omitempty"`
	// RestartPolicy is HostConfig.RestartPolicy; RestartCount counts the
	// restarts the policy made since a user last started the container.
	RestartPolicy RestartPolicy `json:"RestartPolicy,omitzero"`
	RestartCount  int           `json:"RestartCount,omitempty"`
	// ManuallyStopped: a user stopped or killed the container since it
	// last started (unless-stopped keeps it down, also across a daemon
	// restart).
	ManuallyStopped bool `json:"ManuallyStopped,omitempty"`
}

// Restart policy names (HostConfig.RestartPolicy.Name), Docker's.
const (
	RestartNo            = "no"
	RestartAlways        = "always"
	RestartUnlessStopped = "unless-stopped"
	RestartOnFailure     = "on-failure"
)

// RestartPolicy is what to do when a container exits. Name "" means "no";
// MaximumRetryCount bounds on-failure (0: no bound).
type RestartPolicy struct {
	Name              string `json:"Name,omitempty"`
	MaximumRetryCount int    `json:"MaximumRetryCount,omitempty"`
}
