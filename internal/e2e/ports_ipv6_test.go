package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/vxnet/vxnet/internal/harness"
)

// fetch6 fetches http://[addr]:port/ from inside ns.
func fetch6(ns *harness.NS, addr, port string) string {
	out, _ := ns.Exec("busybox", "sh", "-c", httpGet, addr, port)
	return body(out)
}

// IPv6 published ports: -p 8080:80 on a dual-stack bridge network answers
// on the host's IPv6 address from the outside namespace (IPv6 DNAT) and on
// [::1] from the host itself (the userland proxy: IPv6 cannot route a
// loopback source out of the host); -p [ADDR]:PORT:80 only there; an
// IPv4-only container is reached on [::1] through the proxy too. Refused:
// an IPv6 host address for a container without IPv6, UDP on ::1. Ports
// come back after kill -9 and a restart.
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

	check := func(when string) {
		t.Helper()
		wantAnswer(t, when+": outside -> [host IPv6]:8080", "hello from web", func() string { return fetch6(out, host6, "8080") })
		wantAnswer(t, when+": outside -> host IPv4:8080", "hello from web", func() string { return fetch(out, h.Addr.String()+":8080") })
		wantAnswer(t, when+": outside -> [host IPv6]:8082", "hello from web", func() string { return fetch6(out, host6, "8082") })
		wantAnswer(t, when+": host -> [::1]:8081", "hello from web", func() string { return fetch6(h.NS(), "::1", "8081") })
		wantAnswer(t, when+": host -> [::1]:8080", "hello from web", func() string { return fetch6(h.NS(), "::1", "8080") })
		wantAnswer(t, when+": host -> [::1]:8090 (IPv4-only container)", "hello from web4", func() string { return fetch6(h.NS(), "::1", "8090") })
	}
	check("running")
	// Published on ::1 only: not on the host's other addresses.
	if got := fetch6(out, host6, "8081"); got != "" {
		t.Errorf("outside -> [host IPv6]:8081 (published on ::1 only) answered %q", got)
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
		{append([]string{"run", "-d", "--net", "p6", "-p", "[::1]:8084:80/udp", "busybox"}, httpdCmd("x")...), "only TCP ports on ::1"},
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
}
