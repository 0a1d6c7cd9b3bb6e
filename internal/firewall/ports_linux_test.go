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

// tcpAsk connects from ns to dst and returns the line the server sent, or
// "" when the connection fails within a second.
func (tp *topo) tcpAsk(ns, dst string) string {
	tp.t.Helper()
	var line string
	netns.Do(tp.path(ns), func() error {
		c, err := net.DialTimeout("tcp4", dst, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
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
	tp.udpSend(tp.out, "", addrHost+":5353", "udp-published")
	if from, ok := udpRecv(t, u, "udp-published"); !ok || from.String() != addrOut {
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
	// 8081 is bound to one address only: the bridge gateway does not answer.
	if got := tp.tcpAsk(tp.c1, "198.51.100.1:8081"); got != "" {
		t.Errorf("8081 answered on the gateway address: %q", got)
	}
	// Unpublished: the outside no longer gets in.
	tp.apply(f, Config{Networks: []Network{netA, netB}})
	if got := tp.tcpAsk(tp.out, addrHost+":8080"); got != "" {
		t.Errorf("8080 still answers after unpublishing: %q", got)
	}
}
