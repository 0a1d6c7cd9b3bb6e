package e2e

import (
	"os"
	"strings"
	"testing"

	"github.com/vxnet/vxnet/internal/testreq"
)

// The real docker CLI drives the same daemon: network create/ls/inspect,
// run -d, exec with its exit code, rm.
func TestDockerCLI(t *testing.T) {
	if _, err := os.Stat("/usr/local/bin/docker"); err != nil {
		if _, err := os.Stat("/usr/bin/docker"); err != nil {
			testreq.Skip(t, "the docker CLI is not installed")
		}
	}
	_, h := single(t)
	id := strings.TrimSpace(h.MustDocker(t, "network", "create", "--subnet", "10.44.0.0/24", "dnet"))
	if len(id) != 64 {
		t.Errorf("docker network create printed %q", id)
	}
	if ls := h.MustDocker(t, "network", "ls"); !strings.Contains(ls, "dnet") || !strings.Contains(ls, id[:12]) {
		t.Errorf("docker network ls:\n%s", ls)
	}
	if sub := strings.TrimSpace(h.MustDocker(t, "network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", "dnet")); sub != "10.44.0.0/24" {
		t.Errorf("docker network inspect subnet = %q", sub)
	}
	h.MustDocker(t, "run", "-d", "--name", "d1", "--network", "dnet", "busybox", "sleep", "1d")
	h.MustDocker(t, "run", "-d", "--name", "d2", "--network", "dnet", "busybox", "sleep", "1d")
	if _, _, code := h.Docker("exec", "d1", "ping", "-c1", "-W1", "d2"); code != 0 {
		t.Errorf("docker exec d1 ping d2: exit %d", code)
	}
	if _, _, code := h.Docker("exec", "d1", "sh", "-c", "exit 5"); code != 5 {
		t.Errorf("docker exec exit code = %d, want 5", code)
	}
	if ip := strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{.NetworkSettings.Networks.dnet.IPAddress}}", "d2")); !strings.HasPrefix(ip, "10.44.0.") {
		t.Errorf("docker inspect IP = %q", ip)
	}
	_, errOut, code := h.Docker("network", "rm", "bridge")
	if code == 0 || !strings.Contains(errOut, "pre-defined network") {
		t.Errorf("docker network rm bridge: exit %d %q", code, errOut)
	}
	// A missing network is named as such (not taken for a missing image)
	// and an option vxnet does not implement is refused, naming its field.
	if _, errOut, code := h.Docker("run", "-d", "--network", "nosuch", "busybox", "true"); code != 125 || !strings.Contains(errOut, "network nosuch not found") {
		t.Errorf("docker run --network nosuch: exit %d %q", code, errOut)
	}
	if _, errOut, code := h.Docker("run", "-d", "--network", "dnet", "--userns", "host", "busybox", "true"); code != 125 || !strings.Contains(errOut, "vxnet does not support HostConfig.UsernsMode") {
		t.Errorf("docker run --userns host: exit %d %q", code, errOut)
	}
	if ps := h.MustDocker(t, "ps", "-a", "-q"); len(strings.Fields(ps)) != 2 {
		t.Errorf("refused runs left containers behind:\n%s", ps)
	}
	h.MustDocker(t, "rm", "-f", "d1", "d2")
	h.MustDocker(t, "network", "rm", "dnet")
}
