package runtime

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/pkg/cap"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/continuity/fs"
	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vxnet/vxnet/internal/model"
)

// defaultShmSize is /dev/shm's size when RunConfig.ShmSize is 0 (Docker's).
const defaultShmSize = 64 * 1024 * 1024

// initPath is where the init binary (--init) appears in the container, as
// in Docker.
const initPath = "/sbin/docker-init"

// initBinaries are looked up, in order, for --init: Docker's name on PATH,
// then the static tini of Debian's tini package (the binary Docker ships as
// docker-init).
var initBinaries = []string{"docker-init", "/usr/bin/tini-static", "/usr/bin/docker-init"}

// OptionError is a run option the runtime cannot honour for this container
// (a user its /etc/passwd does not have, a bad seccomp profile). Its
// message is for the client as it is; it is ErrInvalid.
type OptionError struct{ Msg string }

func (e *OptionError) Error() string        { return e.Msg }
func (e *OptionError) Is(target error) bool { return target == ErrInvalid }

// withRootfs runs f with the container's root filesystem mounted at root
// (read the image's /etc/passwd and /etc/group there).
type withRootfs func(f func(root string) error) error

// applyRunConfig turns the run options into the OCI spec s made by ociSpec:
// process (cwd, user, capabilities, rlimits, init), confinement (seccomp,
// no-new-privileges, masked paths, privileged), resources (cgroup limits)
// and mounts (/dev/shm, tmpfs). hostNet says the container shares the
// host's network namespace (no default network sysctls then).
func applyRunConfig(s *specs.Spec, rc model.RunConfig, hostNet bool, rootfs withRootfs) error {
	p := s.Process
	if rc.WorkingDir != "" {
		// runc makes it (root-owned) when it is missing, as Docker does.
		p.Cwd = rc.WorkingDir
	}
	s.Domainname = rc.Domainname
	hostNS := map[specs.LinuxNamespaceType]bool{
		specs.PIDNamespace: rc.PidMode == "host",
		specs.IPCNamespace: rc.IpcMode == "host",
		specs.UTSNamespace: rc.UTSMode == "host",
	}
	s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return hostNS[ns.Type] })
	if rc.UTSMode == "host" {
		s.Hostname, s.Domainname = "", "" // the host's; runc may not set them
	}
	s.Root.Readonly = rc.ReadonlyRootfs
	if err := rootfs(func(root string) error { return resolveUser(root, rc.User, rc.GroupAdd, &p.User) }); err != nil {
		return err
	}
	caps, err := capabilities(rc)
	if err != nil {
		return err
	}
	if p.User.UID == 0 {
		p.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	} else {
		// As execve does for a non-root user: only the bounding set.
		p.Capabilities = &specs.LinuxCapabilities{Bounding: caps}
	}
	p.NoNewPrivileges = rc.NoNewPrivileges
	for _, u := range rc.Ulimits {
		p.Rlimits = append(p.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_" + strings.ToUpper(u.Name), Soft: uint64(u.Soft), Hard: uint64(u.Hard)})
	}

	l := s.Linux
	l.MaskedPaths, l.ReadonlyPaths = model.DefaultMaskedPaths(), model.DefaultReadonlyPaths()
	if rc.MaskedPaths != nil {
		l.MaskedPaths = rc.MaskedPaths
	}
	if rc.ReadonlyPaths != nil {
		l.ReadonlyPaths = rc.ReadonlyPaths
	}
	if rc.Privileged {
		l.MaskedPaths, l.ReadonlyPaths = nil, nil
		for _, opt := range []oci.SpecOpts{oci.WithHostDevices, oci.WithAllDevicesAllowed, oci.WithWriteableSysfs, oci.WithWriteableCgroupfs} {
			if err := opt(context.Background(), nil, nil, s); err != nil {
				return fmt.Errorf("privileged: %w", err)
			}
		}
	}
	resources(l.Resources, rc)
	if rc.OomScoreAdj != 0 {
		adj := rc.OomScoreAdj
		p.OOMScoreAdj = &adj
	}
	for _, d := range rc.Devices {
		if err := oci.WithDevices(d.PathOnHost, d.PathInContainer, d.CgroupPermissions)(context.Background(), nil, nil, s); err != nil {
			return &OptionError{Msg: fmt.Sprintf("error gathering device information while adding custom device %q: %s", d.PathOnHost, unwrapPathError(err))}
		}
	}

	l.Sysctl = map[string]string{}
	if !hostNet {
		// Docker's defaults in a network namespace of the container's own:
		// unprivileged ping and low ports without capabilities.
		l.Sysctl["net.ipv4.ping_group_range"] = "0 2147483647"
		l.Sysctl["net.ipv4.ip_unprivileged_port_start"] = "0"
	}
	for k, v := range rc.Sysctls {
		l.Sysctl[k] = v
	}
	if rc.Domainname != "" && rc.UTSMode != "host" {
		// Also as the UTS namespace's sysctl: runc before 1.2 does not
		// know the spec's domainname.
		l.Sysctl["kernel.domainname"] = rc.Domainname
	}

	shm := rc.ShmSize
	if shm == 0 {
		shm = defaultShmSize
	}
	for i, m := range s.Mounts {
		if m.Destination == "/dev/shm" {
			s.Mounts[i].Options = []string{"nosuid", "noexec", "nodev", "mode=1777", fmt.Sprintf("size=%d", shm)}
			switch rc.IpcMode {
			case "host":
				// The host's IPC namespace and its /dev/shm, as Docker.
				s.Mounts[i] = specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/dev/shm", Options: []string{"rbind", "rprivate"}}
			case "none":
				s.Mounts = slices.Delete(s.Mounts, i, i+1)
			}
			break
		}
	}
	for _, target := range sortedKeys(rc.Tmpfs) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: target, Type: "tmpfs", Source: "tmpfs", Options: tmpfsOptions(rc.Tmpfs[target])})
	}
	for _, tm := range rc.TmpfsMounts {
		opts := []string{"nosuid", "nodev", "noexec"}
		if tm.ReadOnly {
			opts = append(opts, "ro")
		}
		if tm.SizeBytes > 0 {
			opts = append(opts, "size="+tmpfsSize(tm.SizeBytes))
		}
		if tm.Mode != 0 {
			opts = append(opts, fmt.Sprintf("mode=%o", tm.Mode))
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: tm.Target, Type: "tmpfs", Source: "tmpfs", Options: opts})
	}

	if rc.Init {
		bin, err := initBinary()
		if err != nil {
			return err
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: initPath, Type: "bind", Source: bin, Options: []string{"bind", "ro"}})
		p.Args = append([]string{initPath, "--"}, p.Args...)
	}

	// Last: the default profile allows some calls by capability.
	switch {
	case rc.Privileged, rc.Seccomp == "unconfined":
		l.Seccomp = nil
	case rc.Seccomp != "":
		if l.Seccomp, err = seccomp.LoadProfile(rc.Seccomp, s); err != nil {
			return &OptionError{Msg: "invalid seccomp profile: " + err.Error()}
		}
	default:
		if l.Seccomp, err = seccomp.GetDefaultProfile(s); err != nil {
			return fmt.Errorf("default seccomp profile: %w", err)
		}
	}
	return nil
}

