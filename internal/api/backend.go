package api

import (
	"context"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/vxnet/vxnet/internal/model"
)

// Backend is what the HTTP handlers need from the engine. The handlers
// translate Docker Engine API requests into these calls and the returned
// model values into Docker's response types. Errors wrap the engine's
// sentinels (model.ErrNotFound, ErrConflict, ErrForbidden, ErrInvalid, ErrUnavailable),
// which api maps to HTTP status codes in one place.
//
// Object references (ref) are resolved in Docker's order: full ID, exact
// name, unique ID prefix; an ambiguous prefix is ErrInvalid.
type Backend interface {
	// Networks
	CreateNetwork(ctx context.Context, req NetworkCreate) (model.Network, error)
	ListNetworks(ctx context.Context) ([]NetworkView, error)
	InspectNetwork(ctx context.Context, ref string, verbose bool) (NetworkView, error)
	RemoveNetwork(ctx context.Context, ref string) error
	// PruneNetworks removes unused user-defined networks and returns their names.
	PruneNetworks(ctx context.Context) ([]string, error)
	ConnectNetwork(ctx context.Context, netRef, ctrRef string, ep EndpointRequest) error
	DisconnectNetwork(ctx context.Context, netRef, ctrRef string, force bool) error

	// Containers
	CreateContainer(ctx context.Context, req ContainerCreate) (model.Container, error)
	StartContainer(ctx context.Context, ref string) error
	StopContainer(ctx context.Context, ref string, timeoutSeconds *int) error
	RemoveContainer(ctx context.Context, ref string, force bool) error
	// RenameContainer gives a container a new name (names, DNS and links follow).
	RenameContainer(ctx context.Context, ref, newName string) error
	ListContainers(ctx context.Context, all bool) ([]ContainerView, error)
	InspectContainer(ctx context.Context, ref string) (ContainerView, error)
	// WaitContainer blocks until the container is not running and returns its exit code.
	WaitContainer(ctx context.Context, ref string) (int, error)
	// Logs writes the container's output so far; follow keeps streaming until it exits.
	Logs(ctx context.Context, ref string, stdout, stderr io.Writer, follow bool) error
	// Exec runs cmd in the running container, streaming its output, and returns its exit code.
	Exec(ctx context.Context, ref string, cmd []string, env []string, stdout, stderr io.Writer) (int, error)

	// Images
	ListImages(ctx context.Context) ([]Image, error)
	ImportImage(ctx context.Context, name string, rootfsTar io.Reader) (Image, error)

	// Info about the daemon (for /info and /version).
	Info(ctx context.Context) (Info, error)
}

// NetworkCreate is a network create request, decoded from Docker's JSON.
type NetworkCreate struct {
	Name       string
	Driver     string // "" means bridge
	IPAM       []model.IPAMConfig
	EnableIPv6 bool
	// DisableIPv4 is Docker's EnableIPv4 false (an IPv6-only network).
	DisableIPv4 bool
	Internal    bool
	Attachable  bool
	Labels      map[string]string
	Options     map[string]string
}

// EndpointRequest is the per-network part of connect and create.
type EndpointRequest struct {
	IP      netip.Addr // static address, invalid for dynamic
	IP6     netip.Addr // static IPv6 address (--ip6), invalid for dynamic
	Aliases []string
	// MAC is a requested MAC address (nil: Docker's 02:42 + IPv4 bytes).
	MAC net.HardwareAddr
	// LinkLocalIPs are extra link-local addresses of the interface.
	LinkLocalIPs []netip.Addr
	// IfName is the interface name in the container
	// (com.docker.network.endpoint.ifname; "" = eth<N>).
	IfName string
	// GwPriority: the endpoint with the highest priority gives the
	// default route; ties go to the network whose name sorts first.
	GwPriority int
}

// NetworkAttach is one more network of a container at create.
type NetworkAttach struct {
	Network  string
	Endpoint EndpointRequest
	// Extra are the other networks to attach at create (several
	// EndpointsConfig entries), in order.
	Extra []NetworkAttach
}

// ContainerCreate is a container create request.
type ContainerCreate struct {
	Name       string // "" means a random readable name
	Image      string
	Cmd        []string
	Env        []string
	Hostname   string
	AutoRemove bool
	// Tty, OpenStdin and StdinOnce are Docker's -t, -i and the CLI's
	// stdin-once (close the container's stdin when the client's ends).
	Tty, OpenStdin, StdinOnce bool
	// ConsoleSize is the TTY's initial {height, width} (0: unset).
	ConsoleSize [2]uint
	// Network is the network (or host/none) to attach at start; "" means bridge.
	Network  string
	Endpoint EndpointRequest
	// Extra are the other networks to attach at create (several
	// EndpointsConfig entries), in order.
	Extra []NetworkAttach
	// ExposedPorts (--expose), PortBindings (-p) and PublishAll (-P).
	ExposedPorts []model.Port
	PortBindings []model.PortBinding
	PublishAll   bool
	// DNS, DNSSearch, DNSOptions are HostConfig.Dns, DnsSearch, DnsOptions.
	DNS        []netip.Addr
	DNSSearch  []string
	DNSOptions []string
	// ExtraHosts are HostConfig.ExtraHosts (--add-host), parsed.
	ExtraHosts []model.ExtraHost
	// Links are HostConfig.Links, "NAME[:ALIAS]" (default bridge only).
	Links []string
	// Mounts are the binds and volumes (HostConfig.Binds and Mounts,
	// Config.Volumes); a volume without a Name is anonymous.
	Mounts []model.Mount
	// Run are the process, resource and security options, checked.
	Run model.RunConfig
	// RestartPolicy is HostConfig.RestartPolicy (validated).
	RestartPolicy model.RestartPolicy
}

