package firewall

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/netns"
)

// tcpServe listens in ns on addr and answers every connection with one line:
// the remote address it saw.
func (tp *topo) tcpServe(ns, addr string) {
	tp.t.Helper()
	var l net.Listener
	err := netns.Do(tp.path(ns), func() error {
		var err error
		l, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(c.RemoteAddr().String() + "\n"))
			c.Close()
		}
	}()
}

// tcpAsk connects from ns to dst and returns the line the server sent;
// it tries three times (first packets may race ARP on a loaded machine) and
// returns "" when none answered.
func (tp *topo) tcpAsk(ns, dst string) string {
	tp.t.Helper()
	for range 3 {
		if line := tp.tcpAskOnce(ns, dst, 2*time.Second); line != "" {
			return line
		}
	}
	return ""
}

// tcpAskOnce is one attempt of tcpAsk, for answers that must not come.
func (tp *topo) tcpAskOnce(ns, dst string, timeout time.Duration) string {
	tp.t.Helper()
	var line string
	netns.Do(tp.path(ns), func() error {
		c, err := net.DialTimeout("tcp4", dst, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		line, _ = bufio.NewReader(c).ReadString('\n')
		return nil
	})
	return strings.TrimSpace(line)
}

// A published port answers from the outside, from the host itself (its own
// address and localhost), hairpinned from a container on the same bridge and
// from a container on another bridge; a host-address binding answers only
// on that address; removing the mapping closes the port.
func TestPublishedPorts(t *testing.T) {
	tp := newTopo(t)
	f := tp.firewall(Options{})
	tp.tcpServe(tp.c1, "0.0.0.0:80")
	tp.tcpServe(tp.c3, "0.0.0.0:81")
	c1 := netip.MustParseAddr(addrC1)
	c3 := netip.MustParseAddr(addrC3)
	cfg := Config{Networks: []Network{netA, netB}, Ports: []PortMapping{
		{ID: "c1", Proto: "tcp", HostPort: 8080, ContainerIP: c1, ContainerPort: 80, Bridge: "br-a"},
		{ID: "c3", Proto: "tcp", HostIP: netip.MustParseAddr(addrHost), HostPort: 8081, ContainerIP: c3, ContainerPort: 81, Bridge: "br-b"},
		{ID: "c1", Proto: "udp", HostPort: 5353, ContainerIP: c1, ContainerPort: 53, Bridge: "br-a"},
	}}
	tp.apply(f, cfg)

	// UDP: a datagram to the host's port reaches the container's.
	u := tp.udpListen(tp.c1, "0.0.0.0:53")
	var from netip.Addr
	ok := false
	for i := 0; i < 5 && !ok; i++ {
		tp.udpSend(tp.out, "", addrHost+":5353", "udp-published")
		from, ok = udpRecv(t, u, "udp-published")
	}
	if !ok || from.String() != addrOut {
		t.Errorf("udp 5353: received=%v from %v, want from %s", ok, from, addrOut)
	}

	cases := []struct{ name, ns, dst, wantSrc string }{
		{"outside", tp.out, addrHost + ":8080", addrOut},
		{"host address", tp.host, addrHost + ":8080", addrHost},
		{"localhost", tp.host, "127.0.0.1:8080", "198.51.100.1"},
		{"other bridge", tp.c3, addrHost + ":8080", addrC3},
		{"host ip binding", tp.out, addrHost + ":8081", addrOut},
		{"host ip binding from a container", tp.c1, addrHost + ":8081", addrC1},
	}
	for _, c := range cases {
		got := tp.tcpAsk(c.ns, c.dst)
		if host, _, _ := strings.Cut(got, ":"); host != c.wantSrc {
			t.Errorf("%s: %s answered %q, want the server to see %s", c.name, c.dst, got, c.wantSrc)
		}
	}
	// Hairpin on one bridge, with bridged traffic through netfilter (the
	// conntrack entry undoes the DNAT on the answer) and without it (the
	// masquerade makes the answer come back through the host).
	for _, bnf := range []string{"1", "0"} {
		err := netns.Do(tp.path(tp.host), func() error {
			return procSysctl{}.set("net.bridge.bridge-nf-call-iptables", bnf)
		})
		if err != nil {
			t.Logf("bridge-nf-call-iptables=%s: %v (br_netfilter not loaded)", bnf, err)
		}
		if got := tp.tcpAsk(tp.c2, addrHost+":8080"); got == "" {
			t.Errorf("hairpin with bridge-nf-call-iptables=%s: no answer", bnf)
		}
	}
	// route_localnet must not open the host's loopback to containers: a
	// container routing 127.0.0.2 to its gateway does not reach a host
	// service.
	tp.tcpServe(tp.host, "0.0.0.0:9999")
	tp.sh(tp.c2, "sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1")
	tp.ip(tp.c2, "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local")
	tp.ip(tp.c2, "route", "add", "127.0.0.2/32", "via", "198.51.100.1", "dev", "eth0")
	if got := tp.tcpAskOnce(tp.c2, "127.0.0.2:9999", time.Second); got != "" {
		t.Errorf("a container reached the host's loopback through the bridge: %q", got)
	}
	// 8081 is bound to one address only: the bridge gateway does not answer.
	if got := tp.tcpAskOnce(tp.c1, "198.51.100.1:8081", time.Second); got != "" {
		t.Errorf("8081 answered on the gateway address: %q", got)
	}
	// Unpublished: the outside no longer gets in.
	tp.apply(f, Config{Networks: []Network{netA, netB}})
	if got := tp.tcpAskOnce(tp.out, addrHost+":8080", time.Second); got != "" {
		t.Errorf("8080 still answers after unpublishing: %q", got)
	}
}
