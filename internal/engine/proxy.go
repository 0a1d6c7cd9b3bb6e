package engine

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// The userland proxy for IPv6 loopback. IPv6 has no route_localnet: a
// packet from ::1 rewritten by DNAT towards a container is dropped, so
// ports published on ::1 (-p [::1]:8080:80), and TCP ports published on
// every address (which Docker also serves on [::1]), are served by a TCP
// proxy in the daemon, as Docker's docker-proxy does: it listens on
// [::1]:PORT in the daemon's namespace and relays each connection to the
// container's address (IPv6 if it has one on the published network, else
// IPv4). The proxies are a function of the held ports, reconciled after
// every firewall apply (also at start, so they come back after a restart);
// a proxy that goes away closes its listener and its connections.

type proxyTarget struct {
	to       netip.AddrPort
	explicit bool // published on ::1 itself (failing to listen is worth a warning)
}

type proxySet struct {
	mu sync.Mutex
	m  map[netip.AddrPort]*proxy // by listen address
}

type proxy struct {
	to    netip.AddrPort
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
	done  bool
}

// proxiesLocked is the set of proxies the held ports want.
func (e *Engine) proxiesLocked() map[netip.AddrPort]proxyTarget {
	out := map[netip.AddrPort]proxyTarget{}
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
			if m.Port.Proto != "tcp" || !(explicit || !m.HostIP.IsValid()) {
				continue
			}
			out[netip.AddrPortFrom(netip.IPv6Loopback(), m.HostPort)] = proxyTarget{to: netip.AddrPortFrom(to, m.Port.Num), explicit: explicit}
		}
	}
	return out
}

// reconcileProxies starts the wanted proxies that do not run and stops
// the others. Callers are serialised by the firewall applier's lock.
func (e *Engine) reconcileProxies(want map[netip.AddrPort]proxyTarget) {
	ps := &e.proxies
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.m == nil {
		ps.m = map[netip.AddrPort]*proxy{}
	}
	for at, p := range ps.m {
		if w, ok := want[at]; !ok || w.to != p.to {
			p.stop()
			delete(ps.m, at)
		}
	}
	if e.ctx.Err() != nil {
		return
	}
	for at, w := range want {
		if _, ok := ps.m[at]; ok {
			continue
		}
		ln, err := net.Listen("tcp6", at.String())
		if err != nil {
			if w.explicit {
				e.log.Warn("userland proxy for a port published on ::1", "listen", at, "err", err)
			} else {
				e.log.Debug("userland proxy on ::1 for a port published on every address", "listen", at, "err", err)
			}
			continue
		}
		p := &proxy{to: w.to, ln: ln, conns: map[net.Conn]bool{}}
		ps.m[at] = p
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			p.serve()
		}()
	}
}

// stopProxies closes every proxy (at Close).
func (e *Engine) stopProxies() {
	e.reconcileProxies(nil)
}

func (p *proxy) serve() {
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
func (p *proxy) track(c net.Conn, add bool) bool {
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

func (p *proxy) relay(in net.Conn) {
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

func (p *proxy) stop() {
	p.ln.Close()
	p.mu.Lock()
	p.done = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}
