package engine

import (
	"context"
	"io"
	"net/netip"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/firewall"
	"github.com/vxnet/vxnet/internal/model"
)

// The engine reaches the kernel, runc and the allocator through these small
// interfaces, so its decisions are testable with fakes. The daemon wires the
// real implementations (internal/ipam, internal/runtime, internal/firewall).

// IPAM allocates subnets and addresses for local-scope networks.
type IPAM interface {
	// RequestPool reserves the network's subnets (empty cfgs: pick a
	// default pool) and returns them completed (gateway filled in).
	RequestPool(netID string, cfgs []model.IPAMConfig, hostRoutes []netip.Prefix) ([]model.IPAMConfig, error)
	ReleasePool(netID string)
	// Allocate returns an address with the subnet's prefix length; a valid
	// static address is reserved as given.
	Allocate(netID string, static netip.Addr) (netip.Prefix, error)
	Release(netID string, addr netip.Addr)
	// Snapshot and Restore carry the allocator state of one network
	// through the local store across daemon restarts. Restore makes the
	// addresses in use exactly inUse (the endpoints that exist); state
	// only carries what else the allocator keeps (the serial cursor).
	Snapshot(netID string) ([]byte, error)
	Restore(netID string, cfgs []model.IPAMConfig, state []byte, inUse []netip.Addr) error
}

// IPAM6 is implemented by an IPAM that also gives out IPv6 addresses (from
// the network's IPv6 subnets); without it, IPv6 networks are refused.
type IPAM6 interface {
	Allocate6(netID string, static netip.Addr) (netip.Prefix, error)
}

// ContainerSpec is what the runtime needs to run a container.
type ContainerSpec struct {
	ID, Image string
	Args, Env []string
	Hostname  string
	NetnsPath string // "" shares the host's network namespace
	Mounts    []Mount
	// Tty gives the process a TTY; Stdin gives it a stdin attached
	// clients write to.
	Tty, Stdin bool
	// ConsoleSize is the TTY's initial {height, width}.
	ConsoleSize [2]uint
	// Run are the process, resource and security options, merged with
	// the image's (Entrypoint, User, WorkingDir...).
	Run model.RunConfig
}

// Mount is a bind mount into the container.
type Mount struct {
	Source, Destination string
	ReadOnly            bool
	// Propagation is the bind propagation; "" is rprivate.
	Propagation string
}

// RuntimeState is the runtime's view of one container.
type RuntimeState struct {
	Status     string // created, running, stopped, unknown
	Pid        int
	ExitCode   int
	FinishedAt time.Time
	// Paused: running with its processes frozen.
	Paused bool
}

// Runtime runs containers (runc).
type Runtime interface {
	Create(ctx context.Context, spec ContainerSpec) error
	Start(ctx context.Context, id string) (int, error)
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Delete(ctx context.Context, id string) error
	State(ctx context.Context, id string) (RuntimeState, error)
	Wait(ctx context.Context, id string) (int, error)
	Exec(ctx context.Context, id string, args, env []string, stdout, stderr io.Writer) (int, error)
	Logs(ctx context.Context, id string, stdout, stderr io.Writer, follow bool) error
	List(ctx context.Context) ([]string, error)
}

// ImageInfo is one local image.
type ImageInfo struct {
	ID, Name string
	Created  time.Time
	Size     int64
	Cmd      []string
	// ExposedPorts are the image's exposed ports (published by -P).
	ExposedPorts []model.Port
	// Entrypoint, User, WorkingDir, Labels and StopSignal of the image's
	// config, the defaults of a container's.
	Entrypoint []string
	User       string
	WorkingDir string
	Labels     map[string]string
	StopSignal string
	// Volumes are the image's volume mount points (anonymous volumes of
	// its containers).
	Volumes []string
}

// Images is the local image store.
type Images interface {
	Get(ref string) (ImageInfo, error)
	List() ([]ImageInfo, error)
	Import(name string, r io.Reader) (ImageInfo, error)
}

// Firewall applies the whole desired firewall state (internal/firewall).
type Firewall interface {
	Apply(ctx context.Context, cfg firewall.Config) error
}

// StreamRuntime is the optional part of a Runtime that attaches to
// containers' streams, runs execs with stdin and a TTY, and resizes TTYs.
type StreamRuntime interface {
	Attach(ctx context.Context, id string, s api.AttachStreams) error
	ExecStream(ctx context.Context, id string, req api.ExecStreamRequest) (int, error)
	Resize(ctx context.Context, id, execID string, height, width uint32) error
}

// SignalRuntime is the optional part of a Runtime that signals containers
// and reads their logs with options.
type SignalRuntime interface {
	Kill(ctx context.Context, id string, sig syscall.Signal) error
	LogsWith(ctx context.Context, id string, stdout, stderr io.Writer, o api.LogOptions) error
}

// ControlRuntime is the optional part of a Runtime that pauses and resumes
// containers and reads their processes and cgroup statistics. A container
// without a running task is model.ErrConflict.
type ControlRuntime interface {
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	// Pids are the host pids of the container's processes.
	Pids(ctx context.Context, id string) ([]int, error)
	// Metrics are the cgroup's CPU, memory, pids and block I/O figures.
	Metrics(ctx context.Context, id string) (container.StatsResponse, error)
}
