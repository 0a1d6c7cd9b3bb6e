// Package freeport finds loopback TCP ports for tests. Only tests import
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
