package engine

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// The userland proxy for IPv6 loopback. IPv6 has no route_localnet: a
// packet from ::1 rewritten by DNAT towards a container is dropped, so
// ports published on ::1 (-p [::1]:8080:80, -p [::1]:5353:53/udp), and TCP
// and UDP ports published on every address (which Docker also serves on
// [::1]), are served by a proxy in the daemon, as Docker's docker-proxy
// does: it listens on [::1]:PORT in the daemon's namespace and relays to
// the container's address (IPv6 if it has one on the published network,
// else IPv4). TCP relays each connection; UDP keeps one flow per client
// address (a connected socket towards the container whose answers go back
// to that client), ended after udpFlowIdle without traffic, at most
// udpFlowMax at once. SCTP is refused on ::1 at create (checkExposure).
// The proxies are a function of the held ports, reconciled after every
// firewall apply (also at start, so they come back after a restart); a
// proxy that goes away closes its sockets and its connections or flows.

// Docker's docker-proxy keeps a UDP flow for 90 s without traffic.
const (
	udpFlowIdle = 90 * time.Second
	udpFlowMax  = 1024
	udpBufSize  = 65507 // the largest UDP payload over IPv4
)

// proxyKey is where a proxy listens: protocol and [::1]:PORT.
type proxyKey struct {
	proto string // "tcp" or "udp"
	at    netip.AddrPort
}

type proxyTarget struct {
	to       netip.AddrPort
	explicit bool // published on ::1 itself (failing to listen is worth a warning)
}

type proxySet struct {
	mu sync.Mutex
	m  map[proxyKey]runningProxy
}

// runningProxy is a started TCP or UDP proxy.
type runningProxy interface {
	target() netip.AddrPort
	serve()
	stop()
}

// proxiesLocked is the set of proxies the held ports want.
func (e *Engine) proxiesLocked() map[proxyKey]proxyTarget {
	out := map[proxyKey]proxyTarget{}
	for _, c := range e.containers {
		if len(c.Ports) == 0 {
			continue
		}
		ep, _, ok := e.publishEndpointLocked(c.ID)
		if !ok {
			continue
		}
		to := ep.Addr6.Addr()
		if !to.IsValid() {
			to = ep.Addr.Addr()
		}
		for _, m := range c.Ports {
			explicit := m.HostIP == netip.IPv6Loopback()
			if (m.Port.Proto != "tcp" && m.Port.Proto != "udp") || !(explicit || !m.HostIP.IsValid()) {
				continue
			}
			k := proxyKey{proto: m.Port.Proto, at: netip.AddrPortFrom(netip.IPv6Loopback(), m.HostPort)}
			out[k] = proxyTarget{to: netip.AddrPortFrom(to, m.Port.Num), explicit: explicit}
		}
	}
	return out
}

// reconcileProxies starts the wanted proxies that do not run and stops
// the others. Callers are serialised by the firewall applier's lock.
func (e *Engine) reconcileProxies(want map[proxyKey]proxyTarget) {
	ps := &e.proxies
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.m == nil {
		ps.m = map[proxyKey]runningProxy{}
	}
	for k, p := range ps.m {
		if w, ok := want[k]; !ok || w.to != p.target() {
			p.stop()
			delete(ps.m, k)
		}
	}
	if e.ctx.Err() != nil {
		return
	}
	for k, w := range want {
		if _, ok := ps.m[k]; ok {
			continue
		}
		p, err := startProxy(k, w.to)
		if err != nil {
			if w.explicit {
				e.log.Warn("userland proxy for a port published on ::1", "proto", k.proto, "listen", k.at, "err", err)
			} else {
				e.log.Debug("userland proxy on ::1 for a port published on every address", "proto", k.proto, "listen", k.at, "err", err)
			}
			continue
		}
		ps.m[k] = p
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			p.serve()
		}()
	}
}

// startProxy opens the listening socket of a proxy.
func startProxy(k proxyKey, to netip.AddrPort) (runningProxy, error) {
	if k.proto == "udp" {
		pc, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(k.at))
		if err != nil {
			return nil, err
		}
		return newUDPProxy(pc, to, udpFlowIdle, udpFlowMax), nil
	}
	ln, err := net.Listen("tcp6", k.at.String())
	if err != nil {
		return nil, err
	}
	return &tcpProxy{to: to, ln: ln, conns: map[net.Conn]bool{}}, nil
}

// stopProxies closes every proxy (at Close).
func (e *Engine) stopProxies() {
	e.reconcileProxies(nil)
}

type tcpProxy struct {
	to    netip.AddrPort
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
	done  bool
}

