package firewall

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/testreq"
)

// topo is the test world, every part in a namespace of its own:
//
//	outside (203.0.113.2/24, .3/24) --- veth --- host (203.0.113.1/24, ip_forward=1)
//	host: br-a 198.51.100.1/26   <- c1 .2, c2 .3, cm eth0 .4
//	      br-b 198.51.100.65/26  <- c3 .66,       cm eth1 .67
type topo struct {
	t                         *testing.T
	host, out, c1, c2, c3, cm string // namespace names under /var/run/netns
}

func (tp *topo) path(ns string) string { return "/var/run/netns/" + ns }

var (
	addrC1   = "198.51.100.2"
	addrC2   = "198.51.100.3"
	addrC3   = "198.51.100.66"
	addrCMa  = "198.51.100.4"
	addrCMb  = "198.51.100.67"
	addrHost = "203.0.113.1"
	addrOut  = "203.0.113.2"
	addrOut2 = "203.0.113.3"

	netA = Network{ID: "net-a", Bridge: "br-a", Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/26")}, ICC: true, Masquerade: true}
	netB = Network{ID: "net-b", Bridge: "br-b", Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.64/26")}, ICC: true, Masquerade: true}
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testreq.Skip(t, "needs root: creates network namespaces and nftables rules")
	}
}

func newTopo(t *testing.T) *topo {
	t.Helper()
	needRoot(t)
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	tok := hex.EncodeToString(b)
	tp := &topo{t: t}
	names := []string{"host", "out", "c1", "c2", "c3", "cm"}
	ptrs := []*string{&tp.host, &tp.out, &tp.c1, &tp.c2, &tp.c3, &tp.cm}
	for i, n := range names {
		*ptrs[i] = "vxfw-" + tok + "-" + n
		path := tp.path(*ptrs[i])
		t.Cleanup(func() {
			if err := netns.Delete(path); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
		if err := netns.Create(path); err != nil {
			t.Fatal(err)
		}
	}
	// Deleting the namespaces removes every link, address, route and nft
	// table inside them.
	tp.ip(tp.host, "link", "add", "br-a", "type", "bridge")
	tp.ip(tp.host, "link", "add", "br-b", "type", "bridge")
	tp.ip(tp.host, "addr", "add", "198.51.100.1/26", "dev", "br-a")
	tp.ip(tp.host, "addr", "add", "198.51.100.65/26", "dev", "br-b")
	tp.ip(tp.host, "link", "set", "br-a", "up")
	tp.ip(tp.host, "link", "set", "br-b", "up")
	tp.sh(tp.host, "sysctl", "-qw", "net.ipv4.ip_forward=1")

	tp.ip(tp.host, "link", "add", "h-out", "type", "veth", "peer", "name", "eth0", "netns", tp.out)
	tp.ip(tp.host, "addr", "add", addrHost+"/24", "dev", "h-out")
	tp.ip(tp.host, "link", "set", "h-out", "up")
	tp.ip(tp.out, "addr", "add", addrOut+"/24", "dev", "eth0")
	tp.ip(tp.out, "addr", "add", addrOut2+"/24", "dev", "eth0")
	tp.ip(tp.out, "link", "set", "eth0", "up")
	// The outside can route to container subnets, so a missing masquerade
	// or a missing inbound filter is visible.
	tp.ip(tp.out, "route", "add", "198.51.100.0/24", "via", addrHost)

	tp.attach(tp.c1, "v-c1", "eth0", "br-a", addrC1+"/26", "198.51.100.1")
	tp.attach(tp.c2, "v-c2", "eth0", "br-a", addrC2+"/26", "198.51.100.1")
	tp.attach(tp.c3, "v-c3", "eth0", "br-b", addrC3+"/26", "198.51.100.65")
	tp.attach(tp.cm, "v-cma", "eth0", "br-a", addrCMa+"/26", "198.51.100.1")
	tp.attach(tp.cm, "v-cmb", "eth1", "br-b", addrCMb+"/26", "")
	return tp
}

// attach connects container namespace ns to bridge br with a veth.
func (tp *topo) attach(ns, hostEnd, ctrEnd, br, cidr, gw string) {
	tp.ip(tp.host, "link", "add", hostEnd, "type", "veth", "peer", "name", ctrEnd, "netns", ns)
	tp.ip(tp.host, "link", "set", hostEnd, "master", br)
	tp.ip(tp.host, "link", "set", hostEnd, "up")
	tp.ip(ns, "addr", "add", cidr, "dev", ctrEnd)
	tp.ip(ns, "link", "set", ctrEnd, "up")
	if gw != "" {
		tp.ip(ns, "route", "add", "default", "via", gw)
	}
}

func (tp *topo) ip(ns string, args ...string) {
	tp.t.Helper()
	tp.sh("", append([]string{"ip", "-n", ns}, args...)...)
}

// sh runs a command in namespace ns ("" = the command handles it).
func (tp *topo) sh(ns string, args ...string) string {
	tp.t.Helper()
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tp.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ping reports whether one echo from ns to addr is answered within a
// second. want=true retries up to three times (first packets may race ARP).
func (tp *topo) ping(ns, addr string, want bool) bool {
	tries := 1
	if want {
		tries = 3
	}
	for range tries {
		if exec.Command("ip", "netns", "exec", ns, "ping", "-n", "-q", "-c1", "-W1", addr).Run() == nil {
			return true
		}
	}
	return false
}

func (tp *topo) mustPing(ns, addr string) {
	tp.t.Helper()
	if !tp.ping(ns, addr, true) {
		tp.t.Fatalf("ping %s -> %s failed, want success", ns, addr)
	}
}

func (tp *topo) mustNotPing(ns, addr string) {
	tp.t.Helper()
	if tp.ping(ns, addr, false) {
		tp.t.Fatalf("ping %s -> %s succeeded, want failure", ns, addr)
	}
}

func (tp *topo) firewall(opts Options) *Firewall {
	tp.t.Helper()
	opts.NetNS = tp.path(tp.host)
	f, err := New(opts)
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(func() {
		if err := f.Flush(context.Background()); err != nil {
			tp.t.Errorf("cleanup: %v", err)
		}
	})
	return f
}

func (tp *topo) apply(f *Firewall, cfg Config) {
	tp.t.Helper()
	if err := f.Apply(context.Background(), cfg); err != nil {
		tp.t.Fatal(err)
	}
}

// udpListen opens a UDP socket in namespace ns on addr (the socket stays in
// that namespace after netns.Do returns).
func (tp *topo) udpListen(ns, addr string) *net.UDPConn {
	tp.t.Helper()
	var c *net.UDPConn
	err := netns.Do(tp.path(ns), func() error {
		var err error
		ap := netip.MustParseAddrPort(addr)
		c, err = net.ListenUDP(udpNet(ap.Addr()), net.UDPAddrFromAddrPort(ap))
		return err
	})
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(func() { c.Close() })
	return c
}

// udpSend sends one datagram from ns (source address src, "" = any) to dst.
func (tp *topo) udpSend(ns, src, dst, msg string) {
	tp.t.Helper()
	err := netns.Do(tp.path(ns), func() error {
		var laddr *net.UDPAddr
		if src != "" {
			laddr = &net.UDPAddr{IP: net.ParseIP(src)}
		}
		ap := netip.MustParseAddrPort(dst)
		c, err := net.DialUDP(udpNet(ap.Addr()), laddr, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(msg))
		return err
	})
	if err != nil {
		tp.t.Fatal(err)
	}
}

func udpNet(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return "udp6"
	}
	return "udp4"
}

// udpRecv waits up to 500 ms for a datagram with payload msg and returns its
// source address, or false.
func udpRecv(t *testing.T, c *net.UDPConn, msg string) (netip.Addr, bool) {
	t.Helper()
	buf := make([]byte, 1500)
	deadline := time.Now().Add(500 * time.Millisecond)
	for range 100 {
		if err := c.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return netip.Addr{}, false
			}
			t.Fatal(err)
		}
		if string(buf[:n]) == msg {
			return from.Addr().Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// sourceSeenOutside sends a datagram from ns to the outside and returns the
// source address the outside saw (invalid if nothing arrived).
func (tp *topo) sourceSeenOutside(ns, msg string) netip.Addr {
	tp.t.Helper()
	l := tp.udpListen(tp.out, addrOut+":0")
	defer l.Close()
	tp.udpSend(ns, "", l.LocalAddr().String(), msg)
	a, _ := udpRecv(tp.t, l, msg)
	return a
}

func TestNftRunsInNamespace(t *testing.T) {
	tp := newTopo(t)
	table := "t" + strings.TrimSuffix(strings.TrimPrefix(tp.host, "vxfw-"), "-host") // unique per run
	f := tp.firewall(Options{Table: table})
	tp.apply(f, Config{Networks: []Network{netA}})
	if out := tp.sh(tp.host, "nft", "list", "tables"); !strings.Contains(out, "table inet "+table) {
		t.Fatalf("table not in the test host namespace: %q", out)
	}
	// The machine's own namespace must not have it (nft ran in the test
	// namespace although knftables forks it from our goroutine).
	out, _ := exec.Command("nft", "list", "table", "inet", table).CombinedOutput()
	if !strings.Contains(string(out), "No such file") {
		t.Fatalf("table leaked into the root namespace? %s", out)
	}
}

func TestMasquerade(t *testing.T) {
	tp := newTopo(t)
	f := tp.firewall(Options{})

	tp.apply(f, Config{Networks: []Network{netA, netB}})
	if got := tp.sourceSeenOutside(tp.c1, "m1"); got != netip.MustParseAddr(addrHost) {
		t.Fatalf("masquerade on: outside saw source %v, want %s", got, addrHost)
	}
	tp.mustPing(tp.c1, addrOut)

	noMasq := netA
	noMasq.Masquerade = false
	tp.apply(f, Config{Networks: []Network{noMasq, netB}})
	if got := tp.sourceSeenOutside(tp.c1, "m2"); got != netip.MustParseAddr(addrC1) {
		t.Fatalf("masquerade off: outside saw source %v, want %s", got, addrC1)
	}
	// net-b is still masqueraded.
	if got := tp.sourceSeenOutside(tp.c3, "m3"); got != netip.MustParseAddr(addrHost) {
		t.Fatalf("other network: outside saw source %v, want %s", got, addrHost)
	}
}

func TestIsolation(t *testing.T) {
	tp := newTopo(t)
	f := tp.firewall(Options{})

	tp.mustPing(tp.c1, addrC3) // routed between bridges before we act
	tp.apply(f, Config{Networks: []Network{netA, netB}})
	tp.mustNotPing(tp.c1, addrC3)
	tp.mustNotPing(tp.c3, addrC1)
	// A container on both networks reaches both.
	tp.mustPing(tp.cm, addrC1)
	tp.mustPing(tp.cm, addrC3)
	// Each network still reaches the outside.
	tp.mustPing(tp.c1, addrOut)
	tp.mustPing(tp.c3, addrOut)

	// Forget net-b: its isolation goes with it.
	tp.apply(f, Config{Networks: []Network{netA}})
	tp.mustPing(tp.c1, addrC3)
}

func TestICC(t *testing.T) {
	tp := newTopo(t)
	f := tp.firewall(Options{})
	tp.sh(tp.host, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")

	noICC := netA
	noICC.ICC = false
	tp.mustPing(tp.c1, addrC2)
	tp.apply(f, Config{Networks: []Network{noICC, netB}})
	tp.mustNotPing(tp.c1, addrC2)
	tp.mustNotPing(tp.c2, addrC1)
	tp.mustPing(tp.c1, "198.51.100.1") // the gateway is the host, not a peer
	tp.mustPing(tp.c1, addrOut)
	tp.mustPing(tp.c3, addrCMb) // other networks keep ICC

	tp.apply(f, Config{Networks: []Network{netA, netB}})
	tp.mustPing(tp.c1, addrC2)
}

func TestICCNeedsBridgeNetfilter(t *testing.T) {
	tp := newTopo(t)
	tp.sh(tp.host, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0")
	noICC := netA
	noICC.ICC = false
	cfg := Config{Networks: []Network{noICC}}

	f := tp.firewall(Options{})
	if err := f.Apply(context.Background(), cfg); !errors.Is(err, ErrBridgeNetfilter) {
		t.Fatalf("apply: got %v, want ErrBridgeNetfilter", err)
	}
	// This is why: the switched traffic never meets our rules.
	tp.mustPing(tp.c1, addrC2)

	f2 := tp.firewall(Options{EnableBridgeNetfilter: true})
	tp.apply(f2, cfg)
	tp.mustNotPing(tp.c1, addrC2)
}

func TestInternal(t *testing.T) {
	tp := newTopo(t)
	f := tp.firewall(Options{})

	tp.mustPing(tp.c1, addrOut)
	internal := netA
	internal.Internal = true
	tp.apply(f, Config{Networks: []Network{internal, netB}})
	tp.mustNotPing(tp.c1, addrOut)
	tp.mustNotPing(tp.out, addrC1)
	if got := tp.sourceSeenOutside(tp.c1, "i1"); got.IsValid() {
		t.Fatalf("internal network reached the outside from %v", got)
	}
	tp.mustPing(tp.c1, addrC2) // within the bridge is fine
	tp.mustPing(tp.c3, addrOut)

	tp.apply(f, Config{Networks: []Network{netA, netB}})
	tp.mustPing(tp.c1, addrOut)
}

func TestNoUnsolicitedInbound(t *testing.T) {
	tp := newTopo(t)
	f := tp.firewall(Options{})

	tp.mustPing(tp.out, addrC1) // routed straight in before we act
	tp.apply(f, Config{Networks: []Network{netA, netB}})
	tp.mustNotPing(tp.out, addrC1)
	tp.mustPing(tp.c1, addrOut) // replies to our own flows come back

	noMasq := netA
	noMasq.Masquerade = false
	tp.apply(f, Config{Networks: []Network{noMasq, netB}})
	tp.mustNotPing(tp.out, addrC1)
	tp.mustPing(tp.c1, addrOut)
}

// vxlanMsg is a datagram as a VTEP sends it: the VXLAN header (I flag,
// vni) and then msg standing for the inner frame.
func vxlanMsg(vni uint32, msg string) string {
	h := []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
	return string(h) + msg
}

func TestVXLANFilter(t *testing.T) {
	tp := newTopo(t)
	f := tp.firewall(Options{})
	const port = 4789
	l := tp.udpListen(tp.host, fmt.Sprintf("0.0.0.0:%d", port))
	dst := fmt.Sprintf("%s:%d", addrHost, port)
	recv := func(src, msg string) bool {
		tp.udpSend(tp.out, src, dst, msg)
		_, ok := udpRecv(t, l, msg)
		return ok
	}

	if !recv(addrOut2, vxlanMsg(100, "v0")) {
		t.Fatal("datagram lost before any rules")
	}
	tp.apply(f, Config{Networks: []Network{netA}, VXLANPort: port,
		VXLANPeers: []VXLANPeer{{netip.MustParseAddr(addrOut), 100}, {netip.MustParseAddr(addrOut2), 200}, {netip.MustParseAddr("2001:db8::9"), 100}}})
	if !recv(addrOut, vxlanMsg(100, "v1")) {
		t.Fatal("datagram from a member vtep on its vni dropped")
	}
	if recv(addrOut, vxlanMsg(200, "v1b")) {
		t.Fatal("datagram from a member vtep on a vni it does not take part in arrived")
	}
	if !recv(addrOut2, vxlanMsg(200, "v1c")) {
		t.Fatal("datagram from the other member vtep on its vni dropped")
	}
	if recv(addrOut2, vxlanMsg(100, "v2")) {
		t.Fatal("datagram from a vtep on another vni arrived")
	}
	if recv(addrOut, "v2b") {
		t.Fatal("datagram too short for a vxlan header arrived")
	}
	// Other ports are not filtered.
	l2 := tp.udpListen(tp.host, "0.0.0.0:0")
	tp.udpSend(tp.out, addrOut2, fmt.Sprintf("%s:%d", addrHost, l2.LocalAddr().(*net.UDPAddr).Port), "v3")
	if _, ok := udpRecv(t, l2, "v3"); !ok {
		t.Fatal("datagram to another port dropped")
	}

	tp.apply(f, Config{Networks: []Network{netA}}) // filter off
	if !recv(addrOut2, vxlanMsg(100, "v4")) {
		t.Fatal("datagram dropped after the filter was removed")
	}
}

// The VXLAN filter with IPv6 VTEPs (an IPv6 underlay): a member's
// datagrams on its VNI arrive, on another VNI or from a non-member address
// they do not.
func TestVXLANFilterIPv6(t *testing.T) {
	tp := newTopo(t)
	f := tp.firewall(Options{})
	const port = 4789
	tp.ip(tp.host, "-6", "addr", "add", "2001:db8:7::1/64", "dev", "h-out", "nodad")
	tp.ip(tp.out, "-6", "addr", "add", "2001:db8:7::9/64", "dev", "eth0", "nodad")
	tp.ip(tp.out, "-6", "addr", "add", "2001:db8:7::10/64", "dev", "eth0", "nodad")
	l := tp.udpListen(tp.host, fmt.Sprintf("[2001:db8:7::1]:%d", port))
	dst := fmt.Sprintf("[2001:db8:7::1]:%d", port)
	recv := func(src, msg string) bool {
		tp.udpSend(tp.out, src, dst, msg)
		_, ok := udpRecv(t, l, msg)
		return ok
	}
	if !recv("2001:db8:7::10", vxlanMsg(100, "w0")) {
		t.Fatal("IPv6 datagram lost before any rules")
	}
	tp.apply(f, Config{Networks: []Network{netA}, VXLANPort: port,
		VXLANPeers: []VXLANPeer{{netip.MustParseAddr("2001:db8:7::9"), 100}, {netip.MustParseAddr(addrOut), 200}}})
	if !recv("2001:db8:7::9", vxlanMsg(100, "w1")) {
		t.Fatal("datagram from a member IPv6 vtep on its vni dropped")
	}
	if recv("2001:db8:7::9", vxlanMsg(200, "w2")) {
		t.Fatal("datagram from a member IPv6 vtep on another vni arrived")
	}
	if recv("2001:db8:7::10", vxlanMsg(100, "w3")) {
		t.Fatal("datagram from a non-member IPv6 address arrived")
	}
}

// Containers on a vxnet bridge cannot open TCP connections to the host's
// control ports, on the bridge's gateway address or any other host
// address, while the underlay still can and other ports stay open.
func TestControlPorts(t *testing.T) {
	tp := newTopo(t)
	f := tp.firewall(Options{})
	ctl := tp.tcpListen(tp.host, "0.0.0.0:0")
	other := tp.tcpListen(tp.host, "0.0.0.0:0")
	ctlPort := ctl.Addr().(*net.TCPAddr).Port
	otherPort := other.Addr().(*net.TCPAddr).Port
	hostAddrs := []string{"198.51.100.1", addrHost}
	for _, a := range hostAddrs {
		if !tp.tcpConnects(tp.c1, a, ctlPort) {
			t.Fatalf("container cannot reach %s:%d before any rules", a, ctlPort)
		}
	}
	tp.apply(f, Config{Networks: []Network{netA, netB}, ControlPorts: []int{ctlPort}})
	for _, a := range hostAddrs {
		if tp.tcpConnects(tp.c1, a, ctlPort) {
			t.Errorf("container reached the control port %s:%d", a, ctlPort)
		}
		if !tp.tcpConnects(tp.c1, a, otherPort) {
			t.Errorf("container cannot reach another port %s:%d", a, otherPort)
		}
	}
	if tp.tcpConnects(tp.c3, "198.51.100.65", ctlPort) {
		t.Error("container on the second bridge reached the control port")
	}
	if !tp.tcpConnects(tp.out, addrHost, ctlPort) {
		t.Error("the underlay cannot reach the control port")
	}
}

// tcpListen listens on addr inside ns, accepting and closing connections.
func (tp *topo) tcpListen(ns, addr string) net.Listener {
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
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tp.t.Cleanup(func() { l.Close() })
	return l
}

// tcpConnects reports whether a TCP connection from ns to addr:port opens
// within a second.
func (tp *topo) tcpConnects(ns, addr string, port int) bool {
	tp.t.Helper()
	ok := false
	err := netns.Do(tp.path(ns), func() error {
		c, err := net.DialTimeout("tcp4", net.JoinHostPort(addr, strconv.Itoa(port)), time.Second)
		if err == nil {
			ok = true
			c.Close()
		}
		return nil
	})
	if err != nil {
		tp.t.Fatal(err)
	}
	return ok
}

func TestLifecycle(t *testing.T) {
	tp := newTopo(t)
	// Somebody else's rules in the same namespace.
	tp.sh(tp.host, "nft", "add table inet other; add chain inet other c { type filter hook forward priority 10; policy accept; }; add rule inet other c ip daddr 192.0.2.99 drop comment \"not vxnet\"")
	tp.sh(tp.host, "nft", "add table ip vxnet") // same name, other family: not ours
	foreign := func() string {
		out := tp.sh(tp.host, "nft", "list", "table", "inet", "other")
		return out + tp.sh(tp.host, "nft", "list", "table", "ip", "vxnet")
	}
	before := foreign()

	f := tp.firewall(Options{})
	ctx := context.Background()
	cfg := Config{Networks: []Network{netA, netB}, VXLANPort: 4789}
	tp.apply(f, cfg)
	list := func() string { return tp.sh(tp.host, "nft", "list", "table", "inet", "vxnet") }
	first := list()
	tp.apply(f, cfg)
	if second := list(); second != first {
		t.Fatalf("second apply changed the table:\n%s\n---\n%s", first, second)
	}
	tp.mustNotPing(tp.c1, addrC3)
	tp.mustPing(tp.c1, addrOut)

	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if out := tp.sh(tp.host, "nft", "list", "tables"); strings.Contains(out, "inet vxnet") {
		t.Fatalf("table left after flush: %s", out)
	}
	tp.mustPing(tp.c1, addrC3)
	if err := f.Flush(ctx); err != nil {
		t.Fatalf("second flush: %v", err)
	}
	if after := foreign(); after != before {
		t.Fatalf("foreign tables changed:\n%s\n---\n%s", before, after)
	}
}
