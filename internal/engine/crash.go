package engine

import (
	"os"
	"strings"
)

// Crash points name the windows between the steps of an operation where a
// crash leaves a state that the next start must repair. A test arms one or
// more with VXNET_CRASHPOINT=name[,name] and the daemon exits with status
// 137 (as after SIGKILL) when it reaches them, without any clean-up.
const (
	// CrashCreateAfterJoin: address allocated and endpoint plumbed into a
	// new sandbox, nothing recorded.
	CrashCreateAfterJoin = "create-after-join"
	// CrashCreateAfterRuntime: runtime container created too, nothing
	// recorded.
	CrashCreateAfterRuntime = "create-after-runtime"
	// CrashCreateAfterCommit: container, sandbox and endpoints recorded,
	// the overlay endpoint not advertised yet.
	CrashCreateAfterCommit = "create-after-commit"
	// CrashRemoveAfterRuntime: runtime container deleted, records kept.
	CrashRemoveAfterRuntime = "remove-after-runtime"
	// CrashRemoveAfterLocal: records deleted locally, global addresses
	// not released and advertisements not withdrawn yet.
	CrashRemoveAfterLocal = "remove-after-local"
	// CrashConnectAfterJoin: a connect's endpoint plumbed, not recorded.
	CrashConnectAfterJoin = "connect-after-join"
)

// CrashPointEnv is the environment variable that arms crash points.
const CrashPointEnv = "VXNET_CRASHPOINT"

func crashPointsFromEnv() map[string]bool {
	out := map[string]bool{}
	for _, p := range strings.Split(os.Getenv(CrashPointEnv), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out[p] = true
		}
	}
	return out
}

// crashPoint exits the process at once when the named point is armed.
func (e *Engine) crashPoint(name string) {
	if e.crash[name] {
		e.log.Error("crash point reached; exiting", "point", name)
		os.Exit(137)
	}
}