func (p *tcpProxy) target() netip.AddrPort { return p.to }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !p.track(c, true) {
			c.Close()
			return
		}
		go p.relay(c)
	}
}

// track adds (or removes) a connection; false once the proxy stopped.
func (p *tcpProxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.done {
			return false
		}
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *tcpProxy) relay(in net.Conn) {
	defer func() {
		in.Close()
		p.track(in, false)
	}()
	out, err := net.DialTimeout("tcp", p.to.String(), 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(out, true) {
		out.Close()
		return
	}
	defer func() {
		out.Close()
		p.track(out, false)
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(out, in)
		out.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(in, out)
	in.(*net.TCPConn).CloseWrite()
	wg.Wait()
}

func (p *tcpProxy) stop() {
	p.ln.Close()
	p.mu.Lock()
	p.done = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// udpProxy relays datagrams between clients of [::1]:PORT and the
// container: a flow per client address, each a socket connected to the
// container, so the container's answers on it go back to that client.
type udpProxy struct {
	to   netip.AddrPort
	pc   *net.UDPConn
	idle time.Duration
	max  int

	mu    sync.Mutex
	flows map[netip.AddrPort]*udpFlow
	done  bool
	wg    sync.WaitGroup // the flows' reply loops
}

type udpFlow struct {
	out  *net.UDPConn
	last time.Time // the last datagram either way (under udpProxy.mu)
}

func newUDPProxy(pc *net.UDPConn, to netip.AddrPort, idle time.Duration, max int) *udpProxy {
	return &udpProxy{to: to, pc: pc, idle: idle, max: max, flows: map[netip.AddrPort]*udpFlow{}}
}

func (p *udpProxy) target() netip.AddrPort { return p.to }

func (p *udpProxy) serve() {
	buf := make([]byte, udpBufSize)
	for {
		n, from, err := p.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		out := p.flow(from)
		if out == nil {
			continue // stopped, at the flow limit, or no socket: dropped, as a full queue would
		}
		// An earlier datagram refused by the container (ICMP port
		// unreachable) is reported by the next send, which then did not
		// go out: send once more.
		if _, err := out.Write(buf[:n]); errors.Is(err, syscall.ECONNREFUSED) {
			out.Write(buf[:n])
		}
	}
}

// flow is the socket of from's flow, made if there is none, its idle time
// restarted (nil when the proxy stopped or holds max flows).
func (p *udpProxy) flow(from netip.AddrPort) *net.UDPConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return nil
	}
	if f, ok := p.flows[from]; ok {
		f.last = time.Now()
		return f.out
	}
	if len(p.flows) >= p.max {
		return nil
	}
	out, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(p.to))
	if err != nil {
		return nil
	}
	f := &udpFlow{out: out, last: time.Now()}
	p.flows[from] = f
	p.wg.Add(1)
	go p.replies(from, f)
	return out
}

// replies sends what the container answers on a flow back to its client,
// until the flow saw no datagram either way for p.idle or the proxy stops.
func (p *udpProxy) replies(from netip.AddrPort, f *udpFlow) {
	defer p.wg.Done()
	defer f.out.Close()
	buf := make([]byte, udpBufSize)
	f.out.SetReadDeadline(time.Now().Add(p.idle))
	for {
		n, err := f.out.Read(buf)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue // nothing listens in the container (yet)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) && p.stillActive(from, f) {
				continue
			}
			p.forget(from, f)
			return // idle, closed, or broken
		}
		p.mu.Lock()
		f.last = time.Now()
		p.mu.Unlock()
		f.out.SetReadDeadline(time.Now().Add(p.idle))
		if _, err := p.pc.WriteToUDPAddrPort(buf[:n], from); errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// stillActive reports whether the client sent within the idle time (then
// the deadline moves on); false ends the flow, under the same lock that
// flow() hands it out, so a datagram is never written to a closed flow.
func (p *udpProxy) stillActive(from netip.AddrPort, f *udpFlow) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return false
	}
	if until := f.last.Add(p.idle); time.Now().Before(until) {
		f.out.SetReadDeadline(until)
		return true
	}
	if p.flows[from] == f {
		delete(p.flows, from)
	}
	return false
}

func (p *udpProxy) forget(from netip.AddrPort, f *udpFlow) {
	p.mu.Lock()
	if p.flows[from] == f {
		delete(p.flows, from)
	}
	p.mu.Unlock()
}

// flowCount is the number of open flows (tests).
func (p *udpProxy) flowCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.flows)
}

func (p *udpProxy) stop() {
	p.pc.Close()
	p.mu.Lock()
	p.done = true
	for _, f := range p.flows {
		f.out.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
