package dns

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// ttl of local answers, as Docker's resolver gives.
const ttl = 600

// handler answers the queries of one sandbox.
type handler struct {
	s    *Server
	sbID string
}

// ServeDNS answers one query: local names (A, AAAA, PTR) from the index,
// everything else forwarded. It always writes one answer.
func (h handler) ServeDNS(w mdns.ResponseWriter, q *mdns.Msg) {
	resp := h.s.answer(h.sbID, q, isTCP(w))
	if resp == nil {
		return
	}
	if !isTCP(w) {
		resp.Truncate(udpSize(q))
	}
	if err := w.WriteMsg(resp); err != nil {
		h.s.log.Debug("dns: write answer", "err", err)
	}
}

func isTCP(w mdns.ResponseWriter) bool {
	_, ok := w.RemoteAddr().(*net.TCPAddr)
	return ok
}

func udpSize(q *mdns.Msg) int {
	if o := q.IsEdns0(); o != nil && o.UDPSize() > mdns.MinMsgSize {
		return int(o.UDPSize())
	}
	return mdns.MinMsgSize
}

func reply(q *mdns.Msg, rcode int) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetRcode(q, rcode)
	m.RecursionAvailable = true
	return m
}

// Answer answers q as the server would from inside sandbox sbID (local
// names, or forwarded over UDP); nil for a packet it would drop.
func (s *Server) Answer(sbID string, q *mdns.Msg) *mdns.Msg {
	return s.answer(sbID, q, false)
}

// answer computes the answer to q from sandbox sbID; nil means drop
// (not a query at all).
func (s *Server) answer(sbID string, q *mdns.Msg, tcp bool) *mdns.Msg {
	if q.Response {
		return nil
	}
	if q.Opcode != mdns.OpcodeQuery {
		return reply(q, mdns.RcodeNotImplemented)
	}
	if len(q.Question) != 1 {
		return reply(q, mdns.RcodeFormatError)
	}
	ix := s.ix.Load()
	sb, ok := ix.sandboxes[sbID]
	if !ok {
		return reply(q, mdns.RcodeServerFailure)
	}
	qq := q.Question[0]
	if qq.Qclass == mdns.ClassINET {
		switch qq.Qtype {
		case mdns.TypeA, mdns.TypeAAAA:
			if m := s.answerAddr(sb, q, qq); m != nil {
				return m
			}
		case mdns.TypePTR:
			if m := s.answerPTR(sb, q, qq); m != nil {
				return m
			}
		}
	}
	if !sb.forward {
		return reply(q, mdns.RcodeServerFailure)
	}
	return s.forward(sb, q, tcp)
}

// answerAddr answers A or AAAA for a local name, shuffled; a name known
// only in the other family gets an empty NOERROR, so the client does not
// go on to ask the world. nil: not a local name.
func (s *Server) answerAddr(sb *sbIndex, q *mdns.Msg, qq mdns.Question) *mdns.Msg {
	addrs, ok := sb.lookup(qq.Name)
	if !ok {
		return nil
	}
	m := reply(q, mdns.RcodeSuccess)
	m.Authoritative = true
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	hdr := mdns.RR_Header{Name: qq.Name, Rrtype: qq.Qtype, Class: mdns.ClassINET, Ttl: ttl}
	for _, a := range addrs {
		switch {
		case qq.Qtype == mdns.TypeA && a.Is4():
			m.Answer = append(m.Answer, &mdns.A{Hdr: hdr, A: a.AsSlice()})
		case qq.Qtype == mdns.TypeAAAA && a.Is6() && !a.Is4In6():
			m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	return m
}

// answerPTR answers a reverse lookup of an address on one of the
// sandbox's networks with NAME.NETWORK. nil: not a local address.
func (s *Server) answerPTR(sb *sbIndex, q *mdns.Msg, qq mdns.Question) *mdns.Msg {
	a, ok := parseReverse(qq.Name)
	if !ok {
		return nil
	}
	names := sb.reverse(a)
	if len(names) == 0 {
		return nil
	}
	m := reply(q, mdns.RcodeSuccess)
	m.Authoritative = true
	for _, n := range names {
		if _, ok := mdns.IsDomainName(n); !ok {
			continue
		}
		m.Answer = append(m.Answer, &mdns.PTR{Hdr: mdns.RR_Header{Name: qq.Name, Rrtype: mdns.TypePTR, Class: mdns.ClassINET, Ttl: ttl}, Ptr: n})
	}
	return m
}

// parseReverse turns an in-addr.arpa or ip6.arpa name into an address.
func parseReverse(name string) (netip.Addr, bool) {
	n := normalize(name)
	switch {
	case strings.HasSuffix(n, ".in-addr.arpa"):
		l := strings.Split(strings.TrimSuffix(n, ".in-addr.arpa"), ".")
		if len(l) != 4 {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(l[3] + "." + l[2] + "." + l[1] + "." + l[0])
		return a, err == nil
	case strings.HasSuffix(n, ".ip6.arpa"):
		l := strings.Split(strings.TrimSuffix(n, ".ip6.arpa"), ".")
		if len(l) != 32 {
			return netip.Addr{}, false
		}
		var b strings.Builder
		for i := 31; i >= 0; i-- {
			if len(l[i]) != 1 {
				return netip.Addr{}, false
			}
			b.WriteString(l[i])
			if i%4 == 0 && i > 0 {
				b.WriteByte(':')
			}
		}
		a, err := netip.ParseAddr(b.String())
		return a, err == nil
	}
	return netip.Addr{}, false
}

// forward asks the sandbox's upstreams in turn: UDP first (TCP when the
// client asked over TCP or the answer was truncated), each with its own
// timeout. No upstream, too many queries in flight, or every upstream
// failing: SERVFAIL.
func (s *Server) forward(sb *sbIndex, q *mdns.Msg, tcp bool) *mdns.Msg {
	ups := sb.upstreams
	if len(ups) == 0 {
		ups = s.defaultUpstreams()
	}
	if len(ups) == 0 {
		return reply(q, mdns.RcodeServerFailure)
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		s.log.Debug("dns: too many forwarded queries in flight")
		return reply(q, mdns.RcodeServerFailure)
	}
	for _, up := range ups {
		if up.Addr() == Addr {
			continue // ourselves
		}
		resp, err := s.exchange(q, up, tcp)
		if err != nil {
			s.log.Debug("dns: forward", "upstream", up, "err", err)
			continue
		}
		resp.Id = q.Id
		return resp
	}
	return reply(q, mdns.RcodeServerFailure)
}

func (s *Server) exchange(q *mdns.Msg, up netip.AddrPort, tcp bool) (*mdns.Msg, error) {
	if s.opts.exchange != nil {
		return s.opts.exchange(q, up, tcp)
	}
	netw := "udp"
	if tcp {
		netw = "tcp"
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.Timeout)
	defer cancel()
	c := &mdns.Client{Net: netw, Timeout: s.opts.Timeout, UDPSize: mdns.DefaultMsgSize}
	resp, _, err := c.ExchangeContext(ctx, q.Copy(), up.String())
	if err == nil && resp.Truncated && !tcp {
		c.Net = "tcp"
		ctx2, cancel2 := context.WithTimeout(s.ctx, s.opts.Timeout)
		defer cancel2()
		resp, _, err = c.ExchangeContext(ctx2, q.Copy(), up.String())
	}
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return nil, errors.New("no answer")
	}
	return resp, nil
}

// exchangeFunc is a test seam replacing the network exchange.
type exchangeFunc func(q *mdns.Msg, up netip.AddrPort, tcp bool) (*mdns.Msg, error)