// execIdentity applies exec -u, -w and --privileged to proc (a copy of the
// container's process): the user is looked up in the running container's
// root (through its init, pid), and its capabilities follow the user as
// at create.
func execIdentity(proc *specs.Process, o ExecOptions, pid int) error {
	if o.WorkingDir != "" {
		proc.Cwd = o.WorkingDir
	}
	if o.User == "" && !o.Privileged {
		return nil
	}
	caps := proc.Capabilities
	bounding := []string(nil)
	if caps != nil {
		bounding = caps.Bounding
	}
	if o.Privileged {
		all, err := cap.Current()
		if err != nil {
			return err
		}
		bounding = all
	}
	if o.User != "" {
		proc.User = specs.User{}
		if err := resolveUser(fmt.Sprintf("/proc/%d/root", pid), o.User, nil, &proc.User); err != nil {
			return err
		}
	}
	if proc.User.UID == 0 {
		proc.Capabilities = &specs.LinuxCapabilities{Bounding: bounding, Effective: bounding, Permitted: bounding}
	} else {
		proc.Capabilities = &specs.LinuxCapabilities{Bounding: bounding}
	}
	return nil
}

// resolveUser sets u from spec (Docker's --user forms) with the passwd and
// group files of the root filesystem at root: the user's primary group
// first among the additional ones, then the groups listing the user.
func resolveUser(root, spec string, groupAdd []string, u *specs.User) error {
	passwd, err := fs.RootPath(root, "/etc/passwd")
	if err != nil {
		return err
	}
	group, err := fs.RootPath(root, "/etc/group")
	if err != nil {
		return err
	}
	eu, err := user.GetExecUserPath(spec, nil, passwd, group)
	if err != nil {
		return &OptionError{Msg: err.Error()}
	}
	u.UID, u.GID = uint32(eu.Uid), uint32(eu.Gid)
	u.AdditionalGids = []uint32{u.GID}
	// One group at a time: the library answers a list in its own order,
	// and the gids follow --group-add's order.
	var added []int
	for _, g := range groupAdd {
		gids, err := user.GetAdditionalGroupsPath([]string{g}, group)
		if err != nil {
			return &OptionError{Msg: err.Error()}
		}
		added = append(added, gids...)
	}
	for _, g := range append(eu.Sgids, added...) {
		if !slices.Contains(u.AdditionalGids, uint32(g)) {
			u.AdditionalGids = append(u.AdditionalGids, uint32(g))
		}
	}
	return nil
}

