package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/testreq"
)

// docker run's process, resource and security options, each seen from
// inside a real container (containerd, runc) with the real docker CLI (the
// conformance suite has more: entrypoint, memory, pids, ulimit, shm, sysctl,
// seccomp, init): the
// user id, the working directory, a read-only root, the cgroup limits,
// the rlimits, /dev/shm, sysctls, capabilities, seccomp, privileged and
// init. Refusals are Docker's (exit 125, its words) and leave nothing
// behind.
func TestDockerRunOptions(t *testing.T) {
	if _, err := os.Stat("/usr/local/bin/docker"); err != nil {
		testreq.Skip(t, "the docker CLI is not installed")
	}
	_, h := single(t)
	profile := filepath.Join(t.TempDir(), "no-mkdir.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// The cgroup files under v1 or v2, whichever the host has.
	cg := func(v2, v1 string) string {
		return "cat /sys/fs/cgroup/" + v2 + " 2>/dev/null || cat /sys/fs/cgroup/" + v1
	}
	for _, tc := range []struct {
		name   string
		args   []string // after "run --rm"
		code   int
		stdout string // exact, unless it starts with "~" (contained)
		stderr string // contained
	}{
		{"root by default", []string{"busybox", "id"}, 0, "uid=0(root) gid=0(root) groups=0(root)\n", ""},
		{"user by name", []string{"--user", "nobody", "busybox", "id"}, 0, "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n", ""},
		{"user:group by name", []string{"--user", "nobody:root", "busybox", "id"}, 0, "uid=65534(nobody) gid=0(root) groups=0(root)\n", ""},
		{"uid:gid not in passwd", []string{"--user", "1000:1001", "busybox", "id"}, 0, "uid=1000 gid=1001 groups=1001\n", ""},
		{"group-add", []string{"--group-add", "1234", "--group-add", "nogroup", "busybox", "id", "-G"}, 0, "0 1234 65534\n", ""},
		{"unknown group", []string{"--group-add", "nosuch", "busybox", "true"}, 125, "", "unable to find group nosuch"},
		// The CLI takes "no such file or directory" for a missing command: 127, as with Docker.
		{"missing device", []string{"--device", "/dev/nosuch", "busybox", "true"}, 127, "", `error gathering device information while adding custom device "/dev/nosuch": no such file or directory`},
		{"unknown user", []string{"--user", "nosuch", "busybox", "true"}, 125, "", "unable to find user nosuch: no matching entries in passwd file"},
		{"non-root has no effective capabilities", []string{"--user", "1000", "busybox", "grep", "CapEff", "/proc/self/status"}, 0, "CapEff:\t0000000000000000\n", ""},
		{"workdir made", []string{"-w", "/new/deep", "busybox", "pwd"}, 0, "/new/deep\n", ""},
		{"read-only root", []string{"--read-only", "-w", "/made", "busybox", "sh", "-c", "pwd; touch /x"}, 1, "/made\n", "Read-only file system"},
		{"read-only root with a tmpfs", []string{"--read-only", "--tmpfs", "/run:size=1m", "busybox", "sh", "-c", "touch /run/x && grep ' /run ' /proc/mounts"}, 0, "~tmpfs /run tmpfs rw,nosuid,nodev,noexec", ""},
		{"mount type tmpfs", []string{"--mount", "type=tmpfs,destination=/m,tmpfs-size=2m", "busybox", "sh", "-c", "df -k /m | tail -1"}, 0, "~ 2048 ", ""},
		{"entrypoint cleared, no command", []string{"--entrypoint", "", "busybox"}, 125, "", "no command specified"},
		{"cpus", []string{"--cpus", "0.5", "busybox", "sh", "-c", cg("cpu.max", "cpu/cpu.cfs_quota_us")}, 0, "~50000", ""},
		{"default sysctls", []string{"busybox", "sh", "-c", "cat /proc/sys/net/ipv4/ping_group_range /proc/sys/net/ipv4/ip_unprivileged_port_start"}, 0, "0\t2147483647\n0\n", ""},
		{"sysctl not namespaced", []string{"--sysctl", "kernel.panic=1", "busybox", "true"}, 125, "", "not allowed"},
		{"capability kept", []string{"busybox", "chown", "1", "/tmp"}, 0, "", ""},
		{"all dropped, one added", []string{"--cap-drop", "ALL", "--cap-add", "CHOWN", "busybox", "grep", "CapEff", "/proc/self/status"}, 0, "CapEff:\t0000000000000001\n", ""},
		{"unknown capability", []string{"--cap-add", "NOSUCH", "busybox", "true"}, 125, "", `unknown capability: "CAP_NOSUCH"`},
		{"seccomp profile file", []string{"--security-opt", "seccomp=" + profile, "busybox", "mkdir", "/d"}, 1, "", "Operation not permitted"},
		{"apparmor refused", []string{"--security-opt", "apparmor=x", "busybox", "true"}, 125, "", "vxnet does not support --security-opt apparmor"},
		{"masked paths", []string{"busybox", "sh", "-c", "wc -c < /proc/timer_list; test -e /dev/kmsg || echo no kmsg"}, 0, "0\nno kmsg\n", ""},
		{"systempaths unconfined", []string{"--security-opt", "systempaths=unconfined", "busybox", "sh", "-c", "[ $(wc -c < /proc/timer_list) -gt 0 ] && echo readable"}, 0, "readable\n", ""},
		{"privileged", []string{"--privileged", "busybox", "sh", "-c", "test -c /dev/kmsg && grep CapEff /proc/self/status && mkdir -p /mnt/t && mount -t tmpfs t /mnt/t && echo mounted"}, 0, "~mounted", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := h.Docker(append([]string{"run", "--rm"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, stdout, stderr)
			}
			if want, ok := strings.CutPrefix(tc.stdout, "~"); ok {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout %q lacks %q", stdout, want)
				}
			} else if stdout != tc.stdout {
				t.Errorf("stdout %q, want %q", stdout, tc.stdout)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr, tc.stderr)
			}
		})
	}
	// --pid, --ipc and --uts host: the test's own namespaces (the daemon,
	// containerd and the test share them), else the container's.
	for _, ns := range []string{"pid", "ipc", "uts"} {
		mine, err := os.Readlink("/proc/self/ns/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		own, _, code := h.Docker("run", "--rm", "busybox", "readlink", "/proc/self/ns/"+ns)
		host, _, code2 := h.Docker("run", "--rm", "--"+ns, "host", "busybox", "readlink", "/proc/self/ns/"+ns)
		if code != 0 || code2 != 0 || strings.TrimSpace(own) == mine || strings.TrimSpace(host) != mine {
			t.Errorf("--%s host: %q (exit %d), own %q (exit %d), the host's %q", ns, host, code2, own, code, mine)
		}
	}
	if out, _, code := h.Docker("run", "--rm", "--ipc", "none", "busybox", "sh", "-c", "grep -c ' /dev/shm ' /proc/mounts"); code != 1 || strings.TrimSpace(out) != "0" {
		t.Errorf("--ipc none still has /dev/shm: %q exit %d", out, code)
	}
	if ps := h.MustDocker(t, "ps", "-a", "-q"); ps != "" {
		t.Errorf("runs left containers behind:\n%s", ps)
	}
}

