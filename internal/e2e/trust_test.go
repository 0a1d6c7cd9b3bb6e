package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/pki"
	"github.com/vxnet/vxnet/internal/pki/pkitest"
	"github.com/vxnet/vxnet/internal/testreq"
)

// etcdPut writes key=val into the cluster store as host h would: from h's
// namespace, to host 0's embedded etcd, with h's member certificate.
func etcdPut(t *testing.T, c *harness.Cluster, h *harness.Host, key, val string) {
	t.Helper()
	ca, err := pki.Dir(filepath.Join(c.Host(0).DataRoot, "cluster")).LoadCA()
	if err != nil {
		t.Fatal(err)
	}
	cli := secEtcd(t, h, c.Host(0).Addr.String()+":2379", ca, memberCert(t, h))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, val); err != nil {
		t.Fatalf("put %s as %s: %v", key, h.Name, err)
	}
}

// A member writing garbage into the store (bad JSON, names with newlines,
// another member's container address, short IDs, a network record that
// used to panic every daemon's watch) leaves every other daemon up, changes
// no hosts file and no FDB or neighbour entry, and each bad key is named
// in a log line of the daemons that read it.
func TestGarbageRecordsFromAMember(t *testing.T) {
	c := ovCluster(t, 3)
	h0, h1, evil := c.Host(0), c.Host(1), c.Host(2)
	netID := cli(t, h0, "network", "create", "-d", "overlay", "--subnet", "10.96.0.0/24", "prod")
	ovRun(t, h0, "a", "prod")
	ovRun(t, h1, "b", "prod")
	ovRun(t, evil, "e", "prod")
	if !eventually(10*time.Second, func() bool { return ping(t, h0, "a", "b") && ping(t, h1, "b", "a") }) {
		t.Fatal("a and b cannot ping each other before the attack")
	}
	nsOf := func(h *harness.Host) string { return ovInspect(t, h, "prod").VXNet.Namespace }
	snapshot := func() map[string]string {
		m := map[string]string{}
		m["h0 hosts of a"] = cli(t, h0, "exec", "a", "cat", "/etc/hosts")
		m["h1 hosts of b"] = cli(t, h1, "exec", "b", "cat", "/etc/hosts")
		for _, h := range []*harness.Host{h0, h1} {
			fdb, neigh := ovKernel(t, h, nsOf(h))
			// Only what vxnet programs on vxlan0 ("self"), not what br0
			// learns and ages out.
			var own []string
			for _, l := range strings.Split(fdb, "\n") {
				if strings.Contains(l, " self ") {
					own = append(own, l)
				}
			}
			slices.Sort(own)
			m[h.Name+" fdb"], m[h.Name+" neigh"] = strings.Join(own, "\n"), neigh
		}
		return m
	}
	before := snapshot()
	// The snapshot must show b's entry, or "unchanged" proves nothing.
	bIP := ipOf(t, h1, "b", "prod")
	if !strings.Contains(before["h0 neigh"], bIP) {
		t.Fatalf("h0 does not hold b (%s) before the attack:\n%v", bIP, before)
	}
	if got := nslookup(t, h0, "a", "b"); !same(got, bIP) {
		t.Fatalf("a resolves b to %v before the attack, want %s", got, bIP)
	}

	evilID := nodeID(t, evil)
	p := cluster.DefaultPrefix
	hexID := func(c byte) string { return strings.Repeat(string(c), 64) }
	adv := func(ep, ip, mac, name string) string {
		b, _ := json.Marshal(map[string]any{"NetworkID": netID, "EndpointID": ep, "IP": ip, "MAC": mac,
			"VTEP": evil.Addr.String(), "NodeID": evilID, "Name": name})
		return string(b)
	}
	bad := map[string]string{
		// Bad JSON.
		p + "/adverts/" + evilID + "/" + netID + "/" + hexID('1'): `{"IP": "10.96.0.50",`,
		// A name with a newline: a hosts-file line for a bank.
		p + "/adverts/" + evilID + "/" + netID + "/" + hexID('2'): adv(hexID('2'), "10.96.0.51", "02:42:0a:60:00:33", "x\n10.96.0.51 bank.example"),
		// b's address (on h1), claimed from the evil host's VTEP.
		p + "/adverts/" + evilID + "/" + netID + "/" + hexID('3'): adv(hexID('3'), bIP, "02:00:00:00:66:66", "b"),
		// A short endpoint ID.
		p + "/adverts/" + evilID + "/" + netID + "/ab": adv("ab", "10.96.0.52", "02:42:0a:60:00:34", "short"),
		// A network record with a short ID (panicked every watch at n.ID[:12]).
		p + "/networks/id/abc": `{"ID":"abc","Name":"evilnet","Driver":"overlay","Scope":"global","VNI":9999,"IPAM":[{"Subnet":"10.95.0.0/24"}]}`,
	}
	for k, v := range bad {
		etcdPut(t, c, evil, k, v)
	}
	for _, h := range []*harness.Host{h0, h1} {
		var missing []string
		ok := eventually(15*time.Second, func() bool {
			log, _ := os.ReadFile(h.LogPath)
			missing = nil
			for k := range bad {
				if !strings.Contains(string(log), "key="+k) {
					missing = append(missing, k)
				}
			}
			return len(missing) == 0
		})
		if !ok {
			t.Errorf("%s logged no line naming %v", h.Name, missing)
		}
	}
	// Let a resync pass (2 s) so anything that would be programmed is.
	time.Sleep(3 * time.Second)
	for _, h := range []*harness.Host{h0, h1} {
		if !h.Running() {
			t.Fatalf("%s's daemon died after the garbage records; log tail:\n%s", h.Name, h.LogTail(40))
		}
		if out, _, code := h.CLI("network", "ls"); code != 0 || strings.Contains(out, "evilnet") {
			t.Errorf("%s: network ls exit %d, lists the invalid network: %s", h.Name, code, out)
		}
	}
	after := snapshot()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed after the garbage records:\nbefore:\n%s\nafter:\n%s", k, v, after[k])
		}
	}
	for k, v := range after {
		if strings.Contains(v, "bank") || strings.Contains(v, "66:66") {
			t.Errorf("%s holds what the evil member wrote:\n%s", k, v)
		}
	}
	// DNS: b still answers with b's address; the names the garbage carried
	// answer nothing.
	if got := nslookup(t, h0, "a", "b"); !same(got, bIP) {
		t.Errorf("a resolves b to %v after the attack, want %s", got, bIP)
	}
	for _, name := range []string{"short", "bank.example", "x"} {
		if got := nslookup(t, h0, "a", name); strings.Contains(strings.Join(got, " "), "10.96.0.5") {
			t.Errorf("a resolves %s to %v (from a garbage record)", name, got)
		}
	}
	if !ping(t, h0, "a", "b") || !ping(t, h1, "b", "a") {
		t.Error("a and b cannot ping each other after the attack")
	}
}

