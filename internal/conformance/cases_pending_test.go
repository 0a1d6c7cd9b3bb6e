package conformance

// Docker commands and options vxnet does not have yet: listed with Docker
// 28's answer so the table shows the gap; each becomes a plain case (drop
// Pending) when the feature lands.
var pendingGroups = []Group{{
	Name:    "pending",
	Setup:   [][]string{{"run", "-d", "--name", "pd", "busybox", "sleep", "1d"}},
	Cases:   []Case{},
	Cleanup: [][]string{{"rm", "-f", "pd"}},
}}
