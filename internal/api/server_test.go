package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
)

func do(t *testing.T, h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func message(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var m struct{ Message string }
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("error body %q: %v", w.Body.String(), err)
	}
	return m.Message
}

func TestHandlers(t *testing.T) {
	h := api.NewServer(enginetest.New(t).Engine, api.Options{Version: "t"})
	tests := []struct {
		name, method, path, body string
		status                   int
		contains                 string // in the body
	}{
		{"ping", "GET", "/_ping", "", 200, "OK"},
		{"ping versioned", "GET", "/v1.44/_ping", "", 200, "OK"},
		{"ping head", "HEAD", "/_ping", "", 200, ""},
		{"version", "GET", "/version", "", 200, `"ApiVersion":"` + api.APIVersion + `"`},
		{"info", "GET", "/v1.51/info", "", 200, `"OSType":"linux"`},
		{"too new", "GET", "/v1.99/version", "", 400, "client version 1.99 is too new. Maximum supported API version is " + api.APIVersion},
		{"too old", "GET", "/v1.12/version", "", 400, "client version 1.12 is too old"},
		{"unknown route", "GET", "/v1.51/distribution/x/json", "", 404, "page not found"},
		{"plugins", "GET", "/v1.51/plugins", "", 200, "[]"},
		{"plugins bad filter", "GET", `/plugins?filters={"x":{"y":true}}`, "", 400, "invalid filter 'x'"},
		{"plugin inspect", "GET", "/plugins/p1/json", "", 404, `plugin \"p1\" not found`},
		{"swarm inspect", "GET", "/v1.51/swarm", "", 503, `This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.`},
		{"swarm services", "GET", "/services", "", 503, "This node is not a swarm manager."},
		{"swarm node inspect", "GET", "/nodes/abc", "", 503, "This node is not a swarm manager."},
		{"swarm leave", "POST", "/swarm/leave", "", 503, "This node is not part of a swarm"},
		{"swarm init", "POST", "/swarm/init", `{}`, 400, "vxnet does not support swarm mode"},
		{"info swarm", "GET", "/info", "", 200, `"LocalNodeState":"inactive"`},
		{"info seccomp", "GET", "/info", "", 200, `"SecurityOptions":["name=seccomp,profile=builtin"]`},
		{"network create trailing content", "POST", "/networks/create", `{"Name":"n9"} {"Name":"n10"}`, 400, "unexpected content after JSON"},
		{"network create trailing garbage", "POST", "/networks/create", `{"Name":"n9"}]`, 400, "unexpected content after JSON"},
		{"create memory too small", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"Memory":1024}}`, 400, "Minimum memory limit allowed is 6MB"},
		{"create swap without memory", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"MemorySwap":100000000}}`, 400, "You should always set the Memory limit when using Memoryswap limit"},
		{"create swap below memory", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"Memory":100000000,"MemorySwap":10000000}}`, 400, "Minimum memoryswap limit should be larger than memory limit"},
		{"create too many cpus", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"NanoCpus":1000000000000}}`, 400, "Range of CPUs is from 0.01 to"},
		{"create relative workdir", "POST", "/containers/create", `{"Image":"busybox","WorkingDir":"w"}`, 400, "the working directory 'w' is invalid, it needs to be an absolute path"},
		{"create bad stop signal", "POST", "/containers/create", `{"Image":"busybox","StopSignal":"SIGNOPE"}`, 400, "invalid signal: SIGNOPE"},
		{"create bad ulimit", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"Ulimits":[{"Name":"nofile","Soft":10,"Hard":5}]}}`, 400, "ulimit soft limit must be less than or equal to hard limit"},
		{"create unknown ulimit", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"Ulimits":[{"Name":"nosuch","Soft":1,"Hard":1}]}}`, 400, "invalid ulimit type: nosuch"},
		{"create negative shm", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"ShmSize":-1}}`, 400, "SHM size can not be less than 0"},
		{"create host sysctl", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"Sysctls":{"kernel.panic":"1"}}}`, 400, "sysctl 'kernel.panic=1' is not allowed"},
		{"create net sysctl on host network", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"NetworkMode":"host","Sysctls":{"net.ipv4.ip_forward":"1"}}}`, 400, "not allowed in host network namespace"},
		{"create unknown cap", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"CapAdd":["FLY"]}}`, 400, `unknown capability: \"CAP_FLY\"`},
		{"create selinux label", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"SecurityOpt":["label=type:x"]}}`, 400, "vxnet does not support --security-opt label"},
		{"create bad security opt", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"SecurityOpt":["nonsense"]}}`, 400, `invalid --security-opt 1: \"nonsense\"`},
		{"create bad seccomp profile", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"SecurityOpt":["seccomp={\"defaultAction\":7}"]}}`, 400, "invalid seccomp profile"},
		{"create bad tmpfs option", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"Tmpfs":{"/t":"size=1m,bogus"}}}`, 400, `invalid tmpfs option \"bogus\"`},
		{"create tmpfs on root", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"Tmpfs":{"/":""}}}`, 400, "destination can't be '/'"},
		{"create tmpfs on a bind", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"Binds":["/tmp:/x"],"Tmpfs":{"/x":""}}}`, 400, "Duplicate mount point: /x"},
		{"create tmpfs mount with source", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"tmpfs","Source":"/tmp","Target":"/x"}]}}`, 400, "field Source must not be specified"},
		{"create uts host with hostname", "POST", "/containers/create", `{"Image":"busybox","Hostname":"h","HostConfig":{"UTSMode":"host"}}`, 400, "conflicting options: hostname and the UTS mode"},
		{"create pid of a container", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"PidMode":"container:x"}}`, 400, `vxnet does not support HostConfig.PidMode \"container:x\"`},
		{"create ipc sysctl on host ipc", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"IpcMode":"host","Sysctls":{"kernel.shmmax":"1"}}}`, 400, "not allowed in host IPC namespace"},
		{"container create trailing content", "POST", "/containers/create", `{"Image":"busybox"}x`, 400, "unexpected content after JSON"},
		{"network list", "GET", "/networks", "", 200, `"Name":"bridge"`},
		{"network list filter", "GET", `/networks?filters={"name":{"none":true}}`, "", 200, `"Name":"none"`},
		{"network list old filter form", "GET", `/networks?filters={"type":["builtin"]}`, "", 200, `"Name":"host"`},
		{"network list bad filter json", "GET", `/networks?filters={`, "", 400, "invalid filters"},
		{"network inspect missing", "GET", "/networks/ghost", "", 404, "network ghost not found"},
		{"network create", "POST", "/networks/create", `{"Name":"n1","IPAM":{"Config":[{"Subnet":"192.0.2.0/24"}]}}`, 201, `"Id":"`},
		{"network create dup", "POST", "/networks/create", `{"Name":"n1"}`, 409, "network with name n1 already exists"},
		{"network create bad json", "POST", "/networks/create", `{"Name":`, 400, "invalid JSON"},
		{"network create bad subnet", "POST", "/networks/create", `{"Name":"n2","IPAM":{"Config":[{"Subnet":"192.0.2.0/33"}]}}`, 400, "invalid network config: invalid subnet 192.0.2.0/33: invalid CIDR block notation"},
		{"network create bad gateway and range", "POST", "/networks/create", `{"Name":"n","IPAM":{"Config":[{"Subnet":"10.9.0.0/24","IPRange":"x","Gateway":"y"}]}}`, 400, "invalid network config: * invalid ip-range x: invalid CIDR block notation * invalid gateway y: invalid address"},
		{"network create noncanonical", "POST", "/networks/create", `{"Name":"n2","IPAM":{"Config":[{"Subnet":"192.0.2.1/24"}]}}`, 400, "it should be 192.0.2.0/24"},
		{"network create no name", "POST", "/networks/create", `{"Name":" "}`, 400, "network name cannot be empty"},
		{"network create without IPv4 or IPv6", "POST", "/networks/create", `{"Name":"v6","EnableIPv4":false}`, 400, "IPv4 or IPv6 must be enabled"},
		{"network create ipam driver", "POST", "/networks/create", `{"Name":"d","IPAM":{"Driver":"dhcp"}}`, 400, "default IPAM driver"},
		{"network create empty body", "POST", "/networks/create", "", 400, "empty request body"},
		{"network inspect", "GET", "/networks/n1?verbose=true", "", 200, `"Config":[{"Subnet":"192.0.2.0/24","Gateway":"192.0.2.1"}]`},
		{"network remove predefined", "DELETE", "/networks/host", "", 403, "host is a pre-defined network and cannot be removed"},
		{"network connect bad json", "POST", "/networks/n1/connect", `[]`, 400, "invalid JSON"},
		{"network connect no container", "POST", "/networks/n1/connect", `{}`, 400, "container name or ID is required"},
		{"image list filter vxnet lacks", "GET", `/images/json?filters={"label":{"a":true}}`, "", 400, `vxnet does not support the images filter \"label\"`},
		{"image list old filter form", "GET", `/images/json?filters={"reference":["busybox"]}`, "", 200, `busybox`},
		{"image list bad filter json", "GET", `/images/json?filters={`, "", 400, "invalid filters"},
		{"network prune filter", "POST", `/networks/prune?filters={"until":{"1h":true}}`, "", 400, "prune filters"},
		{"container create no config", "POST", "/containers/create", `{}`, 400, "config cannot be empty"},
		{"container create no image", "POST", "/containers/create", `{"Cmd":["true"]}`, 400, "image name is required"},
		{"container create missing image", "POST", "/containers/create", `{"Image":"nope"}`, 404, "Unable to find image 'nope:latest' locally"},
		{"container create host and another network", "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"NetworkMode":"host"},"NetworkingConfig":{"EndpointsConfig":{"host":{},"b":{}}}}`, 400, "conflicting options"},
		{"container create endpoint driver option", "POST", "/containers/create", `{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"a":{"DriverOpts":{"x":"y"}}}}}`, 400, "endpoint driver option x"},
		{"container create bad MAC", "POST", "/containers/create", `{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"a":{"MacAddress":"01:00:00:00:00:01"}}}}`, 400, "invalid MAC address"},
		{"container create", "POST", "/containers/create?name=c1", `{"Image":"busybox","Cmd":["sleep","9"],"HostConfig":{"NetworkMode":"n1"},"NetworkingConfig":{"EndpointsConfig":{"n1":{"IPAMConfig":{"IPv4Address":"192.0.2.77"},"Aliases":["db"]}}}}`, 201, `"Id":"`},
		{"container inspect", "GET", "/containers/c1/json", "", 200, `"IPAddress":"192.0.2.77"`},
		{"container inspect missing", "GET", "/containers/zz/json", "", 404, "No such container: zz"},
		{"container logs no stream", "GET", "/containers/c1/logs", "", 400, "you must choose at least one stream"},
		{"container start", "POST", "/containers/c1/start", "", 204, ""},
		{"container start again", "POST", "/containers/c1/start", "", 304, ""},
		{"container list", "GET", "/containers/json", "", 200, `"Names":["/c1"]`},
		{"container list bad filter", "GET", `/containers/json?filters={"ancestor":{"x":true}}`, "", 400, "invalid filter 'ancestor'"},
		{"exec create no cmd", "POST", "/containers/c1/exec", `{"AttachStdout":true}`, 400, "No exec command specified"},
		{"exec create user", "POST", "/containers/c1/exec", `{"Cmd":["id"],"User":"1000"}`, 201, `"Id":"`},
		{"exec create relative workdir", "POST", "/containers/c1/exec", `{"Cmd":["pwd"],"WorkingDir":"tmp"}`, 400, "the working directory 'tmp' is invalid"},
		{"kill bad signal", "POST", "/containers/c1/kill?signal=NOSUCH", "", 400, "cannot kill container: c1: invalid signal: NOSUCH"},
		{"kill missing", "POST", "/containers/nosuch/kill", "", 404, "cannot kill container: nosuch: No such container: nosuch"},
		{"container list label filter", "GET", `/containers/json?filters={"label":{"nosuch":true}}`, "", 200, "[]"},
		{"container list limit", "GET", "/containers/json?limit=1", "", 200, `"Names":["/c1"]`},
		{"container list bad limit", "GET", "/containers/json?limit=x", "", 400, `invalid limit \"x\"`},
		{"container list size", "GET", "/containers/json?size=1", "", 400, "vxnet does not support container sizes"},
		{"exec create tty", "POST", "/containers/c1/exec", `{"Cmd":["sh"],"Tty":true}`, 201, `"Id":"`},
		{"exec start missing", "POST", "/exec/nope/start", `{}`, 404, "No such exec instance: nope"},
		{"exec inspect missing", "GET", "/exec/nope/json", "", 404, "No such exec instance: nope"},
		{"container stop bad t", "POST", "/containers/c1/stop?t=soon", "", 400, "invalid value for t"},
		{"container remove running", "DELETE", "/containers/c1", "", 409, "container is running"},
		{"container stop", "POST", "/containers/c1/stop?t=1", "", 204, ""},
		{"container stop again", "POST", "/containers/c1/stop", "", 304, ""},
		{"container wait exited", "POST", "/containers/c1/wait", "", 200, `"StatusCode":137`},
		{"container wait bad condition", "POST", "/containers/c1/wait?condition=soon", "", 400, "invalid condition"},
		{"container remove", "DELETE", "/containers/c1?force=1", "", 204, ""},
		{"network remove", "DELETE", "/networks/n1", "", 204, ""},
		{"network prune", "POST", "/networks/prune", "", 200, `{"NetworksDeleted":[]}`},
		{"image list", "GET", "/images/json", "", 200, `"RepoTags":["busybox:latest"]`},
		{"image pull", "POST", "/images/create?fromImage=alpine&tag=latest", "", 400, "image store cannot do that"},
		{"image import", "POST", "/images/create?fromSrc=-&repo=r1", "tarbytes", 200, `{"status":"sha256:`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := do(t, h, tc.method, tc.path, tc.body)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tc.status, w.Body.String())
			}
			if !strings.Contains(w.Body.String(), tc.contains) {
				t.Fatalf("body %q lacks %q", w.Body.String(), tc.contains)
			}
			if w.Code >= 400 {
				if ct := w.Header().Get("Content-Type"); ct != "application/json" {
					t.Fatalf("error content type %q", ct)
				}
				if msg := message(t, w); strings.Contains(msg, "\n") || msg == "" {
					t.Fatalf("error message %q is not one line", msg)
				}
			}
			if w.Header().Get("Api-Version") != api.APIVersion || w.Header().Get("Ostype") != "linux" {
				t.Fatalf("headers %v", w.Header())
			}
		})
	}
}

