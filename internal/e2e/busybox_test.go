package e2e

import (
	"strings"
	"testing"
	"time"
)

// The default busybox image's network applets work in containers: wget
// and nc reach a busybox httpd by its container name (the name resolved
// through the embedded DNS server by the static binary's resolver) and
// nslookup answers it.
func TestBusyboxNetworkApplets(t *testing.T) {
	_, h := single(t)
	h.MustDocker(t, "network", "create", "bbnet")
	h.MustDocker(t, "run", "-d", "--name", "web", "--network", "bbnet", "busybox", "sh", "-c",
		"mkdir /www && echo served > /www/index.html && httpd -f -p 80 -h /www")
	var out string
	ok := eventually(20*time.Second, func() bool {
		o, _, code := h.Docker("run", "--rm", "--network", "bbnet", "busybox", "wget", "-q", "-O-", "http://web/index.html")
		out = o
		return code == 0
	})
	if !ok || out != "served\n" {
		t.Errorf("wget http://web/: %q", out)
	}
	if o, errOut, code := h.Docker("run", "--rm", "--network", "bbnet", "busybox", "sh", "-c",
		`printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc web 80`); code != 0 || !strings.Contains(o, "200 OK") || !strings.Contains(o, "served") {
		t.Errorf("nc web 80: exit %d %q %q", code, o, errOut)
	}
	if o, errOut, code := h.Docker("run", "--rm", "--network", "bbnet", "busybox", "nslookup", "web"); code != 0 || !strings.Contains(o, "Name:") {
		t.Errorf("nslookup web: exit %d %q %q", code, o, errOut)
	}
	h.MustDocker(t, "rm", "-f", "web")
	h.MustDocker(t, "network", "rm", "bbnet")
}
