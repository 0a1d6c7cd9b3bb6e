package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/model"
)

// fakeRoot is a root filesystem with passwd and group files.
func fakeRoot(t *testing.T) withRootfs {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\napp:x:1000:\nstaff:x:50:app,other\n"), 0o644)
	return func(f func(string) error) error { return f(root) }
}

func specFor(t *testing.T, rc model.RunConfig, hostNet bool) *specs.Spec {
	t.Helper()
	s := ociSpec(containerConfig{ID: "x", Args: []string{"sh"}, NetnsPath: "/n"}, "p/x")
	if err := applyRunConfig(s, rc, hostNet, fakeRoot(t)); err != nil {
		t.Fatalf("applyRunConfig(%+v): %v", rc, err)
	}
	return s
}

func TestRunConfigSpec(t *testing.T) {
	// Defaults: root with Docker's capabilities, the default seccomp
	// profile, masked paths, the network sysctls, a 64 MiB /dev/shm.
	s := specFor(t, model.RunConfig{}, false)
	if u := s.Process.User; u.UID != 0 || u.GID != 0 || !slices.Equal(u.AdditionalGids, []uint32{0}) {
		t.Errorf("default user %+v", u)
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("default seccomp profile missing: %+v", s.Linux.Seccomp)
	}
	if !slices.Equal(s.Process.Capabilities.Effective, sorted(defaultCaps)) || len(s.Linux.MaskedPaths) == 0 {
		t.Errorf("default caps %v masked %v", s.Process.Capabilities.Effective, s.Linux.MaskedPaths)
	}
	if s.Linux.Sysctl["net.ipv4.ping_group_range"] != "0 2147483647" || s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0" {
		t.Errorf("default sysctls %v", s.Linux.Sysctl)
	}
	if s := specFor(t, model.RunConfig{}, true); len(s.Linux.Sysctl) != 0 {
		t.Errorf("host network got network sysctls %v", s.Linux.Sysctl)
	}
	for _, m := range s.Mounts {
		if m.Destination == "/dev/shm" && !slices.Contains(m.Options, "size=67108864") {
			t.Errorf("/dev/shm %v", m.Options)
		}
	}

	// A named user: its group first, then the groups listing it; no
	// effective capabilities.
	s = specFor(t, model.RunConfig{User: "app"}, false)
	if u := s.Process.User; u.UID != 1000 || u.GID != 1000 || !slices.Equal(u.AdditionalGids, []uint32{1000, 50}) {
		t.Errorf("user app: %+v", u)
	}
	if c := s.Process.Capabilities; len(c.Effective) != 0 || len(c.Permitted) != 0 || len(c.Bounding) == 0 {
		t.Errorf("non-root capabilities %+v", c)
	}
	s = specFor(t, model.RunConfig{User: "app:root"}, false)
	if u := s.Process.User; u.UID != 1000 || u.GID != 0 || !slices.Equal(u.AdditionalGids, []uint32{0}) {
		t.Errorf("user app:root: %+v", u)
	}
	err := applyRunConfig(ociSpec(containerConfig{ID: "x"}, "p"), model.RunConfig{User: "ghost"}, false, fakeRoot(t))
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Msg != "unable to find user ghost: no matching entries in passwd file" {
		t.Errorf("unknown user: %v", err)
	}

	s = specFor(t, model.RunConfig{User: "app", GroupAdd: []string{"root", "77"}}, false)
	if u := s.Process.User; !slices.Equal(u.AdditionalGids, []uint32{1000, 50, 0, 77}) {
		t.Errorf("group-add: %+v", u)
	}

	// Host namespaces: no namespace entry, the host's /dev/shm, no
	// hostname of its own.
	s = specFor(t, model.RunConfig{PidMode: "host", IpcMode: "host", UTSMode: "host"}, false)
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace || ns.Type == specs.IPCNamespace || ns.Type == specs.UTSNamespace {
			t.Errorf("host %s namespace still in the spec", ns.Type)
		}
	}
	for _, m := range s.Mounts {
		if m.Destination == "/dev/shm" && (m.Type != "bind" || m.Source != "/dev/shm") {
			t.Errorf("--ipc host /dev/shm: %+v", m)
		}
	}
	if s.Hostname != "" {
		t.Errorf("--uts host keeps hostname %q", s.Hostname)
	}

	// Capabilities.
	s = specFor(t, model.RunConfig{CapDrop: []string{"ALL"}, CapAdd: []string{"CAP_CHOWN", "CAP_KILL"}}, false)
	if !slices.Equal(s.Process.Capabilities.Effective, []string{"CAP_CHOWN", "CAP_KILL"}) {
		t.Errorf("drop ALL add two: %v", s.Process.Capabilities.Effective)
	}
	s = specFor(t, model.RunConfig{CapAdd: []string{"CAP_NET_ADMIN"}, CapDrop: []string{"CAP_NET_RAW"}}, false)
	if c := s.Process.Capabilities.Effective; !slices.Contains(c, "CAP_NET_ADMIN") || slices.Contains(c, "CAP_NET_RAW") || !slices.Contains(c, "CAP_CHOWN") {
		t.Errorf("add one drop one: %v", c)
	}

	// Privileged: everything, no seccomp, no masked paths, host devices,
	// writable /sys.
	s = specFor(t, model.RunConfig{Privileged: true}, false)
	if s.Linux.Seccomp != nil || s.Linux.MaskedPaths != nil || len(s.Process.Capabilities.Effective) <= len(defaultCaps) ||
		len(s.Linux.Devices) == 0 || !s.Linux.Resources.Devices[0].Allow {
		t.Errorf("privileged spec: seccomp %v masked %v caps %d devices %d", s.Linux.Seccomp, s.Linux.MaskedPaths,
			len(s.Process.Capabilities.Effective), len(s.Linux.Devices))
	}
	for _, m := range s.Mounts {
		if m.Type == "sysfs" && slices.Contains(m.Options, "ro") {
			t.Errorf("privileged /sys is read-only: %v", m.Options)
		}
	}

	// Resources, rlimits, tmpfs, init, read-only root, working directory.
	s = specFor(t, model.RunConfig{Memory: 64 << 20, MemorySwap: 128 << 20, NanoCPUs: 5e8, CPUShares: 512, PidsLimit: 9,
		Ulimits: []model.Ulimit{{Name: "nofile", Soft: 10, Hard: 20}}, Tmpfs: map[string]string{"/t": "exec,size=1m"},
		TmpfsMounts:       []model.TmpfsMount{{Target: "/m", SizeBytes: 2 << 20, Mode: 0o700, ReadOnly: true}},
		MemoryReservation: 32 << 20, OomKillDisable: true, CpusetCpus: "0", OomScoreAdj: 300,
		Devices: []model.Device{{PathOnHost: "/dev/null", PathInContainer: "/dev/n2", CgroupPermissions: "rw"}},
		Init:    true, ReadonlyRootfs: true, WorkingDir: "/w", NoNewPrivileges: true, Seccomp: "unconfined"}, false)
	r := s.Linux.Resources
	if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 128<<20 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 ||
		*r.CPU.Shares != 512 || *r.Pids.Limit != 9 || *r.Memory.Reservation != 32<<20 || !*r.Memory.DisableOOMKiller || r.CPU.Cpus != "0" {
		t.Errorf("resources %+v %+v %+v", r.Memory, r.CPU, r.Pids)
	}
	if *s.Process.OOMScoreAdj != 300 || len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/n2" {
		t.Errorf("oom score adj %v devices %+v", s.Process.OOMScoreAdj, s.Linux.Devices)
	}
	if len(s.Process.Rlimits) != 1 || s.Process.Rlimits[0] != (specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 20}) {
		t.Errorf("rlimits %+v", s.Process.Rlimits)
	}
	if !s.Root.Readonly || s.Process.Cwd != "/w" || !s.Process.NoNewPrivileges || s.Linux.Seccomp != nil {
		t.Errorf("root %+v cwd %q nnp %v seccomp %v", s.Root, s.Process.Cwd, s.Process.NoNewPrivileges, s.Linux.Seccomp)
	}
	mounts := map[string][]string{}
	for _, m := range s.Mounts {
		mounts[m.Destination] = m.Options
	}
	if !slices.Equal(mounts["/t"], []string{"nosuid", "nodev", "exec", "size=1m"}) ||
		!slices.Equal(mounts["/m"], []string{"nosuid", "nodev", "noexec", "ro", "size=2m", "mode=700"}) {
		t.Errorf("tmpfs mounts %v %v", mounts["/t"], mounts["/m"])
	}
	if _, err := initBinary(); err == nil {
		if !slices.Equal(s.Process.Args, []string{initPath, "--", "sh"}) || mounts[initPath] == nil {
			t.Errorf("init args %v", s.Process.Args)
		}
	}

	if stopSignal("") != unix.SIGTERM || stopSignal("USR1") != unix.SIGUSR1 || stopSignal("SIGHUP") != unix.SIGHUP || stopSignal("9") != unix.SIGKILL {
		t.Error("stop signals")
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
