package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/netns"
)

// cniBuild builds the vxnet CNI plugin (as "vxnet") and, when asked, CNI
// reference plugins of github.com/containernetworking/plugins v1.10.0
// (e.g. "portmap", "bridge") into a directory of the test (removed with
// it); Go's build cache makes repeated builds cheap.
func cniBuild(t *testing.T, refs ...string) string {
	t.Helper()
	dir := t.TempDir()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, "vxnet"), "./cmd/vxnet-cni")
	cmd.Dir = moduleRootDir(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vxnet-cni: %v\n%s", err, out)
	}
	if len(refs) == 0 {
		return dir
	}
	// A throw-away module pins the reference plugins' version without
	// adding them to vxnet's go.mod.
	mod := filepath.Join(dir, "refmod")
	os.MkdirAll(mod, 0o755)
	run := func(args ...string) {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("mod", "init", "vxnettest/cniref")
	run("get", "github.com/containernetworking/plugins@v1.10.0")
	pkgs := map[string]string{"bridge": "main/bridge", "host-local": "ipam/host-local", "portmap": "meta/portmap",
		"bandwidth": "meta/bandwidth", "loopback": "main/loopback"}
	for _, r := range refs {
		run("build", "-o", filepath.Join(dir, r), "github.com/containernetworking/plugins/plugins/"+pkgs[r])
	}
	os.RemoveAll(mod)
	return dir
}

func moduleRootDir(t *testing.T) string {
	t.Helper()
	wd, _ := os.Getwd()
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatal("no go.mod above the working directory")
		}
	}
}

// cniHost runs CNI plugins for one host: each plugin runs in the host's
// network namespace (as a runtime on that host would), against its daemon.
type cniHost struct {
	h    *harness.Host
	conf *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

// newCNIHost makes a plugin directory of wrappers that enter h's network
// namespace and run the built plugins, and a libcni runtime using it.
func newCNIHost(t *testing.T, c *harness.Cluster, h *harness.Host, bin string, confList string) *cniHost {
	t.Helper()
	dir := filepath.Join(c.Dir, "cni-"+h.Name)
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	ents, _ := os.ReadDir(bin)
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		w := fmt.Sprintf("#!/bin/sh\nexec nsenter --net=%s -- %s \"$@\"\n", h.Netns, filepath.Join(bin, e.Name()))
		if err := os.WriteFile(filepath.Join(dir, "bin", e.Name()), []byte(w), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	list, err := libcni.NetworkConfFromBytes([]byte(confList))
	if err != nil {
		t.Fatalf("parse CNI config: %v", err)
	}
	return &cniHost{h: h, conf: libcni.NewCNIConfigWithCacheDir([]string{filepath.Join(dir, "bin")}, filepath.Join(dir, "cache"),
		// An explicit exec: libcni sets its default lazily, a data race
		// when one CNIConfig serves parallel ADDs.
		&invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}}), list: list}
}

func (ch *cniHost) rt(id, nsPath string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: nsPath, IfName: "eth0"}
}

func (ch *cniHost) add(id, nsPath string) (*current.Result, error) {
	r, err := ch.conf.AddNetworkList(context.Background(), ch.list, ch.rt(id, nsPath))
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(r)
}

func (ch *cniHost) check(id, nsPath string) error {
	return ch.conf.CheckNetworkList(context.Background(), ch.list, ch.rt(id, nsPath))
}

func (ch *cniHost) del(id, nsPath string) error {
	return ch.conf.DelNetworkList(context.Background(), ch.list, ch.rt(id, nsPath))
}

// cniNetns makes a pinned namespace under the cluster directory (removed
// by the harness teardown if the test does not).
func cniNetns(t *testing.T, c *harness.Cluster, name string) string {
	t.Helper()
	p := filepath.Join(c.Dir, "cni-ns", name)
	if err := netns.Create(p); err != nil {
		t.Fatalf("create netns %s: %v", p, err)
	}
	return p
}

// externals lists a daemon's CNI attachments through its API.
func externals(t *testing.T, h *harness.Host) []api.ExternalView {
	t.Helper()
	resp, err := apiClient(h).Get("http://vxnet/vxnet/externals?owner=cni")
	if err != nil {
		t.Fatalf("list externals on %s: %v", h.Name, err)
	}
	defer resp.Body.Close()
	var vs []api.ExternalView
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&vs) != nil {
		t.Fatalf("list externals on %s: %s", h.Name, resp.Status)
	}
	return vs
}

// nsExec runs a command in the namespace at path (nsenter --net) with a
// 60 s timeout and returns its combined output and exit code.
func nsExec(path string, args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + path, "--"}, args...)...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	return string(out) + err.Error(), -1
}
