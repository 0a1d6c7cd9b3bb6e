package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
)

// state is what a refused request must leave as it was: the networks and
// containers the API lists, and what the fake drivers and runtime hold.
func state(t *testing.T, h http.Handler, env *enginetest.Env) string {
	t.Helper()
	var out []string
	for _, path := range []string{"/networks", "/containers/json?all=1"} {
		w := do(t, h, "GET", path, "")
		var objs []struct{ Id string }
		if err := json.Unmarshal(w.Body.Bytes(), &objs); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		for _, o := range objs {
			out = append(out, path+" "+o.Id)
		}
	}
	ids, _ := env.Runtime.List(context.Background())
	out = append(out, ids...)
	for typ, d := range env.Drivers {
		out = append(out, fmt.Sprintf("%s networks %d joined %d", typ, d.Networks(), d.Joined()))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// checkRefusal: a refused request answers a known client error with a
// one-line JSON message (or dockerd's own two-part "invalid endpoint
// settings:\n..." wording).
func checkRefusal(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	switch w.Code {
	case 400, 403, 404, 409:
	default:
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	if msg := message(t, w); msg == "" || (strings.Contains(msg, "\n") && !strings.Contains(msg, "invalid endpoint settings:\n")) {
		t.Fatalf("error message %q", msg)
	}
}

// A network create request against the real engine either makes a network
// that inspect shows and rm removes without a trace, or is refused with a
// client error and leaves nothing behind.
func FuzzNetworkCreateAgainstEngine(f *testing.F) {
	for _, s := range []string{
		`{"Name":"n"}`,
		`{"Name":"n","IPAM":{"Config":[{"Subnet":"192.0.2.0/24","IPRange":"192.0.2.128/25","Gateway":"192.0.2.1","AuxiliaryAddresses":{"r":"192.0.2.2"}}]}}`,
		`{"Name":"n","IPAM":{"Config":[{"Subnet":"172.17.0.0/16"}]}}`,
		`{"Name":"n","IPAM":{"Config":[{"Subnet":"192.0.2.0/24","Gateway":"198.51.100.1"}]}}`,
		`{"Name":"n","Options":{"com.docker.network.driver.mtu":"9"}}`,
		`{"Name":"n","Options":{"com.docker.network.bridge.name":"a/b"}}`,
		`{"Name":"n","Driver":"macvlan","Options":{"parent":"eth0.5000"}}`,
		`{"Name":"n","Driver":"overlay"}`, `{"Name":"n","Driver":"host"}`, `{"Name":"bridge"}`,
		`{"Name":"n","EnableIPv6":true}`, `{"Name":"n","EnableIPv6":true,"IPAM":{"Config":[{"Subnet":"fd00::/64"}]}}`,
		`{"Name":"n/x"}`, `{"Name":""}`, `{"Name":"n","Internal":true,"Attachable":true,"Labels":{"a":"b"}}`,
	} {
		f.Add(s)
	}
	env := enginetest.New(f)
	h := api.NewServer(env.Engine, api.Options{})
	f.Fuzz(func(t *testing.T, body string) {
		before := state(t, h, env)
		w := do(t, h, "POST", "/networks/create", body)
		if w.Code != 201 {
			checkRefusal(t, w)
			if after := state(t, h, env); after != before {
				t.Fatalf("refused create (%d %s) left:\n%s\nwas:\n%s", w.Code, w.Body.String(), after, before)
			}
			return
		}
		var created struct{ Id string }
		if err := json.Unmarshal(w.Body.Bytes(), &created); err != nil || created.Id == "" {
			t.Fatalf("create answered %s", w.Body.String())
		}
		if w := do(t, h, "GET", "/networks/"+created.Id, ""); w.Code != 200 {
			t.Fatalf("inspect of a created network: %d %s", w.Code, w.Body.String())
		}
		if w := do(t, h, "DELETE", "/networks/"+created.Id, ""); w.Code != 204 {
			t.Fatalf("rm of a created network: %d %s", w.Code, w.Body.String())
		}
		if after := state(t, h, env); after != before {
			t.Fatalf("create then rm left:\n%s\nwas:\n%s", after, before)
		}
	})
}

// A container create request against the real engine either makes a
// container that rm -f removes without a trace, or is refused with a
// client error and leaves nothing behind (no record, no runtime
// container, no endpoint).
func FuzzContainerCreateAgainstEngine(f *testing.F) {
	for _, s := range []string{
		`{"Image":"busybox","Cmd":["sleep","9"]}`,
		`{"Image":"busybox","HostConfig":{"NetworkMode":"none"}}`,
		`{"Image":"busybox","HostConfig":{"NetworkMode":"host"}}`,
		`{"Image":"busybox","HostConfig":{"NetworkMode":"nosuch"}}`,
		`{"Image":"nosuch"}`, `{"Image":"busybox","Env":["=x"]}`,
		`{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"bridge":{"IPAMConfig":{"IPv4Address":"172.17.0.9"}}}}}`,
		`{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"bridge":{"IPAMConfig":{"IPv4Address":"10.0.0.9"}}}}}`,
		`{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"bridge":{"Aliases":["a"]}}}}`,
		`{"Image":"busybox","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"0"}]}}}`,
		`{"Image":"busybox","HostConfig":{"Links":["nosuch:x"]}}`,
		`{"Image":"busybox","HostConfig":{"ExtraHosts":["h:192.0.2.1"],"Dns":["192.0.2.53"]}}`,
		`{"Image":"busybox","Hostname":"a b"}`,
	} {
		f.Add("c1", s)
	}
	f.Add("bad name", `{"Image":"busybox"}`)
	env := enginetest.New(f)
	h := api.NewServer(env.Engine, api.Options{})
	f.Fuzz(func(t *testing.T, name, body string) {
		before := state(t, h, env)
		w := do(t, h, "POST", "/containers/create?name="+url.QueryEscape(name), body)
		if w.Code != 201 {
			checkRefusal(t, w)
			if after := state(t, h, env); after != before {
				t.Fatalf("refused create (%d %s) left:\n%s\nwas:\n%s", w.Code, w.Body.String(), after, before)
			}
			return
		}
		var created struct{ Id string }
		if err := json.Unmarshal(w.Body.Bytes(), &created); err != nil || created.Id == "" {
			t.Fatalf("create answered %s", w.Body.String())
		}
		if w := do(t, h, "DELETE", "/containers/"+created.Id+"?force=1", ""); w.Code != 204 {
			t.Fatalf("rm -f of a created container: %d %s", w.Code, w.Body.String())
		}
		if after := state(t, h, env); after != before {
			t.Fatalf("create then rm left:\n%s\nwas:\n%s", after, before)
		}
	})
}
