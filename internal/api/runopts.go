package api

import (
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/pkg/cap"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/signal"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/model"
)

// The process, resource and security options of a create request are
// checked here as Docker's daemon checks them (same limits, same words)
// and handed on as one model.RunConfig.

// minMemory is Docker's smallest memory limit (6 MB).
const minMemory = 6 * 1024 * 1024

// DefaultShmSize is the size of /dev/shm when ShmSize is 0 (Docker's).
const DefaultShmSize = 64 * 1024 * 1024

// runConfig reads the run options of a create request.
func runConfig(cfg *container.Config, hc *container.HostConfig) (model.RunConfig, error) {
	rc := model.RunConfig{
		Entrypoint: slices.Clone(cfg.Entrypoint),
		User:       cfg.User,
		WorkingDir: cfg.WorkingDir,
		Labels:     cfg.Labels,
		Domainname: cfg.Domainname,
		StopSignal: cfg.StopSignal,
	}
	if cfg.StopTimeout != nil {
		t := *cfg.StopTimeout
		rc.StopTimeout = &t
	}
	if rc.WorkingDir != "" && !strings.HasPrefix(rc.WorkingDir, "/") {
		return rc, apiErr(model.ErrInvalid, "the working directory '%s' is invalid, it needs to be an absolute path", rc.WorkingDir)
	}
	if rc.StopSignal != "" {
		if _, err := signal.ParseSignal(rc.StopSignal); err != nil {
			return rc, apiErr(model.ErrInvalid, "%s", err)
		}
	}
	if hc == nil {
		return rc, nil
	}
	rc.ReadonlyRootfs = hc.ReadonlyRootfs
	if err := namespaceModes(&rc, cfg, hc); err != nil {
		return rc, err
	}
	if err := resources(&rc, hc); err != nil {
		return rc, err
	}
	if err := security(&rc, hc); err != nil {
		return rc, err
	}
	if err := sysctls(&rc, hc); err != nil {
		return rc, err
	}
	if err := tmpfs(&rc, hc); err != nil {
		return rc, err
	}
	return rc, nil
}

