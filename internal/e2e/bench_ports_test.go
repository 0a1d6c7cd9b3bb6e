package e2e

import (
	"fmt"
	"testing"

	"github.com/vxnet/vxnet/internal/harness"
)

// TestBenchPublishedPorts: iperf3 single-stream TCP throughput to a bridge
// container through its published port (DNAT) against its own address,
// measured in one run with the paths interleaved: from the host itself
// (own address and localhost through the output hook) and from another
// host (prerouting DNAT + forward) against the underlay between the hosts.
func TestBenchPublishedPorts(t *testing.T) {
	bnGate(t)
	secs := bnEnv(t, "VXNET_BENCH_IPERF_SECS", 10)
	rounds := bnEnv(t, "VXNET_BENCH_IPERF_ROUNDS", 1)
	c := harness.New(t, harness.Options{Hosts: 2, DaemonArgs: func(int, *harness.Host) []string {
		return bnDaemonArgs
	}})
	A, B := c.Host(0), c.Host(1)
	A.Start()
	cli(t, A, "network", "create", "--subnet", "10.91.0.0/24", "bn")
	cli(t, A, "run", "-d", "--name", "srv", "--net", "bn", "-p", "15201:5201", "busybox", "sleep", "1d")
	sb := bnClient(A).sandbox(t, "srv")
	ctrIP := ipOf(t, A, "srv", "bn")
	var direct, viaAddr, viaLo, remote, under float64
	for r := 0; r < rounds; r++ {
		direct += bnIperfPort(t, sb, A.Netns, ctrIP, 5201, 5201, secs) / float64(rounds)
		viaAddr += bnIperfPort(t, sb, A.Netns, A.Addr.String(), 5201, 15201, secs) / float64(rounds)
		viaLo += bnIperfPort(t, sb, A.Netns, "127.0.0.1", 5201, 15201, secs) / float64(rounds)
		remote += bnIperfPort(t, sb, B.Netns, A.Addr.String(), 5201, 15201, secs) / float64(rounds)
		under += bnIperfPort(t, A.Netns, B.Netns, A.Addr.String(), 5201, 5201, secs) / float64(rounds)
	}
	g := func(bps float64) string { return fmt.Sprintf("%.2f", bps/1e9) }
	x := func(a, b float64) string { return fmt.Sprintf("%.2f", a/b) }
	bnPrint(t, fmt.Sprintf("Published ports: iperf3 TCP single stream, %d s (Gbit/s received, mean of %d round(s), paths interleaved)", secs, rounds),
		[]string{"path", "Gbit/s", "ratio", "ratio to"}, [][]string{
			{"host A -> container address (bridge, no NAT)", g(direct), "1.00", "itself"},
			{"host A -> A's address:published port (output DNAT)", g(viaAddr), x(viaAddr, direct), "container address"},
			{"host A -> 127.0.0.1:published port (output DNAT, route_localnet, masquerade)", g(viaLo), x(viaLo, direct), "container address"},
			{"host B -> host A underlay address (no container)", g(under), "1.00", "itself"},
			{"host B -> A's address:published port (prerouting DNAT, forward)", g(remote), x(remote, under), "underlay"},
		})
}
