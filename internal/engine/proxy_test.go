package engine

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// udpEcho answers every datagram with "<tag>:<payload>" and reports the
// source address of each.
func udpEcho(t *testing.T, tag string) (netip.AddrPort, <-chan netip.AddrPort) {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	srcs := make(chan netip.AddrPort, 100)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			select {
			case srcs <- from:
			default:
			}
			pc.WriteToUDPAddrPort(append([]byte(tag+":"), buf[:n]...), from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), srcs
}

// udpClient is a client socket of its own (its own source port) on ::1.
func udpClient(t *testing.T, to netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp6", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ask sends msg and returns the answer, "" if none came within wait.
func ask(c *net.UDPConn, msg string, wait time.Duration) string {
	if _, err := c.Write([]byte(msg)); err != nil {
		return ""
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func startTestUDPProxy(t *testing.T, to netip.AddrPort, idle time.Duration, max int) (*udpProxy, netip.AddrPort) {
	t.Helper()
	pc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	p := newUDPProxy(pc, to, idle, max)
	go p.serve()
	t.Cleanup(p.stop)
	return p, pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// The UDP proxy relays each client's datagrams to the target and the
// answers back to that client (a flow, and so a source port towards the
// target, per client), holds at most max flows, ends idle flows, and
// closes its port when stopped.
func TestUDPProxy(t *testing.T) {
	to, srcs := udpEcho(t, "echo")
	p, at := startTestUDPProxy(t, to, 2*time.Second, 2)

	a, b := udpClient(t, at), udpClient(t, at)
	// Several datagrams per client, answered to the client that sent them.
	for i := range 3 {
		for name, c := range map[string]*net.UDPConn{"a": a, "b": b} {
			msg := name + strings.Repeat("x", i)
			if got := ask(c, msg, 5*time.Second); got != "echo:"+msg {
				t.Fatalf("client %s: got %q, want %q", name, got, "echo:"+msg)
			}
		}
	}
	seen := map[netip.AddrPort]bool{}
	for len(srcs) > 0 {
		seen[<-srcs] = true
	}
	if len(seen) != 2 {
		t.Errorf("the target saw %d source addresses, want 2 (one flow per client): %v", len(seen), seen)
	}
	// A third client finds the flow table full: not relayed.
	c := udpClient(t, at)
	if got := ask(c, "c", 300*time.Millisecond); got != "" {
		t.Errorf("third client past the flow limit answered %q", got)
	}
	// Idle flows end; then the third client gets its flow.
	for deadline := time.Now().Add(30 * time.Second); p.flowCount() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the idle flows did not end")
		}
	}
	if got := ask(c, "c", 5*time.Second); got != "echo:c" {
		t.Errorf("third client after the idle flows ended: got %q", got)
	}
	// Stopped: the port is free again and nothing answers.
	p.stop()
	if got := ask(a, "a", 300*time.Millisecond); got != "" {
		t.Errorf("stopped proxy answered %q", got)
	}
	pc, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(at))
	if err != nil {
		t.Fatalf("the stopped proxy's port is still taken: %v", err)
	}
	pc.Close()
}
