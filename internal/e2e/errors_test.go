package e2e

import (
	"strings"
	"testing"
)

// Every bad input gets a one-line error, a non-zero exit and leaves nothing
// half made.
func TestErrorsSingleHost(t *testing.T) {
	_, h := single(t)
	cli(t, h, "network", "create", "--subnet", "10.88.0.0/24", "used")
	cli(t, h, "run", "-d", "--name", "busy", "--net", "used", "--ip", "10.88.0.10", "busybox", "sleep", "1d")

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"rm predefined bridge", []string{"network", "rm", "bridge"}, "bridge is a pre-defined network and cannot be removed"},
		{"rm predefined host", []string{"network", "rm", "host"}, "host is a pre-defined network and cannot be removed"},
		{"rm predefined none", []string{"network", "rm", "none"}, "none is a pre-defined network and cannot be removed"},
		{"create predefined name", []string{"network", "create", "host"}, "not permitted on predefined host network"},
		{"rm network with containers", []string{"network", "rm", "used"}, "has active endpoints"},
		{"overlapping subnet", []string{"network", "create", "--subnet", "10.88.0.128/25", "x1"}, "Pool overlaps with other one on this address space"},
		{"gateway outside subnet", []string{"network", "create", "--subnet", "10.89.0.0/24", "--gateway", "10.90.0.1", "x2"}, "10.90.0.1"},
		{"ip-range outside subnet", []string{"network", "create", "--subnet", "10.89.0.0/24", "--ip-range", "10.90.0.0/25", "x3"}, "10.90.0.0/25"},
		{"duplicate name", []string{"network", "create", "used"}, "network with name used already exists"},
		{"unknown driver", []string{"network", "create", "-d", "nosuchdriver", "x4"}, `plugin "nosuchdriver" not found`},
		{"macvlan without parent", []string{"network", "create", "-d", "macvlan", "x4m"}, "-o parent=INTERFACE is required"},
		{"overlay without cluster", []string{"network", "create", "-d", "overlay", "x5"}, "cluster mode"},
		{"malformed subnet", []string{"network", "create", "--subnet", "10.1.2.300/24", "x6"}, "10.1.2.300/24"},
		{"unknown network rm", []string{"network", "rm", "nosuchnet"}, "network nosuchnet not found"},
		{"unknown network run", []string{"run", "-d", "--net", "nosuchnet", "busybox", "true"}, "network nosuchnet not found"},
		{"unknown container", []string{"rm", "nosuchctr"}, "No such container: nosuchctr"},
		{"unknown container exec", []string{"exec", "nosuchctr", "true"}, "No such container: nosuchctr"},
		{"unknown image", []string{"run", "-d", "nosuchimage", "true"}, "No such image: nosuchimage:latest"},
		{"static IP in use", []string{"run", "-d", "--net", "used", "--ip", "10.88.0.10", "busybox", "true"}, "Address already in use"},
		{"static IP outside subnet", []string{"run", "-d", "--net", "used", "--ip", "10.99.0.10", "busybox", "true"}, "10.99.0.10"},
		{"duplicate container name", []string{"run", "-d", "--name", "busy", "busybox", "true"}, `The container name "/busy" is already in use`},
		{"bad option", []string{"network", "create", "-o", "com.docker.network.driver.mtu=abc", "x7"}, "mtu"},
		{"bad label", []string{"network", "create", "--label", "=v", "x8"}, "label"},
		{"unknown flag", []string{"network", "create", "--bogus", "x9"}, "unknown flag: --bogus"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { cliFails(t, h, tc.want, tc.args...) })
	}

	// Nothing was left half made: only the predefined networks and "used",
	// one bridge device per network, and the address pool of every failed
	// create is free again.
	names := cli(t, h, "network", "ls", "-q")
	if n := len(strings.Fields(names)); n != 4 {
		t.Errorf("networks after failed creates: %d, want 4:\n%s", n, cli(t, h, "network", "ls"))
	}
	links, _ := h.Exec("ip", "-o", "link", "show", "type", "bridge")
	if n := strings.Count(links, "\n"); n != 2 {
		t.Errorf("bridges after failed creates = %d, want 2 (vxnet0 and used):\n%s", n, links)
	}
	cli(t, h, "network", "create", "--subnet", "10.89.0.0/24", "x2")
	if ctrs := strings.Fields(cli(t, h, "ps", "-aq")); len(ctrs) != 1 {
		t.Errorf("containers after failed runs: %v, want just busy", ctrs)
	}
}