// A backend without the Streamer ability refuses a TTY or stdin at exec
// create instead of ignoring them.
func TestExecTTYWithoutStreamer(t *testing.T) {
	h := api.NewServer(struct{ api.Backend }{enginetest.New(t).Engine}, api.Options{})
	if w := do(t, h, "POST", "/containers/create?name=c1", `{"Image":"busybox","Cmd":["sleep","9"]}`); w.Code != 201 {
		t.Fatal(w.Body.String())
	}
	do(t, h, "POST", "/containers/c1/start", "")
	for _, body := range []string{`{"Cmd":["sh"],"Tty":true}`, `{"Cmd":["sh"],"AttachStdin":true}`} {
		w := do(t, h, "POST", "/containers/c1/exec", body)
		if w.Code != 400 || !strings.Contains(message(t, w), "neither a TTY nor stdin") {
			t.Fatalf("exec create %s: %d %s", body, w.Code, w.Body.String())
		}
	}
}

func TestImportNameTagging(t *testing.T) {
	h := api.NewServer(enginetest.New(t).Engine, api.Options{})
	for _, tc := range []struct{ query, want string }{
		{"repo=a", "a:latest"},
		{"repo=a&tag=1", "a:1"},
		{"repo=a:2", "a:2"},
		{"repo=reg:5000/a", "reg:5000/a:latest"},
	} {
		if w := do(t, h, "POST", "/images/create?fromSrc=-&"+tc.query, "x"); w.Code != 200 {
			t.Fatalf("%s: %d %s", tc.query, w.Code, w.Body.String())
		}
		w := do(t, h, "GET", "/images/json", "")
		if !strings.Contains(w.Body.String(), `"`+tc.want+`"`) {
			t.Errorf("%s: images %s lack %s", tc.query, w.Body.String(), tc.want)
		}
	}
}