// capabilities is Docker's capability set for rc: every capability when
// privileged or with --cap-add ALL (less the dropped), only the added with
// --cap-drop ALL, else the defaults less the dropped plus the added.
func capabilities(rc model.RunConfig) ([]string, error) {
	all := func() ([]string, error) {
		c, err := cap.Current()
		if err != nil {
			return nil, fmt.Errorf("capabilities: %w", err)
		}
		return c, nil
	}
	if rc.Privileged {
		return all()
	}
	var out []string
	switch {
	case slices.Contains(rc.CapAdd, "ALL"):
		caps, err := all()
		if err != nil {
			return nil, err
		}
		for _, c := range caps {
			if !slices.Contains(rc.CapDrop, c) {
				out = append(out, c)
			}
		}
	case slices.Contains(rc.CapDrop, "ALL"):
		out = slices.Clone(rc.CapAdd)
	default:
		for _, c := range defaultCaps {
			if !slices.Contains(rc.CapDrop, c) {
				out = append(out, c)
			}
		}
		out = append(out, rc.CapAdd...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// resources sets the cgroup limits: memory and swap (runc maps them to the
// cgroup version), CPU quota from NanoCPUs over a 100 ms period, shares,
// and the pids limit.
func resources(r *specs.LinuxResources, rc model.RunConfig) {
	mem := &specs.LinuxMemory{}
	if rc.Memory > 0 {
		lim := rc.Memory
		mem.Limit = &lim
		if rc.MemorySwap != 0 {
			sw := rc.MemorySwap
			mem.Swap = &sw
		}
	}
	if rc.MemoryReservation > 0 {
		res := rc.MemoryReservation
		mem.Reservation = &res
	}
	if rc.MemorySwappiness != nil {
		sw := uint64(*rc.MemorySwappiness)
		mem.Swappiness = &sw
	}
	if rc.OomKillDisable {
		t := true
		mem.DisableOOMKiller = &t
	}
	if *mem != (specs.LinuxMemory{}) {
		r.Memory = mem
	}
	cpu := &specs.LinuxCPU{Cpus: rc.CpusetCpus, Mems: rc.CpusetMems}
	if rc.NanoCPUs > 0 {
		period := uint64(100000)
		quota := rc.NanoCPUs * int64(period) / 1e9
		cpu.Period, cpu.Quota = &period, &quota
	}
	if rc.CPUPeriod > 0 {
		period := uint64(rc.CPUPeriod)
		cpu.Period = &period
	}
	if rc.CPUQuota > 0 {
		quota := rc.CPUQuota
		cpu.Quota = &quota
	}
	if rc.CPUShares > 0 {
		sh := uint64(rc.CPUShares)
		cpu.Shares = &sh
	}
	if cpu.Period != nil || cpu.Quota != nil || cpu.Shares != nil || cpu.Cpus != "" || cpu.Mems != "" {
		r.CPU = cpu
	}
	if rc.PidsLimit > 0 {
		lim := rc.PidsLimit
		r.Pids = &specs.LinuxPids{Limit: &lim}
	}
}

// tmpfsOptions are a --tmpfs mount's options: Docker's defaults (noexec,
// nosuid, nodev) unless the given options say otherwise.
func tmpfsOptions(given string) []string {
	opposite := map[string]string{"exec": "noexec", "suid": "nosuid", "dev": "nodev"}
	out := []string{}
	var user []string
	for _, o := range strings.Split(given, ",") {
		if o != "" {
			user = append(user, o)
		}
	}
	for _, d := range []string{"noexec", "nosuid", "nodev"} {
		overridden := false
		for on, off := range opposite {
			if off == d && (slices.Contains(user, on) || slices.Contains(user, off)) {
				overridden = true
			}
		}
		if !overridden {
			out = append(out, d)
		}
	}
	return append(out, user...)
}

// tmpfsSize writes bytes the way Docker does for tmpfs mounts (k, m or g
// when it divides).
func tmpfsSize(b int64) string {
	for _, u := range []struct {
		suffix string
		div    int64
	}{{"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
		if b%u.div == 0 {
			return fmt.Sprintf("%d%s", b/u.div, u.suffix)
		}
	}
	return fmt.Sprint(b)
}

// unwrapPathError drops the operation and path of a *fs.PathError (the
// message names the device already).
func unwrapPathError(err error) error {
	var pe *iofs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func initBinary() (string, error) {
	for _, name := range initBinaries {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		if strings.HasPrefix(name, "/") {
			if fi, err := os.Stat(name); err == nil && fi.Mode().IsRegular() {
				return name, nil
			}
		}
	}
	return "", &OptionError{Msg: "--init: no docker-init binary on this host (install Debian's tini package, whose tini-static vxnet uses)"}
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
