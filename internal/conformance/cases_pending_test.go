package conformance

// Docker commands and options vxnet does not have yet: listed with Docker
// 28's answer so the table shows the gap; each becomes a plain case (drop
// Pending) when the feature lands.
var pendingGroups = []Group{{
	Name:  "pending",
	Setup: [][]string{{"run", "-d", "--name", "pd", "busybox", "sleep", "1d"}},
	Cases: []Case{
		{Name: "entrypoint", Args: []string{"run", "--rm", "--entrypoint", "echo", "busybox", "hi"}, Out: Line("hi"), Pending: "Config.Entrypoint"},
		{Name: "workdir", Args: []string{"run", "--rm", "-w", "/tmp", "busybox", "pwd"}, Out: Line("/tmp"), Pending: "Config.WorkingDir"},
		{Name: "user", Args: []string{"run", "--rm", "-u", "1000:1000", "busybox", "id"}, Out: Line("uid=1000 gid=1000 groups=1000"), Pending: "Config.User"},
		{Name: "read-only", Args: []string{"run", "--rm", "--read-only", "busybox", "touch", "/x"}, Code: 1,
			Err: Line("touch: /x: Read-only file system"), Pending: "HostConfig.ReadonlyRootfs"},
		{Name: "pause", Args: []string{"pause", "pd"}, Out: Line("pd"), Pending: "pause"},
		{Name: "unpause", Args: []string{"unpause", "pd"}, Out: Line("pd"), Pending: "unpause"},
		{Name: "top", Args: []string{"top", "pd", "-o", "args"}, Out: Exact("COMMAND\nsleep 1d\n"), Pending: "top"},
		{Name: "stats", Args: []string{"stats", "--no-stream", "--format", "{{.Name}}", "pd"}, Out: Line("pd"), Pending: "stats"},
		{Name: "pull", Args: []string{"pull", "-q", "nosuch.invalid/x"}, Code: 1,
			Err: Re(`^Error response from daemon: Get "https://nosuch.invalid/v2/": `), Pending: "registry pulls"},
	},
	Cleanup: [][]string{{"rm", "-f", "pd"}},
}}
