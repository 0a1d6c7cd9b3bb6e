package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/netns"
)

// cniConf is a one-plugin CNI configuration list on vxnet network name,
// through the daemon socket sock.
func cniConf(name, sock string) string {
	return fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[{"type":"vxnet","socket":%q}]}`, name, sock)
}

// TestCNIOverlay: libcni ADD/CHECK/DEL of namespaces on an overlay across
// two hosts. Every namespace reaches every other one, a vxnet container
// reaches them by name, CHECK detects a deleted veth and ADD repairs it,
// attachments survive a daemon restart, DEL leaves nothing behind on
// either host and a second DEL succeeds.
func TestCNIOverlay(t *testing.T) {
	c := ovCluster(t, 2)
	a, b := c.Host(0), c.Host(1)
	cli(t, a, "network", "create", "-d", "overlay", "--subnet", "10.81.0.0/24", "cnet")
	bin := cniBuild(t)
	hosts := []*cniHost{newCNIHost(t, c, a, bin, cniConf("cnet", a.Socket)), newCNIHost(t, c, b, bin, cniConf("cnet", b.Socket))}

	// 20 in CI; the benchmark run (VXNET_BENCH=1) does the 100.
	n := 20
	if os.Getenv("VXNET_BENCH") != "" {
		n = bnEnv(t, "VXNET_BENCH_CNI_N", 100)
	}
	type pod struct {
		id, ns string
		host   int
		ip     netip.Addr
	}
	pods := make([]*pod, n)
	for i := range pods {
		pods[i] = &pod{id: fmt.Sprintf("ctr%02d", i), ns: cniNetns(t, c, fmt.Sprintf("p%02d", i)), host: i % 2}
	}
	var mu sync.Mutex
	var errs []error
	ovParallel(n, 4, func(i int) {
		p := pods[i]
		r, err := hosts[p.host].add(p.id, p.ns)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("ADD %s: %w", p.id, err))
			return
		}
		if len(r.IPs) != 1 || len(r.Interfaces) != 1 || r.Interfaces[0].Name != "eth0" || r.Interfaces[0].Sandbox != p.ns {
			errs = append(errs, fmt.Errorf("ADD %s: unexpected result %+v", p.id, r))
			return
		}
		p.ip, _ = netip.AddrFromSlice(r.IPs[0].Address.IP.To4())
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for _, p := range pods {
		if !netip.MustParsePrefix("10.81.0.0/24").Contains(p.ip) || seen[p.ip] {
			t.Fatalf("pod %s got address %s (duplicate or outside the subnet)", p.id, p.ip)
		}
		seen[p.ip] = true
	}

	// Every namespace reaches every other one (same host and across).
	pingAll := func(label string) {
		t.Helper()
		var failed []string
		ovParallel(n, 2, func(i int) {
			var dsts []string
			for _, q := range pods {
				if q != pods[i] {
					dsts = append(dsts, q.ip.String())
				}
			}
			// Eight destinations at a time: a first ARP exchange can take
			// a second on a busy bridge (one by one that adds up), and
			// all at once floods the bridge with ARP broadcasts.
			script := `printf '%s\n' "$@" | xargs -P 8 -I{} sh -c 'ping -c1 -W2 {} >/dev/null 2>&1 || ping -c1 -W3 {} >/dev/null 2>&1 || echo {}'`
			out, _ := (&cniNS{pods[i].ns}).exec(append([]string{"sh", "-c", script, "sh"}, dsts...)...)
			if f := strings.Fields(out); len(f) > 0 {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%s -> %v", pods[i].id, f))
				mu.Unlock()
			}
		})
		if len(failed) > 0 {
			t.Fatalf("%s: unreachable: %v", label, failed)
		}
	}
	if !eventually(15*time.Second, func() bool {
		_, code := (&cniNS{pods[0].ns}).exec("ping", "-c1", "-W1", pods[1].ip.String())
		return code == 0
	}) {
		t.Fatalf("pod %s never reached %s across hosts", pods[0].id, pods[1].id)
	}
	pingAll("after ADD")

	// A vxnet container on host B reaches an attachment on host A by the
	// name its advertisement carries.
	ovRun(t, b, "vc", "cnet")
	if !eventually(15*time.Second, func() bool {
		return execCode(t, b, "vc", "ping", "-c1", "-W1", "cni-ctr00") == 0
	}) {
		t.Fatalf("container on %s cannot ping cni-ctr00 by name", b.Name)
	}

	// The peer table of host B holds host A's attachments, programmed.
	v := ovInspect(t, b, "cnet")
	programmed := 0
	for _, p := range v.VXNet.Peers {
		if p.Status == "programmed" {
			programmed++
		}
	}
	if programmed != n/2 {
		t.Errorf("inspect -v on %s: %d programmed peers, want %d: %+v", b.Name, programmed, n/2, v.VXNet.Peers)
	}

	for _, p := range pods {
		if err := hosts[p.host].check(p.id, p.ns); err != nil {
			t.Fatalf("CHECK %s: %v", p.id, err)
		}
	}
	// CHECK detects a deleted veth; ADD again repairs it.
	victim := pods[2]
	(&cniNS{victim.ns}).mustExec(t, "ip", "link", "del", "eth0")
	err := hosts[victim.host].check(victim.id, victim.ns)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrUnknownContainer || !strings.Contains(te.Msg, "eth0") {
		t.Fatalf("CHECK after deleting eth0 of %s: %v, want CNI error %d naming eth0", victim.id, err, types.ErrUnknownContainer)
	}
	if _, err := hosts[victim.host].add(victim.id, victim.ns); err != nil {
		t.Fatalf("ADD again of %s: %v", victim.id, err)
	}
	if err := hosts[victim.host].check(victim.id, victim.ns); err != nil {
		t.Fatalf("CHECK after repair of %s: %v", victim.id, err)
	}

	// Attachments survive a daemon restart; a lost veth comes back.
	(&cniNS{victim.ns}).mustExec(t, "ip", "link", "del", "eth0")
	a.Restart()
	if got := len(externals(t, a)); got != n/2 {
		t.Fatalf("after restart %s has %d CNI attachments, want %d", a.Name, got, n/2)
	}
	if err := hosts[victim.host].check(victim.id, victim.ns); err != nil {
		t.Fatalf("CHECK after restart of %s: %v", victim.id, err)
	}
	pingAll("after restart")

	// DEL leaves nothing; a second DEL succeeds.
	ovParallel(n, 4, func(i int) {
		p := pods[i]
		if err := hosts[p.host].del(p.id, p.ns); err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("DEL %s: %w", p.id, err))
			mu.Unlock()
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if err := hosts[p.host].del(p.id, p.ns); err != nil {
			t.Fatalf("second DEL %s: %v", p.id, err)
		}
		if out, _ := (&cniNS{p.ns}).exec("ip", "-o", "link", "show"); strings.Contains(out, "eth0") {
			t.Errorf("after DEL %s still has eth0: %s", p.id, out)
		}
	}
	cli(t, b, "rm", "-f", "vc")
	for _, ch := range hosts {
		if got := externals(t, ch.h); len(got) != 0 {
			t.Errorf("after DEL %s still has attachments: %+v", ch.h.Name, got)
		}
		if eps := endpointAddrs(t, ch.h, "cnet"); len(eps) != 0 {
			t.Errorf("after DEL %s still has endpoints on cnet: %v", ch.h.Name, eps)
		}
	}
	if !eventually(10*time.Second, func() bool {
		s, err := overlayState(a, "cnet")
		return err == nil && len(s.Peers) == 0
	}) {
		t.Errorf("advertisements left on cnet after DEL")
	}
	for _, ch := range hosts {
		if out := ch.h.MustExec(t, "ip", "-o", "link", "show"); strings.Contains(out, "vx") && strings.Contains(out, "veth") {
			t.Errorf("%s: links left: %s", ch.h.Name, out)
		}
		ov := ovInspect(t, ch.h, "cnet").VXNet.Namespace
		if ov != "" && netns.IsPinned(ov) {
			t.Errorf("%s: overlay namespace %s left after the last DEL", ch.h.Name, ov)
		}
	}
	cli(t, a, "network", "rm", "cnet")
	for _, p := range pods {
		netns.Delete(p.ns)
	}
}

// TestCNIErrors: the plugin's refusals carry CNI error codes and make
// nothing.
func TestCNIErrors(t *testing.T) {
	c := ovCluster(t, 1)
	a := c.Host(0)
	cli(t, a, "network", "create", "--subnet", "10.82.0.0/24", "br82")
	bin := cniBuild(t)
	ns := cniNetns(t, c, "e0")
	conf := func(name, sock, extra string) *cniHost {
		return newCNIHost(t, c, a, bin, fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[{"type":"vxnet","socket":%q%s}]}`, name, sock, extra))
	}
	sock := a.Socket
	cases := []struct {
		name, net, sock, extra, netns string
		code                          uint
		want                          string
	}{
		{"no such network", "nope", sock, "", ns, types.ErrInvalidNetworkConfig, "network nope not found"},
		{"ipam refused", "br82", sock, `,"ipam":{"type":"host-local"}`, ns, types.ErrUnsupportedField, "ipam"},
		{"daemon down", "br82", "/nonexistent.sock", "", ns, types.ErrTryAgainLater, "not reachable"},
		{"bad netns", "br82", sock, "", "/nonexistent/ns", types.ErrInvalidNetNS, "/nonexistent/ns"},
		{"host network", "host", sock, "", ns, types.ErrInvalidNetworkConfig, "only bridge and overlay"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := conf(tc.net, tc.sock, tc.extra)
			_, err := ch.add("e0", tc.netns)
			var te *types.Error
			if !errors.As(err, &te) || te.Code != tc.code || !strings.Contains(te.Msg+te.Details, tc.want) {
				t.Fatalf("ADD: %v, want CNI error %d containing %q", err, tc.code, tc.want)
			}
		})
	}
	if got := externals(t, a); len(got) != 0 {
		t.Errorf("refused ADDs left attachments: %+v", got)
	}
	if out, _ := (&cniNS{ns}).exec("ip", "-o", "link", "show"); strings.Contains(out, "eth0") {
		t.Errorf("refused ADDs left eth0: %s", out)
	}
	// STATUS and a CHECK of something never added.
	ch := conf("br82", sock, "")
	if err := ch.conf.GetStatusNetworkList(context.Background(), ch.list); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	err := ch.check("never", ns)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrUnknownContainer {
		t.Errorf("CHECK of an unknown container: %v, want code %d", err, types.ErrUnknownContainer)
	}
	down := conf("br82", "/nonexistent.sock", "")
	if err := down.conf.GetStatusNetworkList(context.Background(), down.list); !errors.As(err, &te) || te.Code != types.ErrPluginNotAvailable {
		t.Errorf("STATUS with the daemon down: %v, want code %d", err, types.ErrPluginNotAvailable)
	}
	// GC removes what the runtime no longer lists.
	if _, err := ch.add("gc1", ns); err != nil {
		t.Fatalf("ADD gc1: %v", err)
	}
	if err := ch.conf.GCNetworkList(context.Background(), ch.list, &libcni.GCArgs{}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got := externals(t, a); len(got) != 0 {
		t.Errorf("GC left attachments: %+v", got)
	}
	os.Remove(ns)
}

