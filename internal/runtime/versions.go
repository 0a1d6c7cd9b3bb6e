package runtime

import (
	"context"
	"os/exec"
	"strings"
	"sync"
)

// Component is one part of what runs containers, with its version, as
// /version lists them (containerd, runc, docker-init).
type Component struct {
	Name, Version string
	Details       map[string]string
}

// binVersions caches the versions of runc and the init binary: each is a
// process to start, and they do not change while the daemon runs.
var binVersions = sync.OnceValue(func() []Component {
	var out []Component
	if b, err := exec.Command("runc", "--version").Output(); err == nil {
		// "runc version 1.1.12+ds1\ncommit: 1.1.12+ds1-5+b3\nspec: 1.0.2-dev\n..."
		c := Component{Name: "runc", Details: map[string]string{}}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "runc version "); ok {
				c.Version = strings.TrimSpace(v)
			} else if v, ok := strings.CutPrefix(l, "commit: "); ok {
				c.Details["GitCommit"] = strings.TrimSpace(v)
			}
		}
		if c.Version != "" {
			out = append(out, c)
		}
	}
	if p, err := initBinary(); err == nil {
		// "tini version 0.19.0"
		if b, err := exec.Command(p, "--version").Output(); err == nil {
			f := strings.Fields(string(b))
			if len(f) >= 3 {
				out = append(out, Component{Name: "docker-init", Version: f[2], Details: map[string]string{"GitCommit": "-"}})
			}
		}
	}
	return out
})

// Versions lists containerd (as the daemon it talks to reports itself),
// runc and docker-init.
func (r *Containerd) Versions(ctx context.Context) []Component {
	var out []Component
	if v, err := r.client.Version(ctx); err == nil {
		out = append(out, Component{Name: "containerd", Version: v.Version, Details: map[string]string{"GitCommit": v.Revision}})
	}
	return append(out, binVersions()...)
}

// Versions lists runc and docker-init (this runtime runs runc itself).
func (r *Runtime) Versions(ctx context.Context) []Component { return binVersions() }
