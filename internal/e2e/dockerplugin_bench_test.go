package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestBenchDockerPlugin: `docker run -d` latency on a vxnet plugin network
// vs on a Docker bridge network of the same dockerd, interleaved, and the
// cross-host ping-ready time on the vxnet network (from `docker run -d`
// returning on host B to the first answered ping from host A).
func TestBenchDockerPlugin(t *testing.T) {
	bnGate(t)
	needDocker(t)
	n := bnEnv(t, "VXNET_BENCH_DOCKER_N", 30)
	c := dockerCluster(t)
	a, b := c.Host(1), c.Host(2)
	da, db := startDockerd(t, a), startDockerd(t, b)
	da.importBusybox(t)
	db.importBusybox(t)
	da.must(t, "network", "create", "-d", "vxnet", "--ipam-driver", "vxnet", "--subnet", "10.96.0.0/16", "vx")
	db.must(t, "network", "create", "-d", "vxnet", "--ipam-driver", "vxnet", "vx")
	da.must(t, "network", "create", "-d", "bridge", "--subnet", "10.97.0.0/16", "dbr")
	var runVX, runBR, ready []time.Duration
	for i := 0; i < n; i++ {
		for _, net := range []string{"vx", "dbr"} {
			start := time.Now()
			da.must(t, "run", "-d", "--name", fmt.Sprintf("%s%d", net, i), "--network", net, "busybox", "sleep", "1d")
			d := time.Since(start)
			if net == "vx" {
				runVX = append(runVX, d)
			} else {
				runBR = append(runBR, d)
			}
		}
	}
	// Ping-ready across hosts: a target on B, pinged from vx0 on A.
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("tb%d", i)
		db.must(t, "run", "-d", "--name", name, "--network", "vx", "busybox", "sleep", "1d")
		started := time.Now()
		ip := db.ip(t, name, "vx")
		if !eventually(15*time.Second, func() bool {
			_, _, code := da.docker("exec", "vx0", "ping", "-c1", "-W1", ip.String())
			return code == 0
		}) {
			t.Fatalf("vx0 never reached %s (%s)", name, ip)
		}
		ready = append(ready, time.Since(started))
	}
	bnPrint(t, fmt.Sprintf("docker run -d, %d per network, interleaved; cross-host ping-ready", n), bnLatencyHeader, [][]string{
		bnLatencyRow("docker run -d, vxnet plugin network", runVX),
		bnLatencyRow("docker run -d, Docker bridge network", runBR),
		bnLatencyRow("ping-ready host A -> new container on host B (vxnet)", ready),
	})
	fmt.Printf("docker run -d p50 vxnet / bridge: %s\n", bnRatio(bnSummary(runVX).P50, bnSummary(runBR).P50))
}