// cniNS runs commands inside a namespace made by the test.
type cniNS struct{ path string }

func (n *cniNS) exec(args ...string) (string, int) {
	return nsExec(n.path, args...)
}

func (n *cniNS) mustExec(t *testing.T, args ...string) string {
	t.Helper()
	out, code := n.exec(args...)
	if code != 0 {
		t.Fatalf("in %s: %v: exit %d: %s", n.path, args, code, out)
	}
	return out
}

// TestCNIChained: portmap and bandwidth from the CNI reference plugins
// keep working after vxnet in a chain on a bridge network: a connection
// from outside to the host's published port reaches the namespace, the
// bandwidth plugin finds vxnet's host veth and shapes it, and DEL of the
// chain removes the port mapping and the attachment.
func TestCNIChained(t *testing.T) {
	c := harness.New(t, harness.Options{})
	a := c.Host(0)
	a.Start()
	cli(t, a, "network", "create", "--subnet", "10.83.0.0/24", "br83")
	bin := cniBuild(t, "portmap", "bandwidth")
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"br83","plugins":[
		{"type":"vxnet","socket":%q},
		{"type":"portmap","capabilities":{"portMappings":true}},
		{"type":"bandwidth","ingressRate":100000000,"ingressBurst":1000000,"egressRate":100000000,"egressBurst":1000000}]}`, a.Socket)
	ch := newCNIHost(t, c, a, bin, conf)
	ns := cniNetns(t, c, "chain0")
	(&harness.NS{Name: "chain0", Path: ns}).StartEchoServer(t, 80)
	rt := ch.rt("chain0", ns)
	rt.CapabilityArgs = map[string]any{"portMappings": []map[string]any{{"hostPort": 8083, "containerPort": 80, "protocol": "tcp"}}}
	r, err := ch.conf.AddNetworkList(context.Background(), ch.list, rt)
	if err != nil {
		t.Fatalf("ADD through vxnet, portmap, bandwidth: %v", err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil || len(res.IPs) != 1 {
		t.Fatalf("result: %v %+v", err, r)
	}
	views := externals(t, a)
	if len(views) != 1 || views[0].HostVeth == "" {
		t.Fatalf("attachments: %+v", views)
	}
	if out := a.MustExec(t, "tc", "qdisc", "show", "dev", views[0].HostVeth); !strings.Contains(out, "tbf") {
		t.Errorf("bandwidth did not shape vxnet's host veth %s: %s", views[0].HostVeth, out)
	}
	dial := func() string {
		out, _ := c.Outside().Exec("sh", "-c", fmt.Sprintf("echo hello | busybox nc -w 3 %s 8083", a.Addr))
		return strings.TrimSpace(out)
	}
	if !eventually(10*time.Second, func() bool { return dial() == "hello" }) {
		t.Fatalf("outside -> %s:8083 did not reach the namespace through portmap: %q", a.Addr, dial())
	}
	if err := ch.conf.CheckNetworkList(context.Background(), ch.list, rt); err != nil {
		t.Errorf("CHECK of the chain: %v", err)
	}
	if err := ch.conf.DelNetworkList(context.Background(), ch.list, rt); err != nil {
		t.Fatalf("DEL of the chain: %v", err)
	}
	if got := dial(); got == "hello" {
		t.Errorf("port 8083 still reaches the namespace after DEL")
	}
	if got := externals(t, a); len(got) != 0 {
		t.Errorf("DEL left attachments: %+v", got)
	}
	if err := ch.conf.DelNetworkList(context.Background(), ch.list, rt); err != nil {
		t.Errorf("second DEL of the chain: %v", err)
	}
}
