package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBenchDockerPlugin: `docker run -d` latency on a vxnet plugin network
// vs on a Docker bridge network of the same dockerd, interleaved, and the
// cross-host ping-ready time (from `docker run -d` returning on host B to
// the first answered ping from host A) on the vxnet network and on Docker
// swarm's overlay between the same two dockerd, interleaved.
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
	// Docker swarm on the same two dockerd: A is the manager, B a worker,
	// on the underlay addresses; swarm's VXLAN on port 4790 (vxnet has
	// 4789) and its control port on 2477 (vxnet has 2377); an attachable
	// overlay for plain docker run.
	da.must(t, "swarm", "init", "--advertise-addr", a.Addr.String(), "--listen-addr", a.Addr.String()+":2477", "--data-path-port", "4790")
	token := strings.TrimSpace(da.must(t, "swarm", "join-token", "-q", "worker"))
	db.must(t, "swarm", "join", "--token", token, "--advertise-addr", b.Addr.String(), "--listen-addr", b.Addr.String()+":2477", a.Addr.String()+":2477")
	da.must(t, "network", "create", "-d", "overlay", "--attachable", "--subnet", "10.98.0.0/16", "sw")
	da.must(t, "run", "-d", "--name", "sw0", "--network", "sw", "busybox", "sleep", "1d")
	// Ping-ready across hosts: a target on B, pinged from A (vx0 on the
	// vxnet network, sw0 on swarm's overlay), interleaved.
	var readySW []time.Duration
	for i := 0; i < n; i++ {
		for _, net := range []string{"vx", "sw"} {
			name := fmt.Sprintf("t%s%d", net, i)
			db.must(t, "run", "-d", "--name", name, "--network", net, "busybox", "sleep", "1d")
			started := time.Now()
			ip := db.ip(t, name, net)
			if !eventually(30*time.Second, func() bool {
				_, _, code := da.docker("exec", net+"0", "ping", "-c1", "-W1", ip.String())
				return code == 0
			}) {
				t.Fatalf("%s0 never reached %s (%s)", net, name, ip)
			}
			if net == "vx" {
				ready = append(ready, time.Since(started))
			} else {
				readySW = append(readySW, time.Since(started))
			}
		}
	}
	bnPrint(t, fmt.Sprintf("docker run -d, %d per network, interleaved; cross-host ping-ready", n), bnLatencyHeader, [][]string{
		bnLatencyRow("docker run -d, vxnet plugin network", runVX),
		bnLatencyRow("docker run -d, Docker bridge network", runBR),
		bnLatencyRow("ping-ready host A -> new container on host B (vxnet)", ready),
		bnLatencyRow("ping-ready host A -> new container on host B (swarm overlay)", readySW),
	})
	fmt.Printf("ping-ready p50 vxnet / swarm overlay: %s\n", bnRatio(bnSummary(ready).P50, bnSummary(readySW).P50))
	fmt.Printf("docker run -d p50 vxnet / bridge: %s\n", bnRatio(bnSummary(runVX).P50, bnSummary(runBR).P50))
}
