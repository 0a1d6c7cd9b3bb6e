package conformance

// cgroupFile reads a cgroup file under v2 or, failing that, v1.
func cgroupFile(v2, v1 string) string {
	return "cat /sys/fs/cgroup/" + v2 + " 2>/dev/null || cat /sys/fs/cgroup/" + v1
}

// docker run's process, resource and security options, seen from inside
// the container, and inspect's echo of them.
var runOptionGroups = []Group{{
	Name: "run options",
	Cases: []Case{
		{Name: "entrypoint", Args: []string{"run", "--rm", "--entrypoint", "echo", "busybox", "hi"}, Out: Line("hi")},
		{Name: "entrypoint cleared", Args: []string{"run", "--rm", "--entrypoint", "", "busybox", "echo", "x"}, Out: Line("x")},
		{Name: "workdir", Args: []string{"run", "--rm", "-w", "/tmp", "busybox", "pwd"}, Out: Line("/tmp")},
		{Name: "workdir made", Args: []string{"run", "--rm", "-w", "/a/b", "busybox", "pwd"}, Out: Line("/a/b")},
		{Name: "user", Args: []string{"run", "--rm", "-u", "1000:1000", "busybox", "id"}, Out: Line("uid=1000 gid=1000 groups=1000")},
		{Name: "read-only", Args: []string{"run", "--rm", "--read-only", "busybox", "touch", "/x"}, Code: 1,
			Err: Line("touch: /x: Read-only file system")},
		{Name: "tmpfs on read-only", Args: []string{"run", "--rm", "--read-only", "--tmpfs", "/run", "busybox", "touch", "/run/x"}},
		{Name: "memory", Args: []string{"run", "--rm", "-m", "64m", "busybox", "sh", "-c", cgroupFile("memory.max", "memory/memory.limit_in_bytes")},
			Out: Line("67108864")},
		{Name: "pids limit", Args: []string{"run", "--rm", "--pids-limit", "9", "busybox", "sh", "-c", cgroupFile("pids.max", "pids/pids.max")},
			Out: Line("9")},
		{Name: "cpu quota", Args: []string{"run", "--rm", "--cpu-period", "50000", "--cpu-quota", "25000", "busybox", "sh", "-c", cgroupFile("cpu.max", "cpu/cpu.cfs_quota_us")},
			Out: Re(`^25000( 50000)?\n$`)},
		{Name: "cpuset", Args: []string{"run", "--rm", "--cpuset-cpus", "0", "busybox", "sh", "-c", cgroupFile("cpuset.cpus", "cpuset/cpuset.cpus")},
			Out: Line("0")},
		{Name: "memory reservation", Args: []string{"run", "--rm", "--memory-reservation", "10m", "busybox", "sh", "-c", cgroupFile("memory.low", "memory/memory.soft_limit_in_bytes")},
			Out: Line("10485760")},
		{Name: "oom score adj", Args: []string{"run", "--rm", "--oom-score-adj", "500", "busybox", "cat", "/proc/self/oom_score_adj"}, Out: Line("500")},
		{Name: "device", Args: []string{"run", "--rm", "--device", "/dev/null:/dev/mynull", "busybox", "sh", "-c", "echo x > /dev/mynull && test -c /dev/mynull && echo ok"},
			Out: Line("ok")},
		{Name: "ulimit", Args: []string{"run", "--rm", "--ulimit", "nofile=100:200", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn"},
			Out: Exact("100\n200\n")},
		{Name: "shm size", Args: []string{"run", "--rm", "--shm-size", "8m", "busybox", "sh", "-c", "df -k /dev/shm | awk 'NR==2{print $2}'"},
			Out: Line("8192")},
		{Name: "sysctl", Args: []string{"run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "busybox", "cat", "/proc/sys/net/ipv4/ip_forward"},
			Out: Line("1")},
		{Name: "default ping_group_range", Args: []string{"run", "--rm", "busybox", "cat", "/proc/sys/net/ipv4/ping_group_range"},
			Out: Line("0\t2147483647")},
		{Name: "cap-drop", Args: []string{"run", "--rm", "--cap-drop", "CHOWN", "busybox", "chown", "1", "/tmp"}, Code: 1,
			Err: Line("chown: /tmp: Operation not permitted")},
		{Name: "cap-add unknown", Args: []string{"run", "--rm", "--cap-add", "NOSUCH", "busybox", "true"}, Code: 125,
			Err: runErr(`unknown capability: "CAP_NOSUCH"`)},
		{Name: "default seccomp", Args: []string{"run", "--rm", "busybox", "unshare", "-U", "true"}, Code: 1,
			Err: Has("Operation not permitted")},
		{Name: "seccomp unconfined", Args: []string{"run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "unshare", "-U", "true"}},
		{Name: "no-new-privileges", Args: []string{"run", "--rm", "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs", "/proc/self/status"},
			Out: Line("NoNewPrivs:\t1")},
		{Name: "init", Args: []string{"run", "--rm", "--init", "busybox", "cat", "/proc/1/comm"}, Out: Line("docker-init")},
		{Name: "privileged", Args: []string{"run", "--rm", "--privileged", "busybox", "sh", "-c", "mkdir /m && mount -t tmpfs t /m && echo ok"},
			Out: Line("ok")},
		{Name: "apparmor", Args: []string{"run", "--rm", "--security-opt", "apparmor=unconfined", "busybox", "true"}, Code: 125,
			Err: runErr("vxnet does not support --security-opt apparmor: no AppArmor profiles are loaded by vxnet"), Differs: "security-opt"},
		{Name: "run with options", Args: []string{"run", "-d", "--name", "ro1", "-m", "64m", "--cpus", "0.5", "-u", "nobody", "--label", "a=b",
			"--stop-signal", "USR1", "busybox", "sh", "-c", `trap "exit 3" USR1; while true; do sleep 0.1; done`}, Out: Re(`^[0-9a-f]{64}\n$`)},
		{Name: "inspect options", Args: []string{"inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.Config.User}} {{.Config.Labels.a}} {{.Config.StopSignal}}", "ro1"},
			Out: Line("67108864 134217728 500000000 nobody b USR1")},
		{Name: "stop sends the stop signal", Args: []string{"stop", "ro1"}, Out: Line("ro1")},
		{Name: "exit code of the trap", Args: []string{"inspect", "-f", "{{.State.ExitCode}}", "ro1"}, Out: Line("3")},
	},
	Cleanup: [][]string{{"rm", "-f", "ro1"}},
}}
