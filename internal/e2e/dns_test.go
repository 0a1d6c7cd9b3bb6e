package e2e

import (
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/netns"
)

// testDNS is a DNS server in a test namespace standing in for the
// upstream resolver: ext.test has 203.0.113.77, everything else is
// NXDOMAIN.
type testDNS struct {
	udp, tcp *mdns.Server
	queries  atomic.Int64
}

func startTestDNS(t *testing.T, ns *harness.NS, addr string) *testDNS {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	err := netns.Do(ns.Path, func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", addr+":53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", addr+":53")
		return err
	})
	if err != nil {
		t.Fatalf("test DNS server in %s: %v", ns.Name, err)
	}
	d := &testDNS{}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		d.queries.Add(1)
		m := new(mdns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && strings.EqualFold(q.Question[0].Name, "ext.test.") {
			if q.Question[0].Qtype == mdns.TypeA {
				m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 5}, A: net.IPv4(203, 0, 113, 77)})
			}
		} else {
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	d.udp = &mdns.Server{PacketConn: pc, Handler: h}
	d.tcp = &mdns.Server{Listener: ln, Handler: h}
	go d.udp.ActivateAndServe()
	go d.tcp.ActivateAndServe()
	t.Cleanup(d.stop)
	return d
}

func (d *testDNS) stop() {
	d.udp.Shutdown()
	d.tcp.Shutdown()
}

// nslookup runs busybox nslookup (A records, or PTR for an address) in a
// container against its resolv.conf and returns the addresses or names
// of the answer, or "NXDOMAIN"/"SERVFAIL"/the raw output on failure.
//
// An answer-less run (a packet lost on the loaded test machine) is tried
// again, up to three times; a definite answer never is.
func nslookup(t *testing.T, h *harness.Host, ctr, name string) []string {
	t.Helper()
	var res []string
	for range 3 {
		if res = nslookupOnce(h, ctr, name); !strings.HasPrefix(res[0], "no answer") {
			break
		}
	}
	return res
}

func nslookupOnce(h *harness.Host, ctr, name string) []string {
	args := []string{"exec", ctr, "nslookup"}
	if net.ParseIP(name) == nil {
		args = append(args, "-type=a")
	}
	out, errOut, _ := h.CLI(append(args, name)...)
	all := out + errOut
	for _, rc := range []string{"NXDOMAIN", "SERVFAIL"} {
		if strings.Contains(all, "server can't find") && strings.Contains(all, rc) {
			return []string{rc}
		}
	}
	var res []string
	// Skip the "Server:"/"Address: 127.0.0.11:53" block.
	if i := strings.Index(out, "\n\n"); i >= 0 {
		out = out[i:]
	}
	for _, m := range regexp.MustCompile(`(?m)^Address: (\S+)$|name = (\S+)$`).FindAllStringSubmatch(out, -1) {
		res = append(res, m[1]+m[2])
	}
	if len(res) == 0 {
		return []string{"no answer: " + strings.TrimSpace(all)}
	}
	return res
}

