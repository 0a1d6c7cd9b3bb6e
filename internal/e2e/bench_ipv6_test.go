package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
)

// TestBenchOverlayIPv6: iperf3 single-stream TCP throughput between
// containers on two hosts of one dual-stack overlay network, to the
// server's IPv6 address against its IPv4 address (same containers, same
// VXLAN tunnel over an IPv4 underlay, the two paths interleaved in one
// run), with the underlay between the hosts for reference.
func TestBenchOverlayIPv6(t *testing.T) {
	bnGate(t)
	secs := bnEnv(t, "VXNET_BENCH_IPERF_SECS", 10)
	rounds := bnEnv(t, "VXNET_BENCH_IPERF_ROUNDS", 1)
	c := harness.New(t, harness.Options{Hosts: 2, DaemonArgs: bnOverlayHosts(2)})
	A, B := c.Host(0), c.Host(1)
	for _, h := range []*harness.Host{A, B} {
		h.Start()
	}
	cli(t, A, "network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.93.0.0/24", "--subnet", "fd00:93::/64", "bn6")
	cli(t, A, "run", "-d", "--name", "srv", "--net", "bn6", "busybox", "sleep", "1d")
	cli(t, B, "run", "-d", "--name", "cl", "--net", "bn6", "busybox", "sleep", "1d")
	srvNS, clNS := bnClient(A).sandbox(t, "srv"), bnClient(B).sandbox(t, "cl")
	ip4, ip6 := ipOf(t, A, "srv", "bn6"), ipv6Of(t, A, "srv", "bn6").GlobalIPv6Address
	if !eventually(20*time.Second, func() bool { return ping(t, B, "cl", ip4) && ping6(t, B, "cl", ip6) }) {
		t.Fatalf("cl (host B) cannot reach srv (host A) at %s and %s", ip4, ip6)
	}
	var v4, v6, under float64
	for r := 0; r < rounds; r++ {
		v4 += bnIperfPort(t, srvNS, clNS, ip4, 5201, 5201, secs) / float64(rounds)
		v6 += bnIperfPort(t, srvNS, clNS, ip6, 5201, 5201, secs) / float64(rounds)
		under += bnIperfPort(t, A.Netns, B.Netns, A.Addr.String(), 5201, 5201, secs) / float64(rounds)
	}
	g := func(bps float64) string { return fmt.Sprintf("%.2f", bps/1e9) }
	x := func(a, b float64) string { return fmt.Sprintf("%.2f", a/b) }
	bnPrint(t, fmt.Sprintf("Overlay IPv6 vs IPv4: iperf3 TCP single stream, %d s (Gbit/s received, mean of %d round(s), paths interleaved)", secs, rounds),
		[]string{"path", "Gbit/s", "ratio to IPv4 overlay"}, [][]string{
			{"container B -> container A, IPv4 address (overlay, IPv4 underlay)", g(v4), "1.00"},
			{"container B -> container A, IPv6 address (same overlay)", g(v6), x(v6, v4)},
			{"host B -> host A underlay address (no overlay)", g(under), x(under, v4)},
		})
}
