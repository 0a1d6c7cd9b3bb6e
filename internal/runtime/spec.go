package runtime

import (
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vxnet/vxnet/internal/model"
)

// defaultPath is the PATH a container gets when neither the image nor the
// caller sets one (Docker's value).
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultCaps is Docker's default capability set (includes CAP_NET_RAW, so
// ping works).
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// ociSpec builds the OCI runtime config for c. The rootfs is "rootfs"
// inside the bundle. With c.NetnsPath == "" the container shares the host's
// network namespace (no network namespace entry at all).
func ociSpec(c containerConfig, cgroupsPath string) *specs.Spec {
	caps := append([]string(nil), defaultCaps...)
	s := &specs.Spec{
		Version:  specs.Version,
		Hostname: c.Hostname,
		Root:     &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Terminal: false,
			User:     specs.User{UID: 0, GID: 0},
			Args:     c.Args,
			Env:      c.Env,
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: caps,
				Permitted: caps,
			},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroupsPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
			},
			Resources: &specs.LinuxResources{
				// Deny all; runc appends its default allow list (null, zero,
				// full, random, urandom, tty, ptmx, pts).
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths:   model.DefaultMaskedPaths(),
			ReadonlyPaths: model.DefaultReadonlyPaths(),
		},
	}
	if c.NetnsPath != "" {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: c.NetnsPath})
	}
	for _, m := range c.Mounts {
		prop := m.Propagation
		if prop == "" {
			prop = "rprivate"
		}
		opts := []string{"rbind", prop}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		// As Docker's: a shared bind needs a shared root, a slave one a
		// root that is at least a slave.
		switch prop {
		case "shared", "rshared":
			s.Linux.RootfsPropagation = "shared"
		case "slave", "rslave":
			if s.Linux.RootfsPropagation != "shared" {
				s.Linux.RootfsPropagation = "rslave"
			}
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: opts})
	}
	return s
}

// mergeEnv returns base overridden by extra (by variable name), with PATH
// defaulted and HOSTNAME set.
func mergeEnv(base, extra []string, hostname string) []string {
	var out []string
	idx := map[string]int{}
	add := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			return
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	add(defaultPath)
	add("HOSTNAME=" + hostname)
	for _, kv := range base {
		add(kv)
	}
	for _, kv := range extra {
		add(kv)
	}
	return out
}
