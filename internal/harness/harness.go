// Package harness builds the test topology of DESIGN.md for end-to-end
// tests: a "switch" namespace with a bridge, N "host" namespaces on it, each
// able to run a vxnet daemon, and an "outside" namespace standing in for the
// internet.
//
//	switch netns: br-underlay --- veth --- host i netns  eth0 192.0.2.(10+i)/24, default via .254
//	                          --- veth --- outside netns eth0 192.0.2.254/24 + 203.0.113.1/24
//
// Every name and path it makes carries leakcheck.Marker() (namespaces
// "<marker><token>-h0", the cluster directory "/tmp/<marker><token>-..."),
// so a TestMain using Main (or leakcheck) sees what a test left behind.
//
// Daemons run with only their network namespace changed (nsenter --net, not
// "ip netns exec", which would also give them a private mount namespace):
// the namespace bind mounts a daemon makes under its exec root stay visible
// to the test and to the next daemon started on that host.
//
// Conventions a daemon must follow so the harness can clean up after it:
// every path it writes is under its --data-root or --exec-root, and its runc
// state directory is <exec-root>/RuncRoot.
//
// Teardown (a t.Cleanup, also when the test failed) kills every daemon,
// deletes the runc containers, kills every process left in one of the
// cluster's namespaces (host, outside, switch, and namespaces pinned under
// the cluster directory) or whose command line names the cluster directory,
// unmounts everything under the cluster directory, deletes the namespaces
// and removes the directory.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/leakcheck"
	"github.com/vxnet/vxnet/internal/testreq"
)

// RuncRoot is the daemon's runc state directory relative to its exec root
// (runc --root <exec-root>/runc). Teardown lists and deletes the containers
// found there.
const RuncRoot = "runc"

// Underlay addressing.
var (
	underlayPrefix = netip.MustParsePrefix("192.0.2.0/24")
	gatewayAddr    = netip.MustParseAddr("192.0.2.254")
	outsideAddr    = netip.MustParseAddr("203.0.113.1")
)

const (
	bridgeName  = "br-underlay"
	cmdTimeout  = 60 * time.Second
	startWait   = 20 * time.Second
	logTailSize = 60 // lines of daemon log printed for a failed test
)

// Options shape a cluster. The zero value is one host with MTU 1500 running
// the vxnet binary from Build.
type Options struct {
	// Hosts is the number of host namespaces (default 1).
	Hosts int
	// UnderlayMTU is the MTU of the underlay links (default 1500).
	UnderlayMTU int
	// DaemonArgs returns extra daemon arguments for host i, put before the
	// arguments given to Start (e.g. cluster flags naming host 0).
	DaemonArgs func(i int, h *Host) []string
	// Binary is the vxnet binary for daemons and CLI calls; "" means
	// Build(t) (which honours $VXNET_BIN), called on first use.
	Binary string
	// Env is added to the environment of daemons and CLI calls.
	Env []string
}

// NS is a named network namespace of the cluster.
type NS struct {
	Name string // ip netns name
	Path string // /run/netns/<Name>
}

// Exec runs a command inside the namespace (nsenter --net, so the mount
// namespace is the test's) with a 60 s timeout, returning its combined
// output and exit code (-1 if it could not run or timed out).
func (n *NS) Exec(args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + n.Path, "--"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), exitCode(err)
}

// MustExec is Exec failing the test on a non-zero exit.
func (n *NS) MustExec(t testing.TB, args ...string) string {
	t.Helper()
	out, code := n.Exec(args...)
	if code != 0 {
		t.Fatalf("in %s: %s: exit %d: %s", n.Name, strings.Join(args, " "), code, out)
	}
	return out
}

// Cluster is a test topology. Use it from the test goroutine.
type Cluster struct {
	// Hosts are the host namespaces, in order.
	Hosts []*Host
	// Dir is the cluster directory; each host has a subdirectory.
	Dir string

	t       *testing.T
	opts    Options
	token   string
	tokenMu sync.Mutex // the join token file (Host.JoinArgs)
	sw      *NS
	outside *NS
	// namespaces made so far, for teardown
	made []*NS

	binOnce sync.Once
	bin     string
}