// NetworkView is a network with its endpoints on this host, for inspect and ls.
type NetworkView struct {
	Network   model.Network
	Endpoints []model.Endpoint // with Name = container name
	// Verbose is filled for inspect -v (overlay: VNI, namespace, peer tables).
	Verbose map[string]any
}

// ContainerView is a container with its endpoints, for inspect and ps.
type ContainerView struct {
	Container model.Container
	Endpoints []EndpointView
	// ResolvConfPath, HostsPath, HostnamePath are the per-container files.
	HostsPath, ResolvConfPath, HostnamePath string
	SandboxKey                              string
	// Restarting: exited, waiting out its restart policy's back-off.
	Restarting bool
}

// EndpointView is an endpoint with its network's name.
type EndpointView struct {
	NetworkName string
	Endpoint    model.Endpoint
}

// Image is one local image.
type Image struct {
	ID      string // sha256:...
	Name    string // repo:tag
	Created int64  // unix seconds
	Size    int64
}

// Info is what /info and /version report.
type Info struct {
	ID, Name, Version           string
	Containers, Running, Images int
	DataRoot, ExecRoot          string
	// Warnings are what is failing now (e.g. the firewall could not be
	// applied), shown by `docker info`.
	Warnings []string
}

// ExitWaiter is an optional Backend ability, found by type assertion, for
// Docker's wait conditions "next-exit" and "removed". WaitExit registers the
// wait when it is called and returns at once; the returned function blocks
// until the container's next exit (removed=false) or until it is removed
// after exiting (removed=true), and returns the exit code. Because the wait
// is registered before the container is started, a client learns the exit
// code even of a --rm container that is gone by the time it asks. Without
// this ability the API falls back to WaitContainer once the container has
// left the created state.
type ExitWaiter interface {
	WaitExit(ctx context.Context, ref string, removed bool) (wait func(context.Context) (int, error), err error)
}

// Streamer is an optional Backend ability, found by type assertion: attach
// to a container's streams, exec with stdin and a TTY, and resize TTYs.
// Without it attach and interactive execs are refused.
type Streamer interface {
	// AttachContainer connects the streams to the container's current (or
	// next) run and returns when that run has ended and its output is
	// delivered, or when ctx ends.
	AttachContainer(ctx context.Context, ref string, s AttachStreams) error
	// ExecStream runs an exec with the given streams and returns its exit code.
	ExecStream(ctx context.Context, ref string, req ExecStreamRequest) (int, error)
	// ResizeTTY sets the TTY size of the container (execID "") or of an exec.
	ResizeTTY(ctx context.Context, ref, execID string, height, width uint32) error
}

// AttachStreams are the client's ends of an attach. Stdin, when set, feeds
// the container's stdin (containers created with OpenStdin only); when it
// ends, CloseStdin closes the container's stdin (StdinOnce).
type AttachStreams struct {
	Stdin          io.Reader
	CloseStdin     bool
	Stdout, Stderr io.Writer
}

// ExecStreamRequest is one exec with its streams. ID names it for resize.
type ExecStreamRequest struct {
	ID             string
	Cmd, Env       []string
	Tty            bool
	ConsoleSize    [2]uint // initial {height, width} of the TTY
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// User, WorkingDir and Privileged are exec -u, -w and --privileged;
	// unset, the exec runs as the container's process.
	User, WorkingDir string
	Privileged       bool
}

// Lifecycle is an optional Backend ability, found by type assertion:
// signals, and logs with docker logs' options. Without it kill is refused
// and logs options other than follow are refused.
type Lifecycle interface {
	// KillContainer sends sig to the container's main process; a container
	// that is not running is ErrConflict.
	KillContainer(ctx context.Context, ref string, sig syscall.Signal) error
	// LogsWith is Logs with options.
	LogsWith(ctx context.Context, ref string, stdout, stderr io.Writer, o LogOptions) error
}

// LogOptions are docker logs' options.
type LogOptions struct {
	Follow     bool
	Tail       int // < 0: all
	Since      time.Time
	Until      time.Time
	Timestamps bool
}
