package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// cli runs a vxnet command on h that must succeed and returns its trimmed
// standard output.
func cli(t *testing.T, h *harness.Host, args ...string) string {
	t.Helper()
	return strings.TrimSpace(h.MustCLI(t, args...))
}

// cliFails runs a vxnet command that must fail with want in its stderr
// (one line) and returns the exit code.
func cliFails(t *testing.T, h *harness.Host, want string, args ...string) int {
	t.Helper()
	out, errOut, code := h.CLI(args...)
	if code == 0 {
		t.Fatalf("vxnet %s: succeeded (%q), want failure %q", strings.Join(args, " "), out, want)
	}
	if !strings.Contains(errOut, want) {
		t.Errorf("vxnet %s: stderr %q, want it to contain %q", strings.Join(args, " "), errOut, want)
	}
	if lines := strings.Count(strings.TrimSpace(errOut), "\n"); lines > 1 {
		t.Errorf("vxnet %s: error is %d lines, want one: %q", strings.Join(args, " "), lines+1, errOut)
	}
	return code
}

// execCode runs a command in a container and returns its exit code.
func execCode(t *testing.T, h *harness.Host, ctr string, cmd ...string) int {
	t.Helper()
	_, _, code := h.CLI(append([]string{"exec", ctr}, cmd...)...)
	return code
}

// ping reports whether one ping from ctr to dst gets an answer.
func ping(t *testing.T, h *harness.Host, ctr, dst string) bool {
	t.Helper()
	return execCode(t, h, ctr, "ping", "-c1", "-W1", dst) == 0
}

// single starts a one-host cluster with its daemon running.
func single(t *testing.T) (*harness.Cluster, *harness.Host) {
	c := harness.New(t, harness.Options{Hosts: 1})
	h := c.Host(0)
	h.Start()
	return c, h
}

// ipOf returns a container's address on a network (from inspect).
func ipOf(t *testing.T, h *harness.Host, ctr, network string) string {
	t.Helper()
	var v []struct {
		NetworkSettings struct {
			Networks map[string]struct{ IPAddress, MacAddress string }
		}
	}
	if err := json.Unmarshal([]byte(cli(t, h, "inspect", ctr)), &v); err != nil || len(v) != 1 {
		t.Fatalf("inspect %s: %v", ctr, err)
	}
	n, ok := v[0].NetworkSettings.Networks[network]
	if !ok {
		t.Fatalf("%s is not on %s", ctr, network)
	}
	return n.IPAddress
}

// eventually polls cond every 100 ms until it holds or d has passed, and
// reports whether it held.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
