package dns

import (
	"errors"
	"net"
	"net/netip"
	"sort"
	"testing"

	mdns "github.com/miekg/dns"
)

// memWriter is an in-memory ResponseWriter.
type memWriter struct {
	tcp bool
	msg *mdns.Msg
	err error
}

func (w *memWriter) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 11), Port: 53} }
func (w *memWriter) RemoteAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}
}
func (w *memWriter) WriteMsg(m *mdns.Msg) error {
	if _, err := m.Pack(); err != nil {
		w.err = err
		return err
	}
	w.msg = m
	return nil
}
func (w *memWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *memWriter) Close() error                { return nil }
func (w *memWriter) TsigStatus() error           { return nil }
func (w *memWriter) TsigTimersOnly(bool)         {}
func (w *memWriter) Hijack()                     {}

var (
	aIP  = netip.MustParseAddr("10.1.0.2")
	bIP  = netip.MustParseAddr("10.1.0.3")
	cIP  = netip.MustParseAddr("10.2.0.2")
	b6IP = netip.MustParseAddr("fd00::3")
)

// testConfig: a and b on n1 (b shares the alias "db" with a, b has an
// IPv6 address too), c alone on n2; sandbox "a" is on n1, "i" only on the
// internal network n3.
func testConfig() Config {
	return Config{
		Networks: []Network{
			{ID: "n1", Name: "n1", Records: []Record{
				{Names: []string{"a", "db", "aaaaaaaaaaaa"}, Addrs: []netip.Addr{aIP}},
				{Names: []string{"b", "db"}, Addrs: []netip.Addr{bIP, b6IP}},
			}},
			{ID: "n2", Name: "n2", Records: []Record{{Names: []string{"c"}, Addrs: []netip.Addr{cIP}}}},
			{ID: "n3", Name: "n3", Internal: true, Records: []Record{{Names: []string{"i"}, Addrs: []netip.Addr{netip.MustParseAddr("10.3.0.2")}}}},
		},
		Sandboxes: []Sandbox{
			{ID: "a", Networks: []string{"n1"}},
			{ID: "i", Networks: []string{"n3"}},
		},
	}
}

func newTestServer(t *testing.T, ex exchangeFunc) *Server {
	t.Helper()
	s := New(Options{exchange: ex, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")},
		Listen: func(Sandbox) (net.PacketConn, net.Listener, error) {
			return nil, nil, errors.New("no sockets in unit tests")
		}})
	t.Cleanup(s.Close)
	s.Set(testConfig())
	return s
}

// upstreamNX answers every forwarded query with NXDOMAIN and counts them.
func upstreamNX(count *int) exchangeFunc {
	return func(q *mdns.Msg, up netip.AddrPort, tcp bool) (*mdns.Msg, error) {
		*count++
		m := new(mdns.Msg)
		m.SetRcode(q, mdns.RcodeNameError)
		return m, nil
	}
}

func ask(s *Server, sb, name string, qtype uint16) *mdns.Msg {
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), qtype)
	w := &memWriter{}
	handler{s: s, sbID: sb}.ServeDNS(w, q)
	return w.msg
}

func answers(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch r := rr.(type) {
		case *mdns.A:
			out = append(out, r.A.String())
		case *mdns.AAAA:
			out = append(out, r.AAAA.String())
		case *mdns.PTR:
			out = append(out, r.Ptr)
		}
	}
	sort.Strings(out)
	return out
}

