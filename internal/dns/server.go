package dns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netlink"

	"github.com/vxnet/vxnet/internal/netns"
)

// Options configures a Server.
type Options struct {
	// Upstreams are the daemon's --dns servers; empty means the
	// nameservers of HostResolvConf.
	Upstreams []netip.AddrPort
	// HostResolvConf is the host's resolver file (default
	// /etc/resolv.conf), read again when it changes.
	HostResolvConf string
	// Timeout is how long one upstream gets for one query (default 2 s).
	Timeout time.Duration
	// MaxForwarding bounds the forwarded queries in flight (default 256);
	// beyond it queries get SERVFAIL at once.
	MaxForwarding int
	Logger        *slog.Logger
	// Listen opens the server's sockets for a sandbox; the default opens
	// them at 127.0.0.11:53 inside the sandbox's namespace.
	Listen func(sb Sandbox) (net.PacketConn, net.Listener, error)

	exchange exchangeFunc
}

// Server is the embedded DNS server of one daemon.
type Server struct {
	opts Options
	log  *slog.Logger
	ix   atomic.Pointer[index]
	sem  chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	kick   chan struct{}
	wg     sync.WaitGroup

	mu        sync.Mutex
	listeners map[string]*listener // by sandbox ID, owned by the loop
	failed    map[string]error     // last open error, by sandbox ID
	changed   chan struct{}        // closed and replaced when listeners change

	hostMu   sync.Mutex
	hostMod  time.Time
	hostSize int64
	hostUps  []netip.AddrPort
}

type listener struct {
	netnsPath string
	addr      netip.Addr
	udp, tcp  *mdns.Server
}

// New starts a server with no sandboxes.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HostResolvConf == "" {
		opts.HostResolvConf = "/etc/resolv.conf"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.MaxForwarding <= 0 {
		opts.MaxForwarding = 256
	}
	if opts.Listen == nil {
		opts.Listen = listenInNetns
	}
	s := &Server{
		opts: opts, log: opts.Logger, sem: make(chan struct{}, opts.MaxForwarding),
		kick: make(chan struct{}, 1), listeners: map[string]*listener{}, failed: map[string]error{},
		changed: make(chan struct{}),
	}
	s.ix.Store(buildIndex(Config{}))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.loop()
	return s
}

