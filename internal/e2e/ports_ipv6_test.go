package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/netns"
)

// udpEchoDir builds testdata/udpecho (static, so it runs in the busybox
// image) into a directory of the test, to bind-mount into containers.
func udpEchoDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, "udpecho"), "./internal/e2e/testdata/udpecho")
	cmd.Dir = moduleRootDir(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build udpecho: %v\n%s", err, out)
	}
	return dir
}

// udpEchoCmd runs udpecho on port 90 (53 is the embedded DNS server's) answering "TAG:...".
func udpEchoCmd(tag string) []string { return []string{"/t/udpecho", "90", tag} }

// udpAsk sends msg to addr (host:port) over UDP from inside ns and returns
// the answer, "" if none came within 2 s. The socket is made inside the
// namespace and stays there.
func udpAsk(ns *harness.NS, addr, msg string) string {
	var c net.Conn
	if err := netns.Do(ns.Path, func() error {
		var err error
		c, err = net.Dial("udp", addr)
		return err
	}); err != nil {
		return ""
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		return ""
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// udpFree reports whether a UDP socket can be bound to addr in ns (nothing
// listens there).
func udpFree(ns *harness.NS, addr string) bool {
	var pc net.PacketConn
	err := netns.Do(ns.Path, func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

// fetch6 fetches http://[addr]:port/ from inside ns.
func fetch6(ns *harness.NS, addr, port string) string {
	out, _ := ns.Exec("busybox", "sh", "-c", httpGet, addr, port)
	return body(out)
}

// IPv6 published ports: -p 8080:80 on a dual-stack bridge network answers
// on the host's IPv6 address from the outside namespace (IPv6 DNAT) and on
// [::1] from the host itself (the userland proxy: IPv6 cannot route a
// loopback source out of the host); -p [ADDR]:PORT:80 only there; an
// IPv4-only container is reached on [::1] through the proxy too. UDP the
// same way: a UDP echo in a container answers on the host's IPv6 and IPv4
// addresses (DNAT) and on [::1] (the proxy's UDP flows), published on
// every address and on [::1] alone. Refused: an IPv6 host address for a
// container without IPv6, SCTP on ::1. Ports come back after kill -9 and a
// restart; after rm nothing listens on them.
func TestPublishedPortsIPv6(t *testing.T) {
	c, h := single(t)
	out := c.Outside()
	out.MustExec(t, "ip", "-6", "addr", "add", "2001:db8:ff::254/64", "dev", "eth0", "nodad")
	h.MustExec(t, "ip", "-6", "addr", "add", "2001:db8:ff::10/64", "dev", "eth0", "nodad")
	const host6 = "2001:db8:ff::10"

	cli(t, h, "network", "create", "--ipv6", "--subnet", "10.88.0.0/24", "--subnet", "fd00:88::/64", "p6")
	cli(t, h, "network", "create", "--subnet", "10.89.0.0/24", "p4")
	cli(t, h, append([]string{"run", "-d", "--name", "web", "--net", "p6", "-p", "8080:80", "-p", "[::1]:8081:80",
		"-p", "[" + host6 + "]:8082:80", "busybox"}, httpdCmd("web")...)...)
	cli(t, h, append([]string{"run", "-d", "--name", "web4", "--net", "p4", "-p", "8090:80", "busybox"}, httpdCmd("web4")...)...)
	bin := udpEchoDir(t) + ":/t:ro"
	// The docker CLI: vxnet's own run has no -v.
	h.MustDocker(t, append([]string{"run", "-d", "--name", "echo", "--net", "p6", "-v", bin, "-p", "5353:90/udp",
		"-p", "[::1]:5354:90/udp", "busybox"}, udpEchoCmd("echo")...)...)
	h.MustDocker(t, append([]string{"run", "-d", "--name", "echo4", "--net", "p4", "-v", bin, "-p", "5390:90/udp",
		"busybox"}, udpEchoCmd("echo4")...)...)

	check := func(when string) {
		t.Helper()
		wantAnswer(t, when+": outside -> [host IPv6]:8080", "hello from web", func() string { return fetch6(out, host6, "8080") })
		wantAnswer(t, when+": outside -> host IPv4:8080", "hello from web", func() string { return fetch(out, h.Addr.String()+":8080") })
		wantAnswer(t, when+": outside -> [host IPv6]:8082", "hello from web", func() string { return fetch6(out, host6, "8082") })
		wantAnswer(t, when+": host -> [::1]:8081", "hello from web", func() string { return fetch6(h.NS(), "::1", "8081") })
		wantAnswer(t, when+": host -> [::1]:8080", "hello from web", func() string { return fetch6(h.NS(), "::1", "8080") })
		wantAnswer(t, when+": host -> [::1]:8090 (IPv4-only container)", "hello from web4", func() string { return fetch6(h.NS(), "::1", "8090") })
		// UDP: DNAT on the host's addresses, the proxy on [::1].
		wantAnswer(t, when+": outside -> [host IPv6]:5353/udp", "echo:a", func() string { return udpAsk(out, "["+host6+"]:5353", "a") })
		wantAnswer(t, when+": outside -> host IPv4:5353/udp", "echo:b", func() string { return udpAsk(out, h.Addr.String()+":5353", "b") })
		wantAnswer(t, when+": host -> [::1]:5353/udp", "echo:c", func() string { return udpAsk(h.NS(), "[::1]:5353", "c") })
		wantAnswer(t, when+": host -> [::1]:5354/udp", "echo:d", func() string { return udpAsk(h.NS(), "[::1]:5354", "d") })
		wantAnswer(t, when+": host -> [::1]:5390/udp (IPv4-only container)", "echo4:e", func() string { return udpAsk(h.NS(), "[::1]:5390", "e") })
	}
	check("running")
	// Published on ::1 only: not on the host's other addresses.
	if got := fetch6(out, host6, "8081"); got != "" {
		t.Errorf("outside -> [host IPv6]:8081 (published on ::1 only) answered %q", got)
	}
	if got := udpAsk(out, "["+host6+"]:5354", "x"); got != "" {
		t.Errorf("outside -> [host IPv6]:5354/udp (published on ::1 only) answered %q", got)
	}
	// As Docker: a binding on every address shows 0.0.0.0 and [::] when
	// IPv6 serves it too; an IPv4-only container shows only 0.0.0.0.
	if got := strings.Fields(cli(t, h, "port", "web", "80")); !slices.Contains(got, "0.0.0.0:8080") || !slices.Contains(got, "[::]:8080") ||
		!slices.Contains(got, "[::1]:8081") || !slices.Contains(got, "["+host6+"]:8082") {
		t.Errorf("port web 80 = %q, want 0.0.0.0:8080, [::]:8080, [::1]:8081 and [%s]:8082", got, host6)
	}
	if got := strings.Fields(cli(t, h, "port", "web4", "80")); len(got) != 1 || got[0] != "0.0.0.0:8090" {
		t.Errorf("port web4 80 = %q, want only 0.0.0.0:8090", got)
	}
	for _, x := range []struct {
		args []string
		want string
	}{
		{append([]string{"run", "-d", "--net", "p4", "-p", "[" + host6 + "]:8083:80", "busybox"}, httpdCmd("x")...), "has no IPv6 address"},
		{append([]string{"run", "-d", "--net", "p6", "-p", "[::1]:8084:80/sctp", "busybox"}, httpdCmd("x")...), "cannot publish SCTP ports on ::1"},
	} {
		if _, stderr, code := h.CLI(x.args...); code == 0 || !strings.Contains(stderr, x.want) {
			t.Errorf("%v: exit %d, %q; want a refusal with %q", x.args, code, stderr, x.want)
		}
	}

	// kill -9 and restart: the DNAT and the proxies come back.
	h.Kill()
	h.Start()
	check("after kill -9 and restart")
	// rm closes them.
	cli(t, h, "rm", "-f", "web")
	if got := fetch6(h.NS(), "::1", "8081"); got != "" {
		t.Errorf("[::1]:8081 answered %q after rm", got)
	}
	if got := fetch6(out, host6, "8080"); got != "" {
		t.Errorf("[host IPv6]:8080 answered %q after rm", got)
	}
	cli(t, h, "rm", "-f", "echo", "echo4")
	for _, at := range []string{"[::1]:5353", "[::1]:5354", "[::1]:5390"} {
		if got := udpAsk(h.NS(), at, "z"); got != "" {
			t.Errorf("%s/udp answered %q after rm", at, got)
		}
		if !udpFree(h.NS(), at) {
			t.Errorf("%s/udp still bound after rm", at)
		}
	}
	if got := udpAsk(out, "["+host6+"]:5353", "z"); got != "" {
		t.Errorf("[host IPv6]:5353/udp answered %q after rm", got)
	}
}
