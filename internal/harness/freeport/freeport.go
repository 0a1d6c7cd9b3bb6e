// Package freeport finds loopback ports for tests. Only tests import
// it.
package freeport

import (
	"net"
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