// New builds the topology and registers its teardown. It skips the test
// when not root.
func New(t *testing.T, opts Options) *Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		testreq.Skip(t, "needs root: creates network namespaces and runs daemons")
	}
	if opts.Hosts <= 0 {
		opts.Hosts = 1
	}
	if opts.Hosts > 200 {
		t.Fatalf("harness: %d hosts: at most 200", opts.Hosts)
	}
	if opts.UnderlayMTU <= 0 {
		opts.UnderlayMTU = 1500
	}
	c := &Cluster{t: t, opts: opts, token: token()}
	prefix := leakcheck.Marker() + c.token
	dir, err := os.MkdirTemp("", prefix+"-")
	if err != nil {
		t.Fatalf("harness: make cluster dir: %v", err)
	}
	c.Dir = dir
	// Registered first, so it runs last: after the Cleanups of anything the
	// test registers later (which may still use the cluster).
	t.Cleanup(c.teardown)

	c.sw = c.addNS(t, prefix+"-sw")
	c.ip(t, c.sw, "link", "add", bridgeName, "mtu", fmt.Sprint(opts.UnderlayMTU), "type", "bridge")
	c.ip(t, c.sw, "link", "set", bridgeName, "up")

	c.outside = c.addNS(t, prefix+"-out")
	c.plug(t, c.outside, "veth-out")
	c.ip(t, c.outside, "addr", "add", netip.PrefixFrom(gatewayAddr, underlayPrefix.Bits()).String(), "dev", "eth0")
	c.ip(t, c.outside, "addr", "add", netip.PrefixFrom(outsideAddr, 24).String(), "dev", "eth0")

	for i := 0; i < opts.Hosts; i++ {
		ns := c.addNS(t, fmt.Sprintf("%s-h%d", prefix, i))
		h := &Host{
			Name:  fmt.Sprintf("h%d", i),
			Netns: ns.Path,
			Addr:  netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}),
			c:     c,
			ns:    ns,
			index: i,
		}
		h.Dir = filepath.Join(dir, h.Name)
		h.DataRoot = filepath.Join(h.Dir, "data")
		h.ExecRoot = filepath.Join(h.Dir, "exec")
		h.Socket = filepath.Join(h.Dir, "vxnet.sock")
		h.LogPath = filepath.Join(h.Dir, "daemon.log")
		h.swLink = fmt.Sprintf("veth-h%d", i)
		if len(h.Socket) >= 108 {
			t.Fatalf("harness: socket path %s too long for a unix socket (set TMPDIR shorter)", h.Socket)
		}
		for _, d := range []string{h.DataRoot, h.ExecRoot} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatalf("harness: %v", err)
			}
		}
		c.plug(t, ns, h.swLink)
		c.ip(t, ns, "addr", "add", netip.PrefixFrom(h.Addr, underlayPrefix.Bits()).String(), "dev", "eth0")
		c.ip(t, ns, "route", "add", "default", "via", gatewayAddr.String())
		c.Hosts = append(c.Hosts, h)
	}
	return c
}

// Host returns host i.
func (c *Cluster) Host(i int) *Host { return c.Hosts[i] }

// Outside is the namespace standing in for the internet. It answers on
// 192.0.2.254 (the hosts' default gateway) and on OutsideAddr.
func (c *Cluster) Outside() *NS { return c.outside }

// OutsideAddr is an address outside the underlay subnet (203.0.113.1):
// hosts reach it through their default route, so traffic a host
// masquerades arrives with the host's underlay address as source.
func (c *Cluster) OutsideAddr() netip.Addr { return outsideAddr }

// GatewayAddr is the hosts' default gateway (192.0.2.254), the outside
// namespace's underlay address.
func (c *Cluster) GatewayAddr() netip.Addr { return gatewayAddr }

// Switch is the namespace holding the underlay bridge.
func (c *Cluster) Switch() *NS { return c.sw }

// binary returns the vxnet binary, building it on first use.
func (c *Cluster) binary(t testing.TB) string {
	t.Helper()
	if c.opts.Binary != "" {
		return c.opts.Binary
	}
	c.binOnce.Do(func() { c.bin = Build(t) })
	if c.bin == "" {
		t.Fatalf("harness: no vxnet binary (the build failed earlier)")
	}
	return c.bin
}

func (c *Cluster) addNS(t *testing.T, name string) *NS {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("harness: ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name, Path: "/run/netns/" + name}
	c.made = append(c.made, ns)
	c.ip(t, ns, "link", "set", "lo", "up")
	return ns
}

// plug makes eth0 in ns, its peer swLink in the switch enslaved to the
// bridge, both up with the underlay MTU. The pair is created in the switch
// namespace with the peer placed directly in ns: the root namespace is
// never touched.
func (c *Cluster) plug(t *testing.T, ns *NS, swLink string) {
	t.Helper()
	mtu := fmt.Sprint(c.opts.UnderlayMTU)
	c.ip(t, c.sw, "link", "add", swLink, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu, "netns", ns.Name)
	c.ip(t, c.sw, "link", "set", swLink, "master", bridgeName, "up")
	c.ip(t, ns, "link", "set", "eth0", "up")
}

func (c *Cluster) ip(t *testing.T, ns *NS, args ...string) {
	t.Helper()
	args = append([]string{"-n", ns.Name}, args...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("harness: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func token() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 {
		return ee.ExitCode()
	}
	return -1
}