func same(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// The embedded DNS server on a user-defined bridge: names, NAME.NETWORK,
// short IDs, a shared alias in both orders, a name from another network
// (forwarded: NXDOMAIN), PTR, an external name forwarded to an upstream in
// a test namespace, and SERVFAIL once that upstream is gone.
func TestDNSBridge(t *testing.T) {
	c, h := single(t)
	up := startTestDNS(t, c.Outside(), c.OutsideAddr().String())
	cli(t, h, "network", "create", "--subnet", "10.81.0.0/24", "n1")
	cli(t, h, "network", "create", "--subnet", "10.82.0.0/24", "n2")
	cli(t, h, "run", "-d", "--name", "a", "--net", "n1", "--dns", c.OutsideAddr().String(), "busybox", "sleep", "1d")
	bID := cli(t, h, "run", "-d", "--name", "b", "--net", "n1", "--network-alias", "shared", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "c", "--net", "n1", "--network-alias", "shared", "busybox", "sleep", "1d")
	dID := cli(t, h, "run", "-d", "--name", "d", "--net", "n2", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "old", "busybox", "sleep", "1d")
	bIP, cIP := ipOf(t, h, "b", "n1"), ipOf(t, h, "c", "n1")

	if rc := cli(t, h, "exec", "a", "cat", "/etc/resolv.conf"); !strings.Contains(rc, "nameserver 127.0.0.11\n") || !strings.Contains(rc, "ndots:0") {
		t.Fatalf("a's resolv.conf:\n%s", rc)
	}
	if rc := cli(t, h, "exec", "old", "cat", "/etc/resolv.conf"); strings.Contains(rc, "127.0.0.11") {
		t.Errorf("default bridge container's resolv.conf points at the embedded server:\n%s", rc)
	}
	if got := nslookup(t, h, "a", "b"); !same(got, bIP) {
		t.Errorf("a: nslookup b = %v, want %s", got, bIP)
	}
	if got := nslookup(t, h, "a", "b.n1"); !same(got, bIP) {
		t.Errorf("a: nslookup b.n1 = %v, want %s", got, bIP)
	}
	if got := nslookup(t, h, "a", bID[:12]); !same(got, bIP) {
		t.Errorf("a: nslookup %s (b's short ID) = %v, want %s", bID[:12], got, bIP)
	}
	// 20 lookups in one exec; each answer is its own "Name: shared" block.
	out := cli(t, h, "exec", "a", "sh", "-c", "for i in $(seq 20); do nslookup -type=a shared; done")
	orders := map[string]bool{}
	blocks := strings.Split(out, "Server:")
	if len(blocks) != 21 {
		t.Fatalf("20 lookups of shared gave %d answers:\n%s", len(blocks)-1, out)
	}
	for _, blk := range blocks[1:] {
		var got []string
		for _, m := range regexp.MustCompile(`(?m)^Address: (\S+)$`).FindAllStringSubmatch(blk, -1) {
			got = append(got, m[1])
		}
		if !(same(got, bIP, cIP) || same(got, cIP, bIP)) {
			t.Fatalf("a: nslookup shared = %v, want %s and %s", got, bIP, cIP)
		}
		orders[strings.Join(got, ",")] = true
	}
	if len(orders) != 2 {
		t.Errorf("shared alias over 20 lookups came back in orders %v, want both", orders)
	}
	for _, name := range []string{"d", "d.n2", dID[:12]} {
		if got := nslookup(t, h, "a", name); !same(got, "NXDOMAIN") {
			t.Errorf("a: nslookup %s (on n2 only) = %v, want NXDOMAIN", name, got)
		}
	}
	if got := nslookup(t, h, "a", bIP); !same(got, "b.n1") {
		t.Errorf("a: nslookup %s (PTR) = %v, want b.n1", bIP, got)
	}
	before := up.queries.Load()
	if got := nslookup(t, h, "a", "ext.test"); !same(got, "203.0.113.77") {
		t.Errorf("a: nslookup ext.test = %v, want 203.0.113.77 from the upstream", got)
	}
	if up.queries.Load() == before {
		t.Error("the upstream saw no query for ext.test")
	}
	// rename: the new name resolves, the old one no longer.
	cli(t, h, "rename", "b", "bee")
	if got := nslookup(t, h, "a", "bee"); !same(got, bIP) {
		t.Errorf("a: nslookup bee after rename = %v, want %s", got, bIP)
	}
	if got := nslookup(t, h, "a", "b"); !same(got, "NXDOMAIN") {
		t.Errorf("a: nslookup b after rename to bee = %v, want NXDOMAIN", got)
	}
	if got := nslookup(t, h, "a", bIP); !same(got, "bee.n1") {
		t.Errorf("a: PTR of %s after rename = %v, want bee.n1", bIP, got)
	}
	// Legacy links on the default bridge: hosts entries; a link alias on a
	// user-defined network resolves for the linking container only.
	cli(t, h, "run", "-d", "--name", "lk", "--link", "old:olddb", "busybox", "sleep", "1d")
	if !eventually(10*time.Second, func() bool { return ping(t, h, "lk", "olddb") && ping(t, h, "lk", "old") }) {
		t.Error("lk cannot reach its link old as olddb and old")
	}
	cli(t, h, "run", "-d", "--name", "ul", "--net", "n1", "--link", "bee:beelink", "--dns", c.OutsideAddr().String(), "busybox", "sleep", "1d")
	if got := nslookup(t, h, "ul", "beelink"); !same(got, bIP) {
		t.Errorf("ul: nslookup beelink (its link alias) = %v, want %s", got, bIP)
	}
	if got := nslookup(t, h, "a", "beelink"); !same(got, "NXDOMAIN") {
		t.Errorf("a: nslookup beelink (ul's link alias) = %v, want NXDOMAIN", got)
	}
	// --add-host: hosts lines, host-gateway is the default bridge's gateway.
	cli(t, h, "run", "-d", "--name", "ah", "--net", "n1", "--add-host", "db.example:192.0.2.99", "--add-host", "gw=host-gateway", "busybox", "sleep", "1d")
	if hosts := cli(t, h, "exec", "ah", "cat", "/etc/hosts"); !strings.Contains(hosts, "192.0.2.99\tdb.example\n") || !strings.Contains(hosts, "172.17.0.1\tgw") {
		t.Errorf("ah's /etc/hosts lacks its --add-host entries:\n%s", hosts)
	}
	cliFails(t, h, "could not get container for nosuch", "run", "-d", "--link", "nosuch:x", "busybox", "true")
	// Network names as Docker allows them: with a space.
	cli(t, h, "network", "create", "--subnet", "10.84.0.0/24", "my net")
	cli(t, h, "run", "-d", "--name", "p", "--net", "my net", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "q", "--net", "my net", "busybox", "sleep", "1d")
	if got, want := nslookup(t, h, "p", "q"), ipOf(t, h, "q", "my net"); !same(got, want) {
		t.Errorf("p on \"my net\": nslookup q = %v, want %s", got, want)
	}
	// rm: the name goes at once.
	cli(t, h, "rm", "-f", "c")
	if got := nslookup(t, h, "a", "shared"); !same(got, bIP) {
		t.Errorf("a: nslookup shared after rm c = %v, want only %s", got, bIP)
	}
	// The upstream stopped: SERVFAIL (busybox gives up after 5 s x 2; the
	// server answers well before).
	up.stop()
	start := time.Now()
	if got := nslookup(t, h, "a", "ext.test"); !same(got, "SERVFAIL") {
		t.Errorf("a: nslookup ext.test with the upstream stopped = %v (after %v), want SERVFAIL", got, time.Since(start))
	}
}

// Across hosts on an overlay: a container on host B resolves one on host
// A from the cluster's advertisements, and stops resolving it after rm
// on A.
func TestDNSOverlayAcrossHosts(t *testing.T) {
	c := ovCluster(t, 2)
	a, b := c.Host(0), c.Host(1)
	startTestDNS(t, c.Outside(), c.OutsideAddr().String())
	cli(t, a, "network", "create", "-d", "overlay", "--subnet", "10.83.0.0/24", "ov")
	ovRun(t, a, "x", "ov", "--network-alias", "xa")
	ovRun(t, b, "y", "ov", "--dns", c.OutsideAddr().String())
	xIP := ipOf(t, a, "x", "ov")
	var got []string
	if !eventually(20*time.Second, func() bool { got = nslookup(t, b, "y", "x"); return same(got, xIP) }) {
		t.Fatalf("y on host B: nslookup x = %v, want %s", got, xIP)
	}
	for _, name := range []string{"xa", "x.ov", "xa.ov"} {
		if got := nslookup(t, b, "y", name); !same(got, xIP) {
			t.Errorf("y: nslookup %s = %v, want %s", name, got, xIP)
		}
	}
	if got := nslookup(t, b, "y", xIP); !same(got, "x.ov") {
		t.Errorf("y: nslookup %s (PTR) = %v, want x.ov", xIP, got)
	}
	// A rename on host A reaches host B through the advertisement.
	cli(t, a, "rename", "x", "xr")
	if !eventually(20*time.Second, func() bool { got = nslookup(t, b, "y", "xr"); return same(got, xIP) }) {
		t.Errorf("y: nslookup xr after rename on host A = %v, want %s", got, xIP)
	}
	if got := nslookup(t, b, "y", "x"); !same(got, "NXDOMAIN") {
		t.Errorf("y: nslookup x after rename to xr = %v, want NXDOMAIN", got)
	}
	cli(t, a, "rm", "-f", "xr")
	if !eventually(20*time.Second, func() bool { got = nslookup(t, b, "y", "xr"); return same(got, "NXDOMAIN") }) {
		t.Errorf("y: nslookup xr after rm on host A = %v, want NXDOMAIN", got)
	}
	if got := nslookup(t, b, "y", "xa"); !same(got, "NXDOMAIN") {
		t.Errorf("y: nslookup xa (alias) after rm on host A = %v, want NXDOMAIN", got)
	}
}

// Several networks at create (the docker CLI's --network a --network b
// sends two EndpointsConfig entries): two interfaces, the default route of
// the higher GwPriority, and the endpoint settings honoured and echoed.
func TestMultiNetworkCreate(t *testing.T) {
	_, h := single(t)
	api := bnClient(h)
	cli(t, h, "network", "create", "--subnet", "10.85.0.0/24", "na")
	cli(t, h, "network", "create", "--subnet", "10.86.0.0/24", "nb")
	create := func(name string, prioA, prioB int, settings bool) string {
		t.Helper()
		nb := map[string]any{"GwPriority": prioB}
		if settings {
			nb = map[string]any{"GwPriority": prioB, "MacAddress": "02:00:5e:10:00:01",
				"IPAMConfig": map[string]any{"IPv4Address": "10.86.0.50", "LinkLocalIPs": []string{"169.254.7.7"}},
				"DriverOpts": map[string]string{"com.docker.network.endpoint.ifname": "data0"}}
		}
		body := map[string]any{
			"Image": "busybox", "Cmd": []string{"sleep", "1d"},
			"HostConfig": map[string]any{"NetworkMode": "na"},
			"NetworkingConfig": map[string]any{"EndpointsConfig": map[string]any{
				"na": map[string]any{"GwPriority": prioA, "Aliases": []string{name + "-a"}},
				"nb": nb,
			}},
		}
		var out struct{ Id string }
		api.must(t, "POST", "/containers/create?name="+name, body, &out)
		api.must(t, "POST", "/containers/"+out.Id+"/start", nil, nil)
		return out.Id
	}
	create("m1", 0, 10, true)
	// Two interfaces: eth0 on na, data0 on nb with the MAC, the address and
	// the link-local address asked for.
	if out := cli(t, h, "exec", "m1", "ip", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "10.85.0.") {
		t.Errorf("m1 eth0: %s", out)
	}
	out := cli(t, h, "exec", "m1", "ip", "-o", "addr", "show", "dev", "data0")
	if !strings.Contains(out, "10.86.0.50/24") || !strings.Contains(out, "169.254.7.7/16") {
		t.Errorf("m1 data0 addresses: %s", out)
	}
	if mac := cli(t, h, "exec", "m1", "cat", "/sys/class/net/data0/address"); mac != "02:00:5e:10:00:01" {
		t.Errorf("m1 data0 MAC = %s", mac)
	}
	// nb has the higher GwPriority: the default route is via nb's gateway.
	if r := cli(t, h, "exec", "m1", "ip", "route", "show", "default"); !strings.Contains(r, "via 10.86.0.1 dev data0") {
		t.Errorf("m1 default route = %q, want via 10.86.0.1 dev data0", r)
	}
	// The other way round: na wins.
	create("m2", 5, 1, false)
	if r := cli(t, h, "exec", "m2", "ip", "route", "show", "default"); !strings.Contains(r, "via 10.85.0.1 dev eth0") {
		t.Errorf("m2 default route = %q, want via 10.85.0.1 dev eth0", r)
	}
	// Inspect echoes the settings.
	var v []struct {
		NetworkSettings struct {
			Networks map[string]struct {
				MacAddress, IPAddress string
				GwPriority            int
				Aliases               []string
				DriverOpts            map[string]string
				IPAMConfig            *struct {
					IPv4Address  string
					LinkLocalIPs []string
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(cli(t, h, "inspect", "m1")), &v); err != nil || len(v) != 1 {
		t.Fatalf("inspect m1: %v", err)
	}
	nb := v[0].NetworkSettings.Networks["nb"]
	if nb.MacAddress != "02:00:5e:10:00:01" || nb.GwPriority != 10 || nb.IPAMConfig == nil || nb.IPAMConfig.IPv4Address != "10.86.0.50" ||
		len(nb.IPAMConfig.LinkLocalIPs) != 1 || nb.DriverOpts["com.docker.network.endpoint.ifname"] != "data0" {
		t.Errorf("inspect m1 nb = %+v", nb)
	}
	if na := v[0].NetworkSettings.Networks["na"]; len(na.Aliases) != 1 || na.Aliases[0] != "m1-a" {
		t.Errorf("inspect m1 na = %+v", na)
	}
	// Names on both networks resolve; m2 sees m1 on nb by its nb address.
	if got := nslookup(t, h, "m2", "m1.nb"); !same(got, "10.86.0.50") {
		t.Errorf("m2: nslookup m1.nb = %v", got)
	}
	// Refused settings name what is refused; nothing is left behind.
	if code, _ := api.do("POST", "/containers/create?name=bad", map[string]any{"Image": "busybox",
		"NetworkingConfig": map[string]any{"EndpointsConfig": map[string]any{"na": map[string]any{},
			"nb": map[string]any{"DriverOpts": map[string]string{"foo": "bar"}}}}}, nil); code != 400 {
		t.Errorf("create with an unknown endpoint driver option: status %d, want 400", code)
	}
	if _, _, code := h.CLI("inspect", "bad"); code == 0 {
		t.Error("refused create left a container behind")
	}
}