func TestNetworkListDangling(t *testing.T) {
	h := api.NewServer(enginetest.New(t).Engine, api.Options{})
	do(t, h, "POST", "/networks/create", `{"Name":"used"}`)
	do(t, h, "POST", "/networks/create", `{"Name":"idle"}`)
	if w := do(t, h, "POST", "/containers/create", `{"Image":"busybox","HostConfig":{"NetworkMode":"used"}}`); w.Code != 201 {
		t.Fatal(w.Body.String())
	}
	w := do(t, h, "GET", `/networks?filters={"dangling":{"true":true}}`, "")
	var nets []struct{ Name string }
	if err := json.Unmarshal(w.Body.Bytes(), &nets); err != nil || len(nets) != 1 || nets[0].Name != "idle" {
		t.Fatalf("dangling networks: %s", w.Body.String())
	}
}

// serve runs the handler on a unix socket and returns its path.
func serve(t *testing.T, b api.Backend) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vxapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	l, err := api.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: api.NewServer(b, api.Options{})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// readFrames demultiplexes a Docker stream into stdout and stderr.
func readFrames(t *testing.T, r io.Reader) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return out.String(), errb.String()
			}
			t.Fatalf("read frame header: %v", err)
		}
		buf := make([]byte, binary.BigEndian.Uint32(hdr[4:]))
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatalf("read frame: %v", err)
		}
		switch hdr[0] {
		case 1:
			out.Write(buf)
		case 2:
			errb.Write(buf)
		default:
			t.Fatalf("frame for stream %d", hdr[0])
		}
	}
}