// Inspect shows every honoured option as Docker does, and the stop
// signal, stop timeout, labels and domain name do what they say.
func TestDockerRunOptionsInspect(t *testing.T) {
	if _, err := os.Stat("/usr/local/bin/docker"); err != nil {
		testreq.Skip(t, "the docker CLI is not installed")
	}
	_, h := single(t)
	h.MustDocker(t, "run", "-d", "--name", "o1", "--user", "nobody", "-w", "/w", "--label", "a=b",
		"--domainname", "example.org", "--stop-signal", "SIGUSR1", "--stop-timeout", "30", "--read-only",
		"--memory", "64m", "--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "50", "--ulimit", "nofile=100:200",
		"--shm-size", "8m", "--sysctl", "net.ipv4.ip_forward=1", "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD",
		"--init", "--security-opt", "no-new-privileges", "--tmpfs", "/run:size=1m",
		"--mount", "type=tmpfs,destination=/m,tmpfs-size=2m",
		"--entrypoint", "sh", "busybox", "-c", `trap "exit 3" USR1; cat /proc/sys/kernel/domainname; while true; do sleep 0.1; done`)
	var v []struct {
		Path   string
		Args   []string
		Config struct {
			User, WorkingDir, Domainname, StopSignal string
			StopTimeout                              *int
			Labels                                   map[string]string
			Entrypoint, Cmd                          []string
		}
		HostConfig struct {
			ReadonlyRootfs, Privileged              bool
			Init                                    *bool
			Memory, MemorySwap, NanoCpus, CpuShares int64
			PidsLimit                               *int64
			ShmSize                                 int64
			Ulimits                                 []struct {
				Name       string
				Soft, Hard int64
			}
			Sysctls, Tmpfs                            map[string]string
			CapAdd, CapDrop, SecurityOpt, MaskedPaths []string
			Mounts                                    []struct {
				Type, Target string
				TmpfsOptions struct{ SizeBytes int64 }
			}
		}
	}
	if err := json.Unmarshal([]byte(h.MustDocker(t, "inspect", "o1")), &v); err != nil || len(v) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	c, hc := v[0].Config, v[0].HostConfig
	if c.User != "nobody" || c.WorkingDir != "/w" || c.Domainname != "example.org" || c.StopSignal != "SIGUSR1" ||
		c.StopTimeout == nil || *c.StopTimeout != 30 || c.Labels["a"] != "b" || strings.Join(c.Entrypoint, " ") != "sh" ||
		len(c.Cmd) != 2 || v[0].Path != "sh" || len(v[0].Args) != 2 || v[0].Args[0] != "-c" {
		t.Errorf("inspect Config: %+v path %q args %q", c, v[0].Path, v[0].Args)
	}
	if !hc.ReadonlyRootfs || hc.Privileged || hc.Init == nil || !*hc.Init || hc.Memory != 64<<20 || hc.MemorySwap != 128<<20 ||
		hc.NanoCpus != 5e8 || hc.CpuShares != 512 || hc.PidsLimit == nil || *hc.PidsLimit != 50 || hc.ShmSize != 8<<20 ||
		len(hc.Ulimits) != 1 || hc.Ulimits[0].Name != "nofile" || hc.Ulimits[0].Soft != 100 || hc.Ulimits[0].Hard != 200 ||
		hc.Sysctls["net.ipv4.ip_forward"] != "1" || hc.Tmpfs["/run"] != "size=1m" ||
		strings.Join(hc.CapAdd, ",") != "CAP_NET_ADMIN" || strings.Join(hc.CapDrop, ",") != "CAP_MKNOD" ||
		strings.Join(hc.SecurityOpt, ",") != "no-new-privileges" || len(hc.MaskedPaths) == 0 ||
		len(hc.Mounts) != 1 || hc.Mounts[0].Type != "tmpfs" || hc.Mounts[0].Target != "/m" || hc.Mounts[0].TmpfsOptions.SizeBytes != 2<<20 {
		t.Errorf("inspect HostConfig: %+v", hc)
	}
	if out := h.MustDocker(t, "ps", "--format", "{{.Labels}}"); strings.TrimSpace(out) != "a=b" {
		t.Errorf("ps labels %q", out)
	}
	if !eventually(20*time.Second, func() bool {
		out, _, _ := h.Docker("logs", "o1")
		return out == "example.org\n"
	}) {
		out, errOut, _ := h.Docker("logs", "o1")
		t.Errorf("domain name in the container: %q %q", out, errOut)
	}
	// An exec runs as the container's user unless -u says otherwise; an
	// unknown user fails the exec (126) with Docker's words.
	if out := h.MustDocker(t, "exec", "o1", "id", "-u"); out != "65534\n" {
		t.Errorf("exec as the container's user: %q", out)
	}
	if out := h.MustDocker(t, "exec", "-u", "root", "-w", "/tmp", "o1", "sh", "-c", "id -u; pwd"); out != "0\n/tmp\n" {
		t.Errorf("exec -u root -w /tmp: %q", out)
	}
	if out, errOut, code := h.Docker("exec", "-u", "nosuch", "o1", "true"); code != 126 || !strings.Contains(out+errOut, "unable to find user nosuch: no matching entries in passwd file") {
		t.Errorf("exec -u nosuch: exit %d %q %q", code, out, errOut)
	}
	// docker stop sends the stop signal: the trap exits 3 (SIGTERM would
	// not be trapped, and the default timeout would SIGKILL: 137).
	h.MustDocker(t, "stop", "o1")
	if code := strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", "o1")); code != "3" {
		t.Errorf("exit code after stop with SIGUSR1 = %s, want 3", code)
	}
	h.MustDocker(t, "rm", "-f", "o1")
}
