// Package freeport finds loopback ports for tests. Only tests import
// it.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
)

// Loopback returns n TCP ports on 127.0.0.1 that were free a moment ago
// (all n listeners are open together, so the ports differ).
func Loopback(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// SamePort opens a UDP socket and a TCP listener on one loopback port (as a
// DNS server needs). The kernel picks the UDP port; the TCP port of that
// number may be taken by another process meanwhile, so it tries again with
// another port, a bounded number of times.
func SamePort() (net.PacketConn, net.Listener, error) {
	var err error
	for range 50 {
		var pc net.PacketConn
		pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		var ln net.Listener
		ln, err = net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
	}
	return nil, nil, err
}

// Stable returns a TCP port that was free a moment ago on every address of
// host's namespace and lies below the kernel's ephemeral range. A port the
// kernel picks for ":0" lies inside that range, where every process takes
// the source ports of its outgoing connections: one may take it between
// the check and the test's own bind. Ports below the range are taken only
// by listeners.
func Stable(t testing.TB) uint16 {
	t.Helper()
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &lo)
	}
	const first = 10000
	if lo <= first+1000 {
		t.Fatalf("freeport: the ephemeral port range starts at %d: no room below it", lo)
	}
	for range 200 {
		p := first + rand.IntN(lo-first)
		l, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		return uint16(p)
	}
	t.Fatal("freeport: no free port below the ephemeral range")
	return 0
}