// Exec start hijacks the connection: 101 when asked to upgrade, 200 with
// the raw stream otherwise; the exit code is then in exec inspect.
func TestExecHijack(t *testing.T) {
	sock := serve(t, enginetest.New(t).Engine)
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	post := func(path, body string) *http.Response {
		resp, err := c.Post("http://vxnet"+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post("/containers/create?name=box", `{"Image":"busybox","Cmd":["sleep","9"]}`)
	resp.Body.Close()
	resp = post("/containers/box/start", "")
	resp.Body.Close()

	for _, upgrade := range []bool{true, false} {
		resp = post("/v1.51/containers/box/exec", `{"Cmd":["fail","5"],"AttachStdout":true,"AttachStderr":true}`)
		var created struct{ Id string }
		json.NewDecoder(resp.Body).Decode(&created)
		resp.Body.Close()
		if resp.StatusCode != 201 || created.Id == "" {
			t.Fatalf("exec create: %d", resp.StatusCode)
		}

		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		hdrs := "Content-Type: application/json\r\n"
		if upgrade {
			hdrs += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
		}
		body := `{"Detach":false}`
		fmt.Fprintf(conn, "POST /v1.51/exec/%s/start HTTP/1.1\r\nHost: vxnet\r\n%sContent-Length: %d\r\n\r\n%s", created.Id, hdrs, len(body), body)
		br := bufio.NewReader(conn)
		status, _ := br.ReadString('\n')
		want := "HTTP/1.1 200 OK\r\n"
		if upgrade {
			want = "HTTP/1.1 101 UPGRADED\r\n"
		}
		if status != want {
			t.Fatalf("status line %q, want %q", status, want)
		}
		var ctype string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\r\n" {
				break
			}
			if k, v, _ := strings.Cut(line, ":"); strings.EqualFold(k, "Content-Type") {
				ctype = strings.TrimSpace(v)
			}
		}
		if upgrade && ctype != "application/vnd.docker.multiplexed-stream" || !upgrade && ctype != "application/vnd.docker.raw-stream" {
			t.Fatalf("content type %q (upgrade %v)", ctype, upgrade)
		}
		stdout, stderr := readFrames(t, br)
		conn.Close()
		if stdout != "out\n" || stderr != "err\n" {
			t.Fatalf("stdout %q stderr %q", stdout, stderr)
		}
		resp, err = c.Get("http://vxnet/exec/" + created.Id + "/json")
		if err != nil {
			t.Fatal(err)
		}
		var insp struct {
			Running     bool
			ExitCode    *int
			ContainerID string
		}
		json.NewDecoder(resp.Body).Decode(&insp)
		resp.Body.Close()
		if insp.Running || insp.ExitCode == nil || *insp.ExitCode != 5 || len(insp.ContainerID) != 64 {
			t.Fatalf("exec inspect: %+v", insp)
		}
		// An exec instance runs once.
		resp = post("/exec/"+created.Id+"/start", `{"Detach":true}`)
		resp.Body.Close()
		if resp.StatusCode != http.StatusConflict {
			t.Fatalf("second start: %d", resp.StatusCode)
		}
	}

	// Detached exec runs in the background.
	resp = post("/containers/box/exec", `{"Cmd":["exit","2"]}`)
	var created struct{ Id string }
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	resp = post("/exec/"+created.Id+"/start", `{"Detach":true}`)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("detached start: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := c.Get("http://vxnet/exec/" + created.Id + "/json")
		if err != nil {
			t.Fatal(err)
		}
		var insp struct{ ExitCode *int }
		json.NewDecoder(resp.Body).Decode(&insp)
		resp.Body.Close()
		if insp.ExitCode != nil {
			if *insp.ExitCode != 2 {
				t.Fatalf("detached exit code %d", *insp.ExitCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("detached exec did not finish")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLogsStream(t *testing.T) {
	env := enginetest.New(t)
	h := api.NewServer(env.Engine, api.Options{})
	do(t, h, "POST", "/containers/create?name=l", `{"Image":"busybox","Cmd":["sleep","1"]}`)
	env.AddOutput(t, "l", false, "a\n")
	env.AddOutput(t, "l", true, "b\n")
	w := do(t, h, "GET", "/containers/l/logs?stdout=1&stderr=1", "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/vnd.docker.multiplexed-stream" {
		t.Fatalf("logs: %d %v", w.Code, w.Header())
	}
	if out, errOut := readFrames(t, w.Body); out != "a\n" || errOut != "b\n" {
		t.Fatalf("logs stdout %q stderr %q", out, errOut)
	}
	w = do(t, h, "GET", "/containers/l/logs?stderr=1", "")
	if out, errOut := readFrames(t, w.Body); out != "" || errOut != "b\n" {
		t.Fatalf("stderr-only logs: stdout %q stderr %q", out, errOut)
	}
	if w := do(t, h, "GET", "/containers/ghost/logs?stdout=1", ""); w.Code != 404 {
		t.Fatalf("logs of a missing container: %d", w.Code)
	}
}

func TestListenUnix(t *testing.T) {
	dir, err := os.MkdirTemp("", "vxls")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "sub", "d.sock")

	l, err := api.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v: %v", fi.Mode(), err)
	}
	// A live socket is not taken over.
	if _, err := api.ListenUnix(sock); err == nil {
		t.Fatal("second listener on a live socket succeeded")
	}
	// A stale socket (its listener gone, the file left) is replaced.
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket file missing: %v", err)
	}
	l2, err := api.ListenUnix(sock)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	l2.Close()
	// A regular file is not removed.
	file := filepath.Join(dir, "plain")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := api.ListenUnix(file); err == nil {
		t.Fatal("listening over a regular file succeeded")
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal("regular file was removed")
	}
}

func TestRequestLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := api.NewServer(enginetest.New(t).Engine, api.Options{Logger: log})
	do(t, h, "GET", "/v1.51/networks/ghost", "")
	line := buf.String()
	if !strings.Contains(line, "level=DEBUG") || !strings.Contains(line, "method=GET") ||
		!strings.Contains(line, "path=/networks/ghost") || !strings.Contains(line, "status=404") {
		t.Fatalf("request log %q", line)
	}
}

// A JSON body must say it is JSON (Docker's CheckForJSON): another or a
// malformed Content-Type is refused with 400 before anything is done, and
// a request without a body needs none.
func TestContentTypeChecked(t *testing.T) {
	h := api.NewServer(enginetest.New(t).Engine, api.Options{})
	for _, tc := range []struct {
		name, path, ct, body string
		status               int
		msg                  string
	}{
		{"network text/plain", "/networks/create", "text/plain", `{"Name":"ct1"}`, 400, "unsupported Content-Type header (text/plain): must be 'application/json'"},
		{"network none", "/networks/create", "", `{"Name":"ct1"}`, 400, "malformed Content-Type header (): mime: no media type"},
		{"network malformed", "/networks/create", "application/json; =x", `{"Name":"ct1"}`, 400, "malformed Content-Type header (application/json; =x)"},
		{"container form", "/containers/create", "application/x-www-form-urlencoded", `{"Image":"busybox"}`, 400, "unsupported Content-Type header"},
		{"connect text", "/networks/bridge/connect", "text/json", `{"Container":"x"}`, 400, "unsupported Content-Type header (text/json)"},
		{"charset parameter is fine", "/networks/create", "application/json; charset=utf-8", `{"Name":"ct2"}`, 201, ""},
		{"no body no type", "/containers/prune", "", "", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req := httptest.NewRequest("POST", tc.path, body)
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body.String())
			}
			if tc.msg != "" && !strings.Contains(message(t, w), tc.msg) {
				t.Fatalf("message %q lacks %q", message(t, w), tc.msg)
			}
		})
	}
	// Nothing was made by the refused requests.
	w := do(t, h, "GET", "/networks/ct1", "")
	if w.Code != 404 {
		t.Fatalf("refused network create made ct1: %d %s", w.Code, w.Body.String())
	}
}
