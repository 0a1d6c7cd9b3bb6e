package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"github.com/vxnet/vxnet/internal/netns"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/vxnet/vxnet/internal/harness"
)

// ovCluster starts n hosts as one cluster on host 0's embedded etcd
// (host 0 --cluster-init, the others --cluster-join it), each advertising
// its underlay address, with a 2 s node TTL and a 2 s overlay resync.
func ovCluster(t *testing.T, n int) *harness.Cluster {
	t.Helper()
	return ovClusterWith(t, n, nil)
}

// ovClusterWith is ovCluster with more daemon flags per host (more may be
// nil).
func ovClusterWith(t *testing.T, n int, more func(h *harness.Host) []string) *harness.Cluster {
	t.Helper()
	c := harness.New(t, harness.Options{Hosts: n, DaemonArgs: func(i int, h *harness.Host) []string {
		args := []string{"--advertise-addr", h.Addr.String(), "--node-ttl", "2s", "--resync-interval", "2s"}
		if more != nil {
			args = append(args, more(h)...)
		}
		if i == 0 {
			return append(args, "--cluster-init")
		}
		return append(args, h.JoinArgs(0)...)
	}})
	for _, h := range c.Hosts {
		h.Start()
	}
	return c
}

// ovPeer is a row of inspect -v's peer table.
type ovPeer struct{ IP, MAC, VTEP, Node, Status string }

// ovNet is what the overlay tests read from `network inspect -v`.
type ovNet struct {
	ID, Name string
	IPAM     struct {
		Config []struct{ Subnet, Gateway string }
	}
	VXNet struct {
		VNI                    int
		Namespace              string
		Peers                  []ovPeer
		KernelFDB, KernelNeigh []string
		LastError, KernelError string
	}
}

// ovInspect returns `network inspect -v name` on h.
func ovInspect(t *testing.T, h *harness.Host, name string) ovNet {
	t.Helper()
	var v []ovNet
	if err := json.Unmarshal([]byte(cli(t, h, "network", "inspect", "-v", name)), &v); err != nil || len(v) != 1 {
		t.Fatalf("network inspect -v %s on %s: %v", name, h.Name, err)
	}
	return v[0]
}

// ovKernel returns the FDB ("MAC dst VTEP" lines) and neighbour entries
// of vxlan0 in an overlay namespace, read with bridge/ip inside it.
func ovKernel(t *testing.T, h *harness.Host, nsPath string) (fdb, neigh string) {
	t.Helper()
	fdb, _ = h.Exec("nsenter", "--net="+nsPath, "bridge", "fdb", "show", "dev", "vxlan0")
	neigh, _ = h.Exec("nsenter", "--net="+nsPath, "ip", "neigh", "show", "dev", "vxlan0")
	return fdb, neigh
}

// ovRun starts a sleeping busybox container on network net of h.
func ovRun(t *testing.T, h *harness.Host, name, net string, extra ...string) {
	t.Helper()
	args := append([]string{"run", "-d", "--name", name, "--net", net}, extra...)
	cli(t, h, append(args, "busybox", "sleep", "1d")...)
}

// ovPingAll has ctr on h ping every destination once, in one exec, and
// returns the destinations that did not answer (nil if all did).
func ovPingAll(t *testing.T, h *harness.Host, ctr string, dsts []string) []string {
	t.Helper()
	script := `for d in "$@"; do ping -c1 -W1 "$d" >/dev/null 2>&1 || ping -c1 -W2 "$d" >/dev/null 2>&1 || echo "$d"; done`
	out, errOut, code := h.CLI(append([]string{"exec", ctr, "sh", "-c", script, "sh"}, dsts...)...)
	if code != 0 {
		t.Errorf("exec %s on %s: exit %d: %s", ctr, h.Name, code, errOut)
		return dsts
	}
	return strings.Fields(out)
}

// ovParallel runs fn(i) for i in [0, n) with at most limit at once.
func ovParallel(n, limit int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, limit)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