func resources(rc *model.RunConfig, hc *container.HostConfig) error {
	r := hc.Resources
	switch {
	case r.Memory < 0:
		return apiErr(model.ErrInvalid, "invalid memory limit %d: it must not be negative", r.Memory)
	case r.Memory != 0 && r.Memory < minMemory:
		return apiErr(model.ErrInvalid, "Minimum memory limit allowed is 6MB")
	case r.Memory > 0 && r.MemorySwap > 0 && r.MemorySwap < r.Memory:
		return apiErr(model.ErrInvalid, "Minimum memoryswap limit should be larger than memory limit, see usage")
	case r.Memory == 0 && r.MemorySwap > 0:
		return apiErr(model.ErrInvalid, "You should always set the Memory limit when using Memoryswap limit, see usage")
	case r.MemorySwap < -1:
		return apiErr(model.ErrInvalid, "invalid memory swap limit %d", r.MemorySwap)
	}
	rc.Memory, rc.MemorySwap = r.Memory, r.MemorySwap
	if rc.Memory > 0 && rc.MemorySwap == 0 {
		// Docker's default: as much swap as memory.
		rc.MemorySwap = 2 * rc.Memory
	}
	switch {
	case r.MemoryReservation < 0:
		return apiErr(model.ErrInvalid, "invalid memory reservation %d: it must not be negative", r.MemoryReservation)
	case r.MemoryReservation != 0 && r.MemoryReservation < minMemory:
		return apiErr(model.ErrInvalid, "Minimum memory reservation allowed is 6MB")
	case r.Memory > 0 && r.MemoryReservation > 0 && r.Memory < r.MemoryReservation:
		return apiErr(model.ErrInvalid, "Minimum memory limit can not be less than memory reservation limit, see usage")
	}
	rc.MemoryReservation = r.MemoryReservation
	if sw := r.MemorySwappiness; sw != nil && *sw != -1 {
		if *sw < 0 || *sw > 100 {
			return apiErr(model.ErrInvalid, "Invalid value: %d, valid memory swappiness range is 0-100", *sw)
		}
		v := *sw
		rc.MemorySwappiness = &v
	}
	rc.OomKillDisable = r.OomKillDisable != nil && *r.OomKillDisable
	switch {
	case r.NanoCPUs > 0 && r.CPUPeriod > 0:
		return apiErr(model.ErrInvalid, "Conflicting options: Nano CPUs and CPU Period cannot both be set")
	case r.NanoCPUs > 0 && r.CPUQuota > 0:
		return apiErr(model.ErrInvalid, "Conflicting options: Nano CPUs and CPU Quota cannot both be set")
	case r.CPUPeriod != 0 && (r.CPUPeriod < 1000 || r.CPUPeriod > 1000000):
		return apiErr(model.ErrInvalid, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
	case r.CPUQuota > 0 && r.CPUQuota < 1000:
		return apiErr(model.ErrInvalid, "CPU cfs quota can not be less than 1ms (i.e. 1000)")
	case r.CPUPeriod < 0:
		return apiErr(model.ErrInvalid, "invalid CPU period %d", r.CPUPeriod)
	}
	rc.CPUQuota, rc.CPUPeriod = max(r.CPUQuota, 0), r.CPUPeriod
	if err := checkCpuset(r.CpusetCpus, "cpus", availableCPUs()); err != nil {
		return err
	}
	if err := checkCpuset(r.CpusetMems, "mems", availableMems()); err != nil {
		return err
	}
	rc.CpusetCpus, rc.CpusetMems = r.CpusetCpus, r.CpusetMems
	if hc.OomScoreAdj < -1000 || hc.OomScoreAdj > 1000 {
		return apiErr(model.ErrInvalid, "Invalid value %d, range for oom score adj is [-1000, 1000]", hc.OomScoreAdj)
	}
	rc.OomScoreAdj = hc.OomScoreAdj
	rc.GroupAdd = slices.Clone(hc.GroupAdd)
	for _, d := range r.Devices {
		if !strings.HasPrefix(d.PathOnHost, "/") {
			return apiErr(model.ErrInvalid, "invalid device path %q: it must be absolute", d.PathOnHost)
		}
		dev := model.Device{PathOnHost: d.PathOnHost, PathInContainer: d.PathInContainer, CgroupPermissions: d.CgroupPermissions}
		if dev.PathInContainer == "" {
			dev.PathInContainer = dev.PathOnHost
		}
		if dev.CgroupPermissions == "" {
			dev.CgroupPermissions = "rwm"
		}
		if !strings.HasPrefix(dev.PathInContainer, "/") {
			return apiErr(model.ErrInvalid, "invalid device path in container %q: it must be absolute", dev.PathInContainer)
		}
		if strings.Trim(dev.CgroupPermissions, "rwm") != "" || len(dev.CgroupPermissions) > 3 {
			return apiErr(model.ErrInvalid, "invalid device mode: %s", dev.CgroupPermissions)
		}
		rc.Devices = append(rc.Devices, dev)
	}
	ncpu := int64(runtime.NumCPU())
	if r.NanoCPUs < 0 || r.NanoCPUs > ncpu*1e9 || (r.NanoCPUs > 0 && r.NanoCPUs < 1e7) {
		return apiErr(model.ErrInvalid, "Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", ncpu, ncpu)
	}
	rc.NanoCPUs = r.NanoCPUs
	if r.CPUShares < 0 {
		return apiErr(model.ErrInvalid, "invalid CPU shares %d: it must not be negative", r.CPUShares)
	}
	// The kernel's range, as Docker clamps it.
	rc.CPUShares = r.CPUShares
	if rc.CPUShares > 0 {
		rc.CPUShares = min(max(rc.CPUShares, 2), 262144)
	}
	if r.PidsLimit != nil && *r.PidsLimit > 0 {
		rc.PidsLimit = *r.PidsLimit
	}
	seen := map[string]bool{}
	for _, u := range r.Ulimits {
		if u == nil {
			continue
		}
		if _, err := units.ParseUlimit(fmt.Sprintf("%s=%d:%d", u.Name, u.Soft, u.Hard)); err != nil {
			return apiErr(model.ErrInvalid, "%s", err)
		}
		if seen[u.Name] {
			return apiErr(model.ErrInvalid, "ulimit %s is given twice", u.Name)
		}
		seen[u.Name] = true
		rc.Ulimits = append(rc.Ulimits, model.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	if hc.ShmSize < 0 {
		return apiErr(model.ErrInvalid, "SHM size can not be less than 0")
	}
	rc.ShmSize = hc.ShmSize
	return nil
}

// namespaceModes reads --pid, --ipc and --uts: the container's own
// namespaces or the host's. Joining another container's is not done.
func namespaceModes(rc *model.RunConfig, cfg *container.Config, hc *container.HostConfig) error {
	switch m := string(hc.PidMode); m {
	case "", "host":
		rc.PidMode = m
	default:
		return apiErr(model.ErrInvalid, "vxnet does not support HostConfig.PidMode %q (only the container's own or host)", m)
	}
	switch m := string(hc.IpcMode); m {
	case "", "private", "shareable", "host", "none":
		rc.IpcMode = m
	default:
		return apiErr(model.ErrInvalid, "vxnet does not support HostConfig.IpcMode %q (only private, shareable, host or none)", m)
	}
	switch m := string(hc.UTSMode); m {
	case "":
	case "host":
		if cfg.Hostname != "" {
			return apiErr(model.ErrInvalid, "conflicting options: hostname and the UTS mode")
		}
		if cfg.Domainname != "" {
			return apiErr(model.ErrInvalid, "conflicting options: domainname and the UTS mode")
		}
		rc.UTSMode = m
	default:
		return apiErr(model.ErrInvalid, "vxnet does not support HostConfig.UTSMode %q (only the container's own or host)", m)
	}
	return nil
}

// checkCpuset checks a cpuset list ("0-2,4") against the available ones.
func checkCpuset(list, what string, avail map[int]bool) error {
	if list == "" {
		return nil
	}
	set, err := parseCpuset(list)
	if err != nil {
		return apiErr(model.ErrInvalid, "Invalid value %s for cpuset %s: %s", list, what, err)
	}
	for n := range set {
		if !avail[n] {
			var have []int
			for a := range avail {
				have = append(have, a)
			}
			slices.Sort(have)
			return apiErr(model.ErrInvalid, "Requested %s are not available - requested %s, available: %s", map[string]string{"cpus": "CPUs", "mems": "memory nodes"}[what], list, formatCpuset(have))
		}
	}
	return nil
}

// parseCpuset reads the kernel's list format: "0-2,4".
func parseCpuset(list string) (map[int]bool, error) {
	out := map[int]bool{}
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("invalid format: %s", list)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("invalid range format: %s", part)
			}
		}
		if b-a > 4096 {
			return nil, fmt.Errorf("invalid range format: %s", part)
		}
		for i := a; i <= b; i++ {
			out[i] = true
		}
	}
	return out, nil
}