// Set replaces the whole desired state. Queries see it at once; sockets
// of new sandboxes open (and of gone ones close) soon after, see Ready.
// It does no I/O and may be called under the caller's locks.
func (s *Server) Set(cfg Config) {
	s.ix.Store(buildIndex(cfg))
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Ready waits until the server listens in sandbox id's namespace, and
// returns the error of the last attempt if opening the sockets failed.
func (s *Server) Ready(ctx context.Context, id string) error {
	for {
		s.mu.Lock()
		_, ok := s.listeners[id]
		err := s.failed[id]
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		if err != nil {
			return err
		}
		if _, wanted := s.ix.Load().sandboxes[id]; !wanted {
			return fmt.Errorf("dns: sandbox %.12s is not served", id)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Reopen closes the sockets of a sandbox whose namespace was re-created
// at the same path, so they are opened again in the new one.
func (s *Server) Reopen(id string) {
	s.mu.Lock()
	l, ok := s.listeners[id]
	delete(s.listeners, id)
	s.mu.Unlock()
	if ok {
		l.stop()
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Serving returns the IDs of the sandboxes with open sockets.
func (s *Server) Serving() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id := range s.listeners {
		out = append(out, id)
	}
	return out
}

// Close stops every listener and the loop.
func (s *Server) Close() {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, l := range s.listeners {
		l.stop()
		delete(s.listeners, id)
	}
}

// loop reconciles the open sockets with the desired sandboxes. Failed
// opens are retried every second.
func (s *Server) loop() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		retry := s.reconcile()
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
			if !retry {
				// Nothing failed: wait for a change.
				select {
				case <-s.ctx.Done():
					return
				case <-s.kick:
				}
			}
		}
	}
}

// reconcile opens and closes sockets; it reports whether some open failed.
func (s *Server) reconcile() bool {
	want := s.ix.Load().sandboxes
	s.mu.Lock()
	var stale []*listener
	for id, l := range s.listeners {
		if sb, ok := want[id]; !ok || sb.netnsPath != l.netnsPath || sb.addr != l.addr {
			stale = append(stale, l)
			delete(s.listeners, id)
		}
	}
	for id := range s.failed {
		if _, ok := want[id]; !ok {
			delete(s.failed, id)
		}
	}
	var open []string
	for id := range want {
		if _, ok := s.listeners[id]; !ok {
			open = append(open, id)
		}
	}
	s.mu.Unlock()
	for _, l := range stale {
		l.stop()
	}
	failed := false
	for _, id := range open {
		sb := want[id]
		l, err := s.start(Sandbox{ID: id, NetnsPath: sb.netnsPath, Addr: sb.addr})
		s.mu.Lock()
		if err != nil {
			failed = true
			if s.failed[id] == nil {
				s.log.Warn("dns: listen in sandbox", "sandbox", id[:min(12, len(id))], "err", err)
			}
			s.failed[id] = err
		} else {
			delete(s.failed, id)
			s.listeners[id] = l
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return failed
}

func (s *Server) start(sb Sandbox) (*listener, error) {
	pc, ln, err := s.opts.Listen(sb)
	if err != nil {
		return nil, err
	}
	h := handler{s: s, sbID: sb.ID}
	l := &listener{netnsPath: sb.NetnsPath, addr: sb.Addr,
		udp: &mdns.Server{PacketConn: pc, Handler: h, UDPSize: mdns.DefaultMsgSize},
		tcp: &mdns.Server{Listener: ln, Handler: h, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second},
	}
	var started sync.WaitGroup
	for _, srv := range []*mdns.Server{l.udp, l.tcp} {
		started.Add(1)
		srv.NotifyStartedFunc = started.Done
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				s.log.Debug("dns: server ended", "err", err)
			}
		}()
	}
	started.Wait()
	return l, nil
}

func (l *listener) stop() {
	l.udp.Shutdown()
	l.tcp.Shutdown()
}

// listenInNetns opens UDP and TCP sockets at the sandbox's address
// (127.0.0.11) port 53 on a thread inside the sandbox's namespace; an
// address outside 127.0.0.0/8 is first added to the loopback interface.
func listenInNetns(sb Sandbox) (net.PacketConn, net.Listener, error) {
	var pc net.PacketConn
	var ln net.Listener
	ip := sb.Addr
	if !ip.IsValid() {
		ip = Addr
	}
	err := netns.Do(sb.NetnsPath, func() error {
		if !ip.IsLoopback() {
			if err := addLoopback(ip); err != nil {
				return err
			}
		}
		var err error
		addr := netip.AddrPortFrom(ip, 53).String()
		if pc, err = net.ListenPacket("udp4", addr); err != nil {
			return err
		}
		if ln, err = net.Listen("tcp4", addr); err != nil {
			pc.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("dns: listen in %s: %w", sb.NetnsPath, err)
	}
	return pc, ln, nil
}

// defaultUpstreams are the daemon's --dns servers, else the host's
// nameservers (re-read when the file changes).
func (s *Server) defaultUpstreams() []netip.AddrPort {
	if len(s.opts.Upstreams) > 0 {
		return s.opts.Upstreams
	}
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	fi, err := os.Stat(s.opts.HostResolvConf)
	if err != nil {
		s.hostUps = nil
		return nil
	}
	if fi.ModTime().Equal(s.hostMod) && fi.Size() == s.hostSize {
		return s.hostUps
	}
	data, err := os.ReadFile(s.opts.HostResolvConf)
	if err != nil {
		return s.hostUps
	}
	s.hostMod, s.hostSize = fi.ModTime(), fi.Size()
	s.hostUps = nil
	for _, a := range Nameservers(data) {
		s.hostUps = append(s.hostUps, netip.AddrPortFrom(a, 53))
	}
	return s.hostUps
}

// Nameservers returns the nameserver addresses of a resolv.conf.
func Nameservers(data []byte) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			// A zone (fe80::1%eth0) is dropped: it names a host link.
			if a, err := netip.ParseAddr(f[1]); err == nil && a.Zone() == "" {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// ParseUpstream parses a --dns value (an IP address) into an upstream.
func ParseUpstream(s string) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, errors.New(s + " is not an ip address")
	}
	return netip.AddrPortFrom(a.Unmap(), 53), nil
}

// addLoopback adds ip/32 to lo in the current namespace and sets lo up.
func addLoopback(ip netip.Addr) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}}
	if err := netlink.AddrReplace(lo, a); err != nil {
		return fmt.Errorf("add %s to lo: %w", ip, err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}