// ovMAC is Docker's MAC for an IPv4 address: 02:42 and the address bytes.
func ovMAC(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// ovPid returns the process ID of a running container (from inspect).
func ovPid(t *testing.T, h *harness.Host, ctr string) int {
	t.Helper()
	var v []struct{ State struct{ Pid int } }
	if err := json.Unmarshal([]byte(cli(t, h, "inspect", ctr)), &v); err != nil || len(v) != 1 || v[0].State.Pid == 0 {
		t.Fatalf("inspect %s: no pid (%v)", ctr, err)
	}
	return v[0].State.Pid
}

// ovBroadcast returns the broadcast address of an IPv4 subnet.
func ovBroadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

// ovVXLAN builds a VXLAN packet payload (what goes after the outer UDP
// header): the VXLAN header with the I flag and vni, then an Ethernet frame
// from srcMAC to dstMAC carrying an IPv4/UDP datagram src:sport ->
// dst:dport with payload, both checksums computed.
func ovVXLAN(vni uint32, dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	udpLen := 8 + len(payload)
	ipLen := 20 + udpLen
	b := make([]byte, 8+14+ipLen)
	// VXLAN: flags (I), 3 reserved, VNI (24 bits), 1 reserved.
	b[0] = 0x08
	binary.BigEndian.PutUint32(b[4:8], vni<<8)
	eth := b[8:]
	copy(eth[0:6], dstMAC)
	copy(eth[6:12], srcMAC)
	binary.BigEndian.PutUint16(eth[12:14], 0x0800)
	ip := eth[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(ipLen))
	binary.BigEndian.PutUint16(ip[4:6], 0x1234)
	binary.BigEndian.PutUint16(ip[6:8], 0x4000) // DF
	ip[8], ip[9] = 64, 17
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:12], ovChecksum(0, ip[:20]))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:2], sport)
	binary.BigEndian.PutUint16(udp[2:4], dport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(udpLen))
	copy(udp[8:], payload)
	pseudo := make([]byte, 12)
	copy(pseudo[0:4], s4[:])
	copy(pseudo[4:8], d4[:])
	pseudo[9] = 17
	binary.BigEndian.PutUint16(pseudo[10:12], uint16(udpLen))
	sum := ovChecksum(ovSum(0, pseudo), udp)
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:8], sum)
	return b
}

func ovSum(acc uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	return acc
}

// ovChecksum is the Internet checksum of b, starting from a partial sum.
func ovChecksum(acc uint32, b []byte) uint16 {
	acc = ovSum(acc, b)
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return ^uint16(acc)
}

// ovSendUDP sends one UDP datagram to dst from a socket made inside the
// namespace at nsPath (so the datagram leaves with that namespace's
// address).
func ovSendUDP(t *testing.T, nsPath string, dst netip.AddrPort, b []byte) {
	t.Helper()
	err := netns.Do(nsPath, func() error {
		conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write(b)
		return err
	})
	if err != nil {
		t.Fatalf("send UDP to %s from %s: %v", dst, nsPath, err)
	}
}

// ovUDPSink is a UDP socket bound inside a container's network namespace
// (the container itself has no UDP listener: busybox nc lacks -u) that
// records the payloads it receives.
type ovUDPSink struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  []string
	done chan struct{}
}

// ovListenUDP binds UDP port on every address of the namespace at nsPath;
// it is closed in t.Cleanup.
func ovListenUDP(t *testing.T, nsPath string, port int) *ovUDPSink {
	t.Helper()
	var conn *net.UDPConn
	err := netns.Do(nsPath, func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		return err
	})
	if err != nil {
		t.Fatalf("listen UDP %d in %s: %v", port, nsPath, err)
	}
	s := &ovUDPSink{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.got = append(s.got, string(buf[:n]))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-s.done })
	return s
}

// Received returns the payloads received so far.
func (s *ovUDPSink) Received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}
