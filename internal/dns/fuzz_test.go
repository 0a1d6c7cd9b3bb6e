package dns

import (
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzHandler feeds arbitrary packets to the handler: it must never
// panic, and every answer it writes must pack. CI runs the seed corpus;
// go test -fuzz=FuzzHandler -fuzztime=1m ./internal/dns/ runs longer.
func FuzzHandler(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"a.", mdns.TypeA}, {"db.n1.", mdns.TypeAAAA}, {"3.0.1.10.in-addr.arpa.", mdns.TypePTR},
		{"example.org.", mdns.TypeTXT}, {"x.ip6.arpa.", mdns.TypePTR},
	} {
		m := new(mdns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(4096, false)
		b, _ := m.Pack()
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0}, false)
	s := New(Options{exchange: func(q *mdns.Msg, up netip.AddrPort, tcp bool) (*mdns.Msg, error) {
		m := new(mdns.Msg)
		m.SetRcode(q, mdns.RcodeNameError)
		return m, nil
	}, Listen: noSockets, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")}})
	defer s.Close()
	s.Set(testConfig())
	f.Fuzz(func(t *testing.T, pkt []byte, tcp bool) {
		q := new(mdns.Msg)
		if err := q.Unpack(pkt); err != nil {
			return // the server drops what does not parse
		}
		w := &memWriter{tcp: tcp}
		handler{s: s, sbID: "a"}.ServeDNS(w, q)
		if w.err != nil {
			t.Fatalf("answer does not pack: %v", w.err)
		}
		if w.msg != nil && w.msg.Id != q.Id {
			t.Fatalf("answer id %d, query id %d", w.msg.Id, q.Id)
		}
	})
}