func formatCpuset(ns []int) string {
	var parts []string
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", ns[i], ns[j]))
		} else {
			parts = append(parts, strconv.Itoa(ns[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// availableCPUs are the CPUs this process may run on; availableMems the
// memory nodes online (node 0 without NUMA information).
func availableCPUs() map[int]bool {
	var set unix.CPUSet
	out := map[int]bool{}
	if unix.SchedGetaffinity(0, &set) == nil {
		for i := 0; i < 1024; i++ {
			if set.IsSet(i) {
				out[i] = true
			}
		}
	}
	if len(out) == 0 {
		for i := 0; i < runtime.NumCPU(); i++ {
			out[i] = true
		}
	}
	return out
}

func availableMems() map[int]bool {
	if b, err := os.ReadFile("/sys/devices/system/node/online"); err == nil {
		if set, err := parseCpuset(strings.TrimSpace(string(b))); err == nil {
			return set
		}
	}
	return map[int]bool{0: true}
}

// security reads capabilities, privileged, init, security options and the
// masked paths.
func security(rc *model.RunConfig, hc *container.HostConfig) error {
	var err error
	if rc.CapAdd, err = normalizeCaps(hc.CapAdd); err != nil {
		return err
	}
	if rc.CapDrop, err = normalizeCaps(hc.CapDrop); err != nil {
		return err
	}
	rc.Privileged = hc.Privileged
	rc.Init = hc.Init != nil && *hc.Init
	for _, opt := range hc.SecurityOpt {
		if opt == "no-new-privileges" {
			rc.NoNewPrivileges = true
			continue
		}
		k, v, ok := strings.Cut(opt, "=")
		if !ok {
			k, v, ok = strings.Cut(opt, ":")
		}
		if !ok {
			if opt == "disable" {
				return apiErr(model.ErrInvalid, "vxnet does not support --security-opt %s (SELinux labels)", opt)
			}
			return apiErr(model.ErrInvalid, "invalid --security-opt 1: %q", opt)
		}
		switch k {
		case "seccomp":
			switch v {
			case "builtin", "":
				rc.Seccomp = ""
			case "unconfined":
				rc.Seccomp = "unconfined"
			default:
				if err := checkSeccompProfile(v); err != nil {
					return apiErr(model.ErrInvalid, "invalid seccomp profile: %s", err)
				}
				rc.Seccomp = v
			}
		case "no-new-privileges":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return apiErr(model.ErrInvalid, "invalid --security-opt 2: %q", opt)
			}
			rc.NoNewPrivileges = b
		case "apparmor":
			return apiErr(model.ErrInvalid, "vxnet does not support --security-opt apparmor: no AppArmor profiles are loaded by vxnet")
		case "label":
			return apiErr(model.ErrInvalid, "vxnet does not support --security-opt label: no SELinux labelling in vxnet")
		default:
			return apiErr(model.ErrInvalid, "invalid --security-opt 2: %q", opt)
		}
	}
	rc.SecurityOpt = slices.Clone(hc.SecurityOpt)
	rc.MaskedPaths = slices.Clone(hc.MaskedPaths)
	rc.ReadonlyPaths = slices.Clone(hc.ReadonlyPaths)
	for _, p := range append(slices.Clone(hc.MaskedPaths), hc.ReadonlyPaths...) {
		if !strings.HasPrefix(p, "/") {
			return apiErr(model.ErrInvalid, "invalid path %q in MaskedPaths or ReadonlyPaths: it must be absolute", p)
		}
	}
	return nil
}

// checkSeccompProfile parses a profile the way the runtime will (the
// docker CLI sends the file's content), so a bad one is refused at create.
func checkSeccompProfile(body string) error {
	caps := slices.Clone(cap.Known())
	_, err := seccomp.LoadProfile(body, &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}})
	return err
}

// normalizeCaps checks capability names (with or without CAP_, any case,
// or ALL) and returns them as CAP_X (ALL stays ALL), as Docker does.
func normalizeCaps(in []string) ([]string, error) {
	var out []string
	for _, c := range in {
		c = strings.ToUpper(strings.TrimSpace(c))
		if c == "ALL" {
			out = append(out, c)
			continue
		}
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if !slices.Contains(cap.Known(), c) {
			return nil, apiErr(model.ErrInvalid, "unknown capability: %q", c)
		}
		out = append(out, c)
	}
	return out, nil
}

// Namespaced sysctls Docker accepts: these kernel.* ones (IPC namespace),
// and every net.* (network namespace) and fs.mqueue.* one.
var ipcSysctls = []string{
	"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
	"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
}

func sysctls(rc *model.RunConfig, hc *container.HostConfig) error {
	for k, v := range hc.Sysctls {
		switch {
		case slices.Contains(ipcSysctls, k), strings.HasPrefix(k, "fs.mqueue."):
			if hc.IpcMode.IsHost() {
				return apiErr(model.ErrInvalid, "sysctl %q is not allowed in host IPC namespace", k)
			}
		case strings.HasPrefix(k, "net."):
			if hc.NetworkMode.IsHost() {
				return apiErr(model.ErrInvalid, "sysctl %q not allowed in host network namespace", k)
			}
		default:
			return apiErr(model.ErrInvalid, "sysctl '%s=%s' is not allowed: only namespaced sysctls (net.*, fs.mqueue.*, kernel.msg*, kernel.sem, kernel.shm*) can be set", k, v)
		}
		if rc.Sysctls == nil {
			rc.Sysctls = map[string]string{}
		}
		rc.Sysctls[k] = v
	}
	return nil
}

// tmpfsFlags are the mount flags a tmpfs option may be; tmpfsKeys the
// tmpfs parameters (key=value).
var (
	tmpfsFlags = []string{"ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev",
		"sync", "async", "dirsync", "atime", "noatime", "diratime", "nodiratime",
		"relatime", "norelatime", "strictatime", "nostrictatime", "mand", "nomand",
		"private", "rprivate", "shared", "rshared", "slave", "rslave"}
	tmpfsKeys = []string{"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"}
)

// tmpfs reads HostConfig.Tmpfs and the tmpfs entries of HostConfig.Mounts
// (createMounts reads the binds and volumes).
func tmpfs(rc *model.RunConfig, hc *container.HostConfig) error {
	targets := map[string]bool{}
	target := func(p string) error {
		if !strings.HasPrefix(p, "/") {
			return apiErr(model.ErrInvalid, "invalid mount config for type \"tmpfs\": invalid mount path: '%s' mount path must be absolute", p)
		}
		if p == "/" || strings.Trim(p, "/") == "" {
			return apiErr(model.ErrInvalid, "invalid mount config for type \"tmpfs\": invalid specification: destination can't be '/'")
		}
		if targets[p] {
			return apiErr(model.ErrInvalid, "Duplicate mount point: %s", p)
		}
		targets[p] = true
		return nil
	}
	for p, opts := range hc.Tmpfs {
		if err := target(p); err != nil {
			return err
		}
		for _, o := range strings.Split(opts, ",") {
			k, _, kv := strings.Cut(o, "=")
			if o == "" || (kv && slices.Contains(tmpfsKeys, k)) || (!kv && slices.Contains(tmpfsFlags, o)) {
				continue
			}
			return apiErr(model.ErrInvalid, "invalid tmpfs option %q for %s", o, p)
		}
		if rc.Tmpfs == nil {
			rc.Tmpfs = map[string]string{}
		}
		rc.Tmpfs[p] = opts
	}
	for _, m := range hc.Mounts {
		if m.Type != mount.TypeTmpfs {
			continue
		}
		switch {
		case m.Source != "":
			return apiErr(model.ErrInvalid, "invalid mount config for type \"tmpfs\": field Source must not be specified")
		case m.BindOptions != nil:
			return apiErr(model.ErrInvalid, "invalid mount config for type \"tmpfs\": field BindOptions must not be specified")
		case m.VolumeOptions != nil:
			return apiErr(model.ErrInvalid, "invalid mount config for type \"tmpfs\": field VolumeOptions must not be specified")
		case m.ImageOptions != nil:
			return apiErr(model.ErrInvalid, "invalid mount config for type \"tmpfs\": field ImageOptions must not be specified")
		case m.ClusterOptions != nil:
			return apiErr(model.ErrInvalid, "vxnet does not support HostConfig.Mounts.ClusterOptions")
		case m.Consistency != "" && m.Consistency != mount.ConsistencyDefault:
			return apiErr(model.ErrInvalid, "vxnet does not support HostConfig.Mounts.Consistency")
		}
		if err := target(m.Target); err != nil {
			return err
		}
		tm := model.TmpfsMount{Target: m.Target, ReadOnly: m.ReadOnly}
		if o := m.TmpfsOptions; o != nil {
			if len(o.Options) > 0 {
				return apiErr(model.ErrInvalid, "vxnet does not support HostConfig.Mounts.TmpfsOptions.Options")
			}
			if o.SizeBytes < 0 {
				return apiErr(model.ErrInvalid, "invalid mount config for type \"tmpfs\": invalid tmpfs size %d", o.SizeBytes)
			}
			// The docker CLI sends the octal mode's bits as they are.
			if uint32(o.Mode)&^0o7777 != 0 {
				return apiErr(model.ErrInvalid, "invalid mount config for type \"tmpfs\": invalid tmpfs mode %o", uint32(o.Mode))
			}
			tm.SizeBytes, tm.Mode = o.SizeBytes, uint32(o.Mode)
		}
		rc.TmpfsMounts = append(rc.TmpfsMounts, tm)
	}
	return nil
}

// checkMountTargets refuses a tmpfs on the destination of a bind or volume.
func checkMountTargets(ms []model.Mount, rc model.RunConfig) error {
	for _, m := range ms {
		_, tmpfs := rc.Tmpfs[m.Destination]
		for _, tm := range rc.TmpfsMounts {
			tmpfs = tmpfs || tm.Target == m.Destination
		}
		if tmpfs {
			return apiErr(model.ErrInvalid, "Duplicate mount point: %s", m.Destination)
		}
	}
	return nil
}

// inspectRunConfig echoes the run options in inspect as Docker does: as
// they were asked for, with the defaults Docker fills in (MemorySwap,
// ShmSize, masked paths).
func inspectRunConfig(out *container.InspectResponse, rc model.RunConfig) {
	cfg, hc := out.Config, out.HostConfig
	cfg.Entrypoint = slices.Clone(rc.Entrypoint)
	cfg.User = rc.User
	cfg.WorkingDir = rc.WorkingDir
	cfg.Domainname = rc.Domainname
	cfg.StopSignal = rc.StopSignal
	if rc.StopTimeout != nil {
		t := *rc.StopTimeout
		cfg.StopTimeout = &t
	}
	hc.ReadonlyRootfs = rc.ReadonlyRootfs
	hc.PidMode, hc.UTSMode = container.PidMode(rc.PidMode), container.UTSMode(rc.UTSMode)
	hc.IpcMode = container.IpcMode(rc.IpcMode)
	if hc.IpcMode == "" {
		hc.IpcMode = container.IPCModePrivate // Docker's default
	}
	hc.Memory, hc.MemorySwap = rc.Memory, rc.MemorySwap
	hc.NanoCPUs, hc.CPUShares = rc.NanoCPUs, rc.CPUShares
	hc.MemoryReservation, hc.OomScoreAdj = rc.MemoryReservation, rc.OomScoreAdj
	hc.CPUQuota, hc.CPUPeriod, hc.CpusetCpus, hc.CpusetMems = rc.CPUQuota, rc.CPUPeriod, rc.CpusetCpus, rc.CpusetMems
	if rc.MemorySwappiness != nil {
		v := *rc.MemorySwappiness
		hc.MemorySwappiness = &v
	}
	oom := rc.OomKillDisable
	hc.OomKillDisable = &oom
	hc.GroupAdd = slices.Clone(rc.GroupAdd)
	for _, d := range rc.Devices {
		hc.Devices = append(hc.Devices, container.DeviceMapping{PathOnHost: d.PathOnHost, PathInContainer: d.PathInContainer, CgroupPermissions: d.CgroupPermissions})
	}
	if rc.PidsLimit > 0 {
		n := rc.PidsLimit
		hc.PidsLimit = &n
	}
	for _, u := range rc.Ulimits {
		hc.Ulimits = append(hc.Ulimits, &container.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	hc.ShmSize = rc.ShmSize
	if hc.ShmSize == 0 {
		hc.ShmSize = DefaultShmSize
	}
	hc.Sysctls = maps.Clone(rc.Sysctls)
	hc.CapAdd, hc.CapDrop = slices.Clone(rc.CapAdd), slices.Clone(rc.CapDrop)
	hc.Privileged = rc.Privileged
	if rc.Init {
		t := true
		hc.Init = &t
	}
	hc.SecurityOpt = slices.Clone(rc.SecurityOpt)
	hc.MaskedPaths, hc.ReadonlyPaths = model.DefaultMaskedPaths(), model.DefaultReadonlyPaths()
	if rc.MaskedPaths != nil {
		hc.MaskedPaths = slices.Clone(rc.MaskedPaths)
	}
	if rc.ReadonlyPaths != nil {
		hc.ReadonlyPaths = slices.Clone(rc.ReadonlyPaths)
	}
	if rc.Privileged {
		hc.MaskedPaths, hc.ReadonlyPaths = nil, nil
	}
	hc.Tmpfs = maps.Clone(rc.Tmpfs)
	for _, tm := range rc.TmpfsMounts {
		m := mount.Mount{Type: mount.TypeTmpfs, Target: tm.Target, ReadOnly: tm.ReadOnly}
		if tm.SizeBytes != 0 || tm.Mode != 0 {
			m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: tm.SizeBytes, Mode: os.FileMode(tm.Mode)}
		}
		hc.Mounts = append(hc.Mounts, m)
		out.Mounts = append(out.Mounts, container.MountPoint{Type: mount.TypeTmpfs, Destination: tm.Target, RW: !tm.ReadOnly})
	}
}
