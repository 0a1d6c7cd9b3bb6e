package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vxnet/vxnet/internal/harness/freeport"
)

func noSockets(Sandbox) (net.PacketConn, net.Listener, error) {
	return nil, nil, errors.New("no sockets in this test")
}

// loopbackListen opens the sandbox's sockets on 127.0.0.1 (random ports),
// so the server is tested over real sockets without root.
func loopbackListen(addrs map[string]string) func(Sandbox) (net.PacketConn, net.Listener, error) {
	return func(sb Sandbox) (net.PacketConn, net.Listener, error) {
		pc, ln, err := freeport.SamePort()
		if err != nil {
			return nil, nil, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		addrs[sb.ID] = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String()
		return pc, ln, nil
	}
}

// startUpstream runs a DNS server on loopback answering "ext.test." with
// 203.0.113.7 and, for "big.test.", an answer too large for UDP.
func startUpstream(t *testing.T) (netip.AddrPort, func()) {
	t.Helper()
	pc, ln, err := freeport.SamePort()
	if err != nil {
		t.Fatal(err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(q)
		switch q.Question[0].Name {
		case "ext.test.":
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: "ext.test.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 5}, A: net.IPv4(203, 0, 113, 7)})
		case "big.test.":
			for i := range 60 {
				m.Answer = append(m.Answer, &mdns.TXT{Hdr: mdns.RR_Header{Name: "big.test.", Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 5}, Txt: []string{strings.Repeat("x", 50) + string(rune('a'+i%26))}})
			}
			if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
				m.Truncate(mdns.MinMsgSize)
			}
		default:
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	udp := &mdns.Server{PacketConn: pc, Handler: h}
	tcp := &mdns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	stop := func() { udp.Shutdown(); tcp.Shutdown() }
	t.Cleanup(stop)
	return netip.MustParseAddrPort(pc.LocalAddr().String()), stop
}

func TestServerOverSockets(t *testing.T) {
	up, stop := startUpstream(t)
	addrs := map[string]string{}
	s := New(Options{Listen: loopbackListen(addrs), Timeout: 500 * time.Millisecond})
	t.Cleanup(s.Close)
	cfg := testConfig()
	cfg.Sandboxes[0].Upstreams = []netip.AddrPort{up}
	s.Set(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Ready(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	query := func(netw, name string, qtype uint16) *mdns.Msg {
		t.Helper()
		c := &mdns.Client{Net: netw, Timeout: 10 * time.Second}
		q := new(mdns.Msg)
		q.SetQuestion(name, qtype)
		m, _, err := c.Exchange(q, addrs["a"])
		if err != nil {
			t.Fatalf("%s %s over %s: %v", mdns.TypeToString[qtype], name, netw, err)
		}
		return m
	}
	for _, netw := range []string{"udp", "tcp"} {
		if got := answers(query(netw, "b.", mdns.TypeA)); !equal(got, []string{"10.1.0.3"}) {
			t.Errorf("b over %s: %v", netw, got)
		}
		if got := answers(query(netw, "ext.test.", mdns.TypeA)); !equal(got, []string{"203.0.113.7"}) {
			t.Errorf("ext.test forwarded over %s: %v", netw, got)
		}
		if m := query(netw, "nope.test.", mdns.TypeA); m.Rcode != mdns.RcodeNameError {
			t.Errorf("nope.test over %s: %s, want NXDOMAIN", netw, mdns.RcodeToString[m.Rcode])
		}
	}
	// Truncated over UDP upstream: the server asks again over TCP; the
	// client over TCP gets it whole.
	if m := query("tcp", "big.test.", mdns.TypeTXT); len(m.Answer) != 60 || m.Truncated {
		t.Errorf("big.test over tcp: %d answers truncated=%v, want 60 whole", len(m.Answer), m.Truncated)
	}
	if m := query("udp", "big.test.", mdns.TypeTXT); !m.Truncated {
		t.Errorf("big.test over udp: %d answers, not truncated", len(m.Answer))
	}
	// The upstream stopped: SERVFAIL, not silence.
	stop()
	if m := query("udp", "ext.test.", mdns.TypeA); m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("upstream stopped: %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
	}
	// An upstream that never answers: SERVFAIL after the timeout, before
	// the client gives up.
	hole, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	cfg.Sandboxes[0].Upstreams = []netip.AddrPort{netip.MustParseAddrPort(hole.LocalAddr().String())}
	s.Set(cfg)
	if m := query("udp", "ext.test.", mdns.TypeA); m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("silent upstream: %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
	}
	// A sandbox that goes away stops being served.
	cfg.Sandboxes = cfg.Sandboxes[1:]
	s.Set(cfg)
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Serving()) != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := s.Serving(); len(got) != 1 || got[0] != "i" {
		t.Errorf("serving %v after a's removal, want [i]", got)
	}
}
