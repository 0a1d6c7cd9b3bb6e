package model

// RunConfig are a container's options about its process, its limits and
// its confinement: docker run's --entrypoint, --user, --workdir, --memory,
// --cap-add, --security-opt and the like. The API checks them, the engine
// merges them with the image's config, the runtime turns them into the OCI
// spec. Field names follow Docker's create request.
type RunConfig struct {
	// Entrypoint is the merged entrypoint (Docker's: the request's, else
	// the image's; ["" ] in the request clears it); the command run is
	// Entrypoint followed by the container's Cmd.
	Entrypoint []string `json:"Entrypoint,omitempty"`
	// User is "user", "uid", "user:group" or "uid:gid", resolved against
	// the container's /etc/passwd and /etc/group at create.
	User string `json:"User,omitempty"`
	// WorkingDir is the process's cwd, made (root-owned) if missing.
	WorkingDir string            `json:"WorkingDir,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
	Domainname string            `json:"Domainname,omitempty"`
	// StopSignal is sent by stop ("" means SIGTERM); StopTimeout is the
	// default seconds stop waits before SIGKILL (nil: 10).
	StopSignal  string `json:"StopSignal,omitempty"`
	StopTimeout *int   `json:"StopTimeout,omitempty"`

	ReadonlyRootfs bool `json:"ReadonlyRootfs,omitempty"`
	// Resources: bytes, nano-CPUs, relative shares; MemorySwap is memory
	// plus swap (-1 unlimited); PidsLimit 0 is unlimited.
	Memory     int64 `json:"Memory,omitempty"`
	MemorySwap int64 `json:"MemorySwap,omitempty"`
	NanoCPUs   int64 `json:"NanoCpus,omitempty"`
	CPUShares  int64 `json:"CpuShares,omitempty"`
	PidsLimit  int64 `json:"PidsLimit,omitempty"`
	// MemoryReservation is the soft memory limit; MemorySwappiness
	// (nil: the kernel's) and OomKillDisable tune the memory cgroup.
	MemoryReservation int64  `json:"MemoryReservation,omitempty"`
	MemorySwappiness  *int64 `json:"MemorySwappiness,omitempty"`
	OomKillDisable    bool   `json:"OomKillDisable,omitempty"`
	// CPUQuota and CPUPeriod are the CFS limits in microseconds (not with
	// NanoCPUs); CpusetCpus and CpusetMems pin to CPUs and memory nodes
	// ("0-2,4").
	CPUQuota   int64  `json:"CpuQuota,omitempty"`
	CPUPeriod  int64  `json:"CpuPeriod,omitempty"`
	CpusetCpus string `json:"CpusetCpus,omitempty"`
	CpusetMems string `json:"CpusetMems,omitempty"`
	// OomScoreAdj is the process's oom_score_adj (-1000..1000).
	OomScoreAdj int `json:"OomScoreAdj,omitempty"`
	// GroupAdd are more groups for the process (names from the
	// container's /etc/group, or numbers).
	GroupAdd []string `json:"GroupAdd,omitempty"`
	// Devices are host devices made in the container (--device).
	Devices []Device `json:"Devices,omitempty"`
	// PidMode, IpcMode and UTSMode are "" (the container's own namespace)
	// or "host"; IpcMode may also be "private", "shareable" (both: its
	// own) or "none" (its own, without /dev/shm).
	PidMode string `json:"PidMode,omitempty"`
	IpcMode string `json:"IpcMode,omitempty"`
	UTSMode string `json:"UTSMode,omitempty"`
	// Ulimits are process resource limits (name as in "nofile").
	Ulimits []Ulimit `json:"Ulimits,omitempty"`
	// ShmSize is the size of /dev/shm in bytes (0: Docker's 64 MiB).
	ShmSize int64 `json:"ShmSize,omitempty"`
	// Sysctls are namespaced kernel parameters set in the container.
	Sysctls map[string]string `json:"Sysctls,omitempty"`

	// CapAdd and CapDrop as given (names with or without CAP_, or ALL).
	CapAdd  []string `json:"CapAdd,omitempty"`
	CapDrop []string `json:"CapDrop,omitempty"`
	// Privileged: every capability and device, no seccomp, no masked
	// paths, /sys writable.
	Privileged bool `json:"Privileged,omitempty"`
	// Init runs docker-init (tini) as pid 1, the command as its child.
	Init bool `json:"Init,omitempty"`
	// SecurityOpt as given; Seccomp and NoNewPrivileges are what they say:
	// Seccomp is "" (Docker's default profile), "unconfined", or a profile
	// in JSON.
	SecurityOpt     []string `json:"SecurityOpt,omitempty"`
	Seccomp         string   `json:"Seccomp,omitempty"`
	NoNewPrivileges bool     `json:"NoNewPrivileges,omitempty"`
	// MaskedPaths and ReadonlyPaths replace Docker's defaults when not nil
	// (an empty list: none, as --security-opt systempaths=unconfined).
	MaskedPaths   []string `json:"MaskedPaths"`
	ReadonlyPaths []string `json:"ReadonlyPaths"`

	// Tmpfs are --tmpfs mounts, target to options ("rw,size=64m").
	Tmpfs map[string]string `json:"Tmpfs,omitempty"`
	// TmpfsMounts are --mount type=tmpfs entries.
	TmpfsMounts []TmpfsMount `json:"TmpfsMounts,omitempty"`
}

// Device is one --device: the host's device node at PathOnHost appears at
// PathInContainer with the cgroup permissions ("rwm").
type Device struct {
	PathOnHost        string `json:"PathOnHost"`
	PathInContainer   string `json:"PathInContainer"`
	CgroupPermissions string `json:"CgroupPermissions"`
}

// Ulimit is one process resource limit.
type Ulimit struct {
	Name string `json:"Name"`
	Soft int64  `json:"Soft"`
	Hard int64  `json:"Hard"`
}

// TmpfsMount is a --mount type=tmpfs: a tmpfs at Target, of SizeBytes (0:
// the kernel's default) and Mode (0: 1777).
type TmpfsMount struct {
	Target    string `json:"Target"`
	SizeBytes int64  `json:"SizeBytes,omitempty"`
	Mode      uint32 `json:"Mode,omitempty"`
	ReadOnly  bool   `json:"ReadOnly,omitempty"`
}

// DefaultMaskedPaths and DefaultReadonlyPaths are Docker's: what a container
// gets (and inspect shows) unless it sets its own or is privileged.
func DefaultMaskedPaths() []string {
	return []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
}

func DefaultReadonlyPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}
