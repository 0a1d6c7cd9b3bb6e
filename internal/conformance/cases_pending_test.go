package conformance

// Docker commands and options vxnet does not have yet: listed with Docker
// 28's answer so the table shows the gap; each becomes a plain case (drop
// Pending) when the feature lands.
var pendingGroups = []Group{{
	Name:  "pending",
	Setup: [][]string{{"run", "-d", "--name", "pd", "busybox", "sleep", "1d"}},
	Cases: []Case{
		{Name: "pause", Args: []string{"pause", "pd"}, Out: Line("pd"), Pending: "pause"},
		{Name: "unpause", Args: []string{"unpause", "pd"}, Out: Line("pd"), Pending: "unpause"},
		{Name: "top", Args: []string{"top", "pd", "-o", "args"}, Out: Exact("COMMAND\nsleep 1d\n"), Pending: "top"},
		{Name: "stats", Args: []string{"stats", "--no-stream", "--format", "{{.Name}}", "pd"}, Out: Line("pd"), Pending: "stats"},
	},
	Cleanup: [][]string{{"rm", "-f", "pd"}},
}}