// tcpOpens reports whether a TCP connection from the namespace at nsPath
// to addr:port opens within two seconds.
func tcpOpens(t *testing.T, nsPath, addr string, port int) bool {
	t.Helper()
	ok := false
	err := netns.Do(nsPath, func() error {
		c, err := net.DialTimeout("tcp4", net.JoinHostPort(addr, strconv.Itoa(port)), 2*time.Second)
		if err == nil {
			ok = true
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// The underlay filter with traffic: a VXLAN frame from a member VTEP is
// accepted only on the VNIs of the networks that member takes part in, and
// containers (on a bridge network, and on an overlay network through the
// gateway bridge) cannot reach the store, peer and join ports of their
// host, which the underlay can.
func TestVNIFilterAndControlPorts(t *testing.T) {
	c := ovCluster(t, 2)
	h1, h2 := c.Host(0), c.Host(1)
	cli(t, h1, "network", "create", "-d", "overlay", "--subnet", "10.94.1.0/24", "blue")
	cli(t, h1, "network", "create", "-d", "overlay", "--subnet", "10.94.2.0/24", "green")
	ovRun(t, h2, "blue2", "blue") // h2 takes part in blue only
	const bSink, gSink, port = "10.94.1.77", "10.94.2.77", 7777
	ovRun(t, h1, "bsink", "blue", "--ip", bSink)
	ovRun(t, h1, "gsink", "green", "--ip", gSink)
	bs := ovListenUDP(t, "/proc/"+strconv.Itoa(ovPid(t, h1, "bsink"))+"/ns/net", port)
	gs := ovListenUDP(t, "/proc/"+strconv.Itoa(ovPid(t, h1, "gsink"))+"/ns/net", port)
	if !eventually(10*time.Second, func() bool { return ping(t, h2, "blue2", "bsink") }) {
		t.Fatal("blue2 cannot ping bsink across hosts")
	}
	srcMAC, _ := net.ParseMAC("02:00:00:00:00:99")
	frame := func(netName, sink, payload string) []byte {
		vni := uint32(ovInspect(t, h1, netName).VXNet.VNI)
		dst := netip.MustParseAddr(sink)
		dstMAC, _ := net.ParseMAC(ovMAC(dst))
		src := netip.MustParseAddr(strings.TrimSuffix(sink, ".77") + ".200")
		return ovVXLAN(vni, dstMAC, srcMAC, src, dst, 40000, port, []byte(payload))
	}
	vtep := netip.AddrPortFrom(h1.Addr, 4789)
	// h2 is a member VTEP, but not of green: its green frames are dropped.
	for range 3 {
		ovSendUDP(t, h2.Netns, vtep, frame("green", gSink, "FORGED\n"))
	}
	if !eventually(5*time.Second, func() bool {
		ovSendUDP(t, h2.Netns, vtep, frame("blue", bSink, "CONTROL\n"))
		return strings.Contains(strings.Join(bs.Received(), ""), "CONTROL")
	}) {
		t.Fatalf("a frame from member %s on its own VNI never arrived", h2.Addr)
	}
	if got := strings.Join(gs.Received(), ""); got != "" {
		t.Errorf("a frame from %s on a VNI it takes no part in reached the container: %q", h2.Addr, got)
	}

	// Control ports: containers on the default bridge and on an overlay
	// network (its way out is the gateway bridge) get no answer from the
	// store (2379, 2380) and the join service (2377) on their host's
	// addresses; the underlay does.
	ovRun(t, h1, "onbridge", "bridge")
	ctrs := map[string]string{
		"onbridge": "/proc/" + strconv.Itoa(ovPid(t, h1, "onbridge")) + "/ns/net",
		"bsink":    "/proc/" + strconv.Itoa(ovPid(t, h1, "bsink")) + "/ns/net",
	}
	gw := ipOf(t, h1, "onbridge", "bridge")
	gw = gw[:strings.LastIndex(gw, ".")] + ".1"
	for _, p := range []int{2379, 2380, 2377} {
		if !tcpOpens(t, h2.Netns, h1.Addr.String(), p) {
			t.Errorf("the underlay cannot reach %s:%d", h1.Addr, p)
		}
		for name, ns := range ctrs {
			for _, a := range []string{h1.Addr.String(), gw} {
				if tcpOpens(t, ns, a, p) {
					t.Errorf("container %s reached its host's control port %s:%d", name, a, p)
				}
			}
		}
	}
	// And the etcd answer itself, as a tenant would ask with busybox nc.
	if out, _, code := h1.CLI("exec", "onbridge", "sh", "-c", "printf 'GET /version HTTP/1.0\\r\\n\\r\\n' | nc -w 2 "+h1.Addr.String()+" 2379"); code == 0 || strings.Contains(out, "etcd") {
		t.Errorf("a container got an answer from the store: exit %d %q", code, out)
	}
}

// storeTLS are the PEM files of an external etcd reached over TLS with
// client certificates, made by the test: a CA, the server's certificate
// (IP SAN = the store's address) and one client certificate the daemons
// share.
type storeTLS pkitest.Files

func makeStoreTLS(t *testing.T, dir string, addr netip.Addr) storeTLS {
	t.Helper()
	return storeTLS(pkitest.Write(t, dir, "e2e-external-etcd", "etcd-server", "vxnet-client", addr))
}

// etcdArgs are etcd's flags for a TLS-only client listener that requires
// client certificates.
func (s storeTLS) etcdArgs() []string {
	return []string{"--cert-file", s.ServerCert, "--key-file", s.ServerKey, "--trusted-ca-file", s.CA, "--client-cert-auth"}
}

// daemonArgs are the daemon's flags to reach the store over TLS.
func (s storeTLS) daemonArgs() []string {
	return []string{"--cluster-store-ca", s.CA, "--cluster-store-cert", s.ClientCert, "--cluster-store-key", s.ClientKey}
}

// The Engine API over TCP as dockerd serves it: with --tlsverify the real
// docker CLI works with client certificates (DOCKER_CERT_PATH) and is
// refused without; containers cannot reach the port; a daemon asked for
// plain TCP refuses to start with one line and a non-zero exit.
func TestAPIOverTCPWithTLS(t *testing.T) {
	docker := "/usr/local/bin/docker" // the v28 client
	if _, err := os.Stat(docker); err != nil {
		if docker, err = exec.LookPath("docker"); err != nil {
			testreq.Skip(t, "needs the docker CLI (docker.io)")
		}
	}
	c := harness.New(t, harness.Options{Hosts: 1})
	h := c.Host(0)
	s := makeStoreTLS(t, filepath.Join(c.Dir, "api-tls"), h.Addr)
	// The docker CLI reads ca.pem, cert.pem and key.pem from DOCKER_CERT_PATH.
	withCert, caOnly := filepath.Join(c.Dir, "client"), filepath.Join(c.Dir, "ca-only")
	for dir, files := range map[string]map[string]string{
		withCert: {"ca.pem": s.CA, "cert.pem": s.ClientCert, "key.pem": s.ClientKey},
		caOnly:   {"ca.pem": s.CA},
	} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, src := range files {
			b, err := os.ReadFile(src)
			if err != nil || os.WriteFile(filepath.Join(dir, name), b, 0o600) != nil {
				t.Fatalf("copy %s: %v", src, err)
			}
		}
	}
	addr := h.Addr.String() + ":2376"
	h.Start("-H", "tcp://"+h.Addr.String(), "--tlsverify", "--tlscacert", s.CA, "--tlscert", s.ServerCert, "--tlskey", s.ServerKey)
	dockerCLI := func(certDir string, args ...string) (string, int) {
		return h.NS().Exec(append([]string{"env", "DOCKER_HOST=tcp://" + addr, "DOCKER_TLS_VERIFY=1",
			"DOCKER_CERT_PATH=" + certDir, "DOCKER_CONFIG=" + c.Dir, docker}, args...)...)
	}
	if out, code := dockerCLI(withCert, "version", "--format", "{{.Server.APIVersion}}"); code != 0 || strings.TrimSpace(out) == "" {
		t.Fatalf("docker version with client certificates: exit %d: %s", code, out)
	}
	if out, code := dockerCLI(withCert, "network", "ls"); code != 0 || !strings.Contains(out, "bridge") {
		t.Errorf("docker network ls with client certificates: exit %d: %s", code, out)
	}
	if out, code := dockerCLI(caOnly, "version", "--format", "{{.Server.APIVersion}}"); code == 0 {
		t.Errorf("docker without a client certificate got an answer: %s", out)
	}
	if out, code := h.NS().Exec("env", "DOCKER_HOST=tcp://"+addr, "DOCKER_CONFIG="+c.Dir, docker, "version", "--format", "{{.Server.APIVersion}}"); code == 0 {
		t.Errorf("docker without TLS got an answer: %s", out)
	}
	// A container cannot reach the API port of its host.
	cli(t, h, "run", "-d", "--name", "tenant", "busybox", "sleep", "1d")
	if tcpOpens(t, "/proc/"+strconv.Itoa(ovPid(t, h, "tenant"))+"/ns/net", h.Addr.String(), 2376) {
		t.Error("a container reached the API port of its host")
	}

	// Plain TCP: refused before anything is made.
	bin := harness.Build(t)
	tmp := t.TempDir()
	out, code := h.NS().Exec(bin, "daemon", "-H", "tcp://127.0.0.1:2375", "--data-root", filepath.Join(tmp, "d"), "--exec-root", filepath.Join(tmp, "e"))
	if code == 0 || !strings.Contains(out, "needs TLS") || strings.Count(strings.TrimSpace(out), "\n") > 0 {
		t.Errorf("daemon -H tcp:// without TLS: exit %d, output %q; want one line about TLS and a non-zero exit", code, out)
	}
	if _, err := os.Stat(filepath.Join(tmp, "d")); err == nil {
		t.Error("the refused daemon made its data root")
	}
}

// A lone advertisement (no other claim on the address) of an address global
// IPAM gave to another member is ignored: host A dies, so its container's
// advertisement leaves with its lease while A still owns the address in
// IPAM; member B then advertises that address, under its own key and
// certificate, well-formed, with its own VTEP and the dead container's name,
// and a second address IPAM never gave out. Host C programs neither (no FDB
// or neighbour entry), resolves neither name, names both keys in its log,
// and its traffic with B's legitimate container keeps working.
func TestLoneAdvertOfAnotherMembersAddress(t *testing.T) {
	c := ovCluster(t, 3)
	hc, ha, hb := c.Host(0), c.Host(1), c.Host(2)
	netID := cli(t, hc, "network", "create", "-d", "overlay", "--subnet", "10.97.0.0/24", "prod")
	ovRun(t, hc, "c", "prod")
	ovRun(t, ha, "a", "prod")
	ovRun(t, hb, "b", "prod")
	if !eventually(10*time.Second, func() bool { return ping(t, hc, "c", "a") && ping(t, hc, "c", "b") }) {
		t.Fatal("c cannot ping a and b")
	}
	aIP := ipOf(t, ha, "a", "prod")
	ns := ovInspect(t, hc, "prod").VXNet.Namespace
	ha.Kill()
	// A's advertisement leaves with its lease (TTL 2 s); its address stays
	// allocated to A in IPAM (the collector waits --cluster-ipam-grace, 1 min).
	if !eventually(15*time.Second, func() bool {
		_, neigh := ovKernel(t, hc, ns)
		return !strings.Contains(neigh, aIP+" ")
	}) {
		t.Fatalf("h0 still holds dead a (%s) after its host died", aIP)
	}

	bID := nodeID(t, hb)
	hexID := func(c byte) string { return strings.Repeat(string(c), 64) }
	claims := map[string]string{}
	for _, x := range []struct{ ep, ip, mac, name string }{
		{hexID('7'), aIP, "02:00:00:00:77:77", "a"},               // allocated to dead host A
		{hexID('8'), "10.97.0.200", "02:00:00:00:77:78", "ghost"}, // never allocated
	} {
		b, _ := json.Marshal(map[string]any{"NetworkID": netID, "EndpointID": x.ep, "IP": x.ip, "MAC": x.mac,
			"VTEP": hb.Addr.String(), "NodeID": bID, "Name": x.name})
		k := cluster.DefaultPrefix + "/adverts/" + bID + "/" + netID + "/" + x.ep
		claims[k] = string(b)
		etcdPut(t, c, hb, k, string(b))
	}
	var missing []string
	if !eventually(15*time.Second, func() bool {
		log, _ := os.ReadFile(hc.LogPath)
		missing = nil
		for k := range claims {
			if !strings.Contains(string(log), "key="+k) {
				missing = append(missing, k)
			}
		}
		return len(missing) == 0
	}) {
		t.Errorf("h0 logged no line naming %v", missing)
	}
	time.Sleep(3 * time.Second) // a resync (2 s) passes: anything to be programmed is
	fdb, neigh := ovKernel(t, hc, ns)
	if strings.Contains(fdb, "77:7") || strings.Contains(neigh, aIP+" ") || strings.Contains(neigh, "10.97.0.200") {
		t.Errorf("h0 programmed a claim of member B:\nfdb:\n%s\nneigh:\n%s", fdb, neigh)
	}
	for _, name := range []string{"a", "ghost"} {
		if got := strings.Join(nslookup(t, hc, "c", name), " "); strings.Contains(got, aIP) || strings.Contains(got, "10.97.0.200") {
			t.Errorf("c resolves %s to %v (from B's claim)", name, got)
		}
	}
	if hosts := cli(t, hc, "exec", "c", "cat", "/etc/hosts"); strings.Contains(hosts, aIP) || strings.Contains(hosts, "ghost") {
		t.Errorf("c's hosts file holds B's claim:\n%s", hosts)
	}
	if !ping(t, hc, "c", "b") {
		t.Error("c cannot ping b (B's legitimate container) after the claims")
	}
	if got, bIP := nslookup(t, hc, "c", "b"), ipOf(t, hb, "b", "prod"); !same(got, bIP) {
		t.Errorf("c resolves b to %v, want %s", got, bIP)
	}
}