func TestHandlerLocalNames(t *testing.T) {
	forwarded := 0
	s := newTestServer(t, upstreamNX(&forwarded))
	cases := []struct {
		sb, name string
		qtype    uint16
		rcode    int
		want     []string
		forward  bool
	}{
		{"a", "b", mdns.TypeA, mdns.RcodeSuccess, []string{"10.1.0.3"}, false},
		{"a", "B.N1", mdns.TypeA, mdns.RcodeSuccess, []string{"10.1.0.3"}, false},
		{"a", "db", mdns.TypeA, mdns.RcodeSuccess, []string{"10.1.0.2", "10.1.0.3"}, false},
		{"a", "db.n1", mdns.TypeA, mdns.RcodeSuccess, []string{"10.1.0.2", "10.1.0.3"}, false},
		{"a", "aaaaaaaaaaaa", mdns.TypeA, mdns.RcodeSuccess, []string{"10.1.0.2"}, false},
		{"a", "b", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"fd00::3"}, false},
		// Known name, no IPv6: empty NOERROR, not forwarded.
		{"a", "a", mdns.TypeAAAA, mdns.RcodeSuccess, nil, false},
		// c is on n2, which a is not on: forwarded (the upstream says NXDOMAIN).
		{"a", "c", mdns.TypeA, mdns.RcodeNameError, nil, true},
		{"a", "c.n2", mdns.TypeA, mdns.RcodeNameError, nil, true},
		{"a", "3.0.1.10.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, []string{"b.n1."}, false},
		{"a", "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa", mdns.TypePTR, mdns.RcodeSuccess, []string{"b.n1."}, false},
		// c's address from a: not a's network, forwarded.
		{"a", "2.0.2.10.in-addr.arpa", mdns.TypePTR, mdns.RcodeNameError, nil, true},
		{"a", "example.org", mdns.TypeMX, mdns.RcodeNameError, nil, true},
		// A sandbox on internal networks only: local names yes, no forwarding.
		{"i", "i", mdns.TypeA, mdns.RcodeSuccess, []string{"10.3.0.2"}, false},
		{"i", "example.org", mdns.TypeA, mdns.RcodeServerFailure, nil, false},
		// An unknown sandbox gets SERVFAIL.
		{"zz", "a", mdns.TypeA, mdns.RcodeServerFailure, nil, false},
	}
	for _, c := range cases {
		before := forwarded
		m := ask(s, c.sb, c.name, c.qtype)
		if m == nil {
			t.Fatalf("%s %s from %s: no answer", mdns.TypeToString[c.qtype], c.name, c.sb)
		}
		if m.Rcode != c.rcode {
			t.Errorf("%s %s from %s: rcode %s, want %s", mdns.TypeToString[c.qtype], c.name, c.sb, mdns.RcodeToString[m.Rcode], mdns.RcodeToString[c.rcode])
		}
		if got := answers(m); !equal(got, c.want) {
			t.Errorf("%s %s from %s: answers %v, want %v", mdns.TypeToString[c.qtype], c.name, c.sb, got, c.want)
		}
		if (forwarded > before) != c.forward {
			t.Errorf("%s %s from %s: forwarded=%v, want %v", mdns.TypeToString[c.qtype], c.name, c.sb, forwarded > before, c.forward)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A name shared by two containers comes back in both orders.
func TestHandlerShuffles(t *testing.T) {
	s := newTestServer(t, nil)
	firsts := map[string]int{}
	for range 100 {
		m := ask(s, "a", "db", mdns.TypeA)
		if len(m.Answer) != 2 {
			t.Fatalf("db: %d answers, want 2", len(m.Answer))
		}
		firsts[m.Answer[0].(*mdns.A).A.String()]++
	}
	if len(firsts) != 2 {
		t.Errorf("first answers over 100 lookups: %v, want both addresses", firsts)
	}
}

// Set replaces the names: a removed container stops resolving.
func TestHandlerFollowsSet(t *testing.T) {
	forwarded := 0
	s := newTestServer(t, upstreamNX(&forwarded))
	cfg := testConfig()
	cfg.Networks[0].Records = cfg.Networks[0].Records[:1]
	s.Set(cfg)
	if m := ask(s, "a", "b", mdns.TypeA); m.Rcode != mdns.RcodeNameError {
		t.Errorf("b after removal: %s, want NXDOMAIN from upstream", mdns.RcodeToString[m.Rcode])
	}
}

// No upstream, failing upstreams, and a full forwarding budget all give
// SERVFAIL at once.
func TestHandlerForwardFailures(t *testing.T) {
	s := New(Options{HostResolvConf: "/nonexistent/resolv.conf",
		Listen: func(Sandbox) (net.PacketConn, net.Listener, error) { return nil, nil, errors.New("none") }})
	t.Cleanup(s.Close)
	s.Set(testConfig())
	if m := ask(s, "a", "example.org", mdns.TypeA); m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("no upstream: %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
	}
	calls := 0
	s2 := newTestServer(t, func(q *mdns.Msg, up netip.AddrPort, tcp bool) (*mdns.Msg, error) {
		calls++
		return nil, errors.New("timeout")
	})
	cfg := testConfig()
	cfg.Sandboxes[0].Upstreams = []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:53"), netip.MustParseAddrPort("192.0.2.2:53"), netip.MustParseAddrPort("127.0.0.11:53")}
	s2.Set(cfg)
	if m := ask(s2, "a", "example.org", mdns.TypeA); m.Rcode != mdns.RcodeServerFailure || calls != 2 {
		t.Errorf("failing upstreams: %s after %d calls, want SERVFAIL after 2 (127.0.0.11 skipped)", mdns.RcodeToString[m.Rcode], calls)
	}
	s3 := New(Options{MaxForwarding: 1, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")},
		Listen: func(Sandbox) (net.PacketConn, net.Listener, error) { return nil, nil, errors.New("none") }})
	t.Cleanup(s3.Close)
	s3.Set(testConfig())
	s3.sem <- struct{}{} // the one slot is taken
	if m := ask(s3, "a", "example.org", mdns.TypeA); m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("budget full: %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
	}
}

func TestParseReverse(t *testing.T) {
	for name, want := range map[string]string{
		"4.3.2.1.in-addr.arpa.": "1.2.3.4",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.": "fd00::1",
		"3.2.1.in-addr.arpa.":     "",
		"x.3.2.1.in-addr.arpa.":   "",
		"example.org.":            "",
		"1.ip6.arpa.":             "",
		"300.3.2.1.in-addr.arpa.": "",
	} {
		a, ok := parseReverse(name)
		got := ""
		if ok {
			got = a.String()
		}
		if got != want {
			t.Errorf("parseReverse(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestResolvConf(t *testing.T) {
	host := []byte("nameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch corp.example\noptions edns0 trust-ad\n")
	got := string(ResolvConf(host, true, ResolvSettings{}))
	want := "# Generated by vxnet.\nnameserver 127.0.0.11\nsearch corp.example\noptions ndots:0 edns0 trust-ad\n\n# Embedded DNS server; it forwards other names to: host resolvers\n"
	if got != want {
		t.Errorf("embedded:\n%s\nwant:\n%s", got, want)
	}
	got = string(ResolvConf(host, false, ResolvSettings{}))
	want = "# Generated by vxnet.\nnameserver 192.0.2.1\nsearch corp.example\noptions edns0 trust-ad\n"
	if got != want {
		t.Errorf("default bridge:\n%s\nwant:\n%s", got, want)
	}
	got = string(ResolvConf(host, false, ResolvSettings{Servers: []netip.Addr{netip.MustParseAddr("198.51.100.1")}, Search: []string{"."}, Options: []string{"ndots:2"}}))
	want = "# Generated by vxnet.\nnameserver 198.51.100.1\noptions ndots:2\n"
	if got != want {
		t.Errorf("--dns:\n%s\nwant:\n%s", got, want)
	}
}
