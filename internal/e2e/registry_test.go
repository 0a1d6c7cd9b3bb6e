package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/testreq"
)

const registryBin = "/usr/bin/docker-registry"

// startRegistry runs Debian's docker-registry in the outside namespace on
// port, storing under dir; with user set it asks for that user's password
// (htpasswd). It is stopped in t.Cleanup.
func startRegistry(t *testing.T, c *harness.Cluster, dir string, port int, user, password string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s:%d\n",
		filepath.Join(dir, "data"), c.OutsideAddr(), port)
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: vxnet-test\n    path: %s\n", filepath.Join(dir, "htpasswd"))
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+c.Outside().Path, "--", registryBin, "serve", cfgPath)
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start docker-registry: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	url := fmt.Sprintf("http://%s:%d/v2/", c.OutsideAddr(), port)
	ok := eventually(20*time.Second, func() bool {
		out, _ := c.Outside().Exec("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url)
		return out == "200" || out == "401"
	})
	if !ok {
		b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
		t.Fatalf("docker-registry on port %d did not answer:\n%s", port, b)
	}
}

// tarEntry is one entry of a layer made by tarLayer.
type tarEntry struct {
	name, link string
	data       string
	dir        bool
	mode       int64
}

// tarLayer makes an uncompressed layer tar.
func tarLayer(t *testing.T, es []tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: 0o644, ModTime: time.Unix(1700000000, 0)}
		switch {
		case e.dir:
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeLink, e.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if e.mode != 0 {
			h.Mode = e.mode
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.data))
		}
	}
	tw.Close()
	return b.Bytes()
}

// busyboxLayer is a layer holding the host's busybox as /bin/busybox.
func busyboxLayer(t *testing.T) []byte {
	t.Helper()
	bb, err := os.ReadFile("/usr/bin/busybox")
	if err != nil {
		testreq.Skip(t, "busybox-static is not installed")
	}
	return tarLayer(t, []tarEntry{{name: "bin/", dir: true}, {name: "bin/busybox", data: string(bb), mode: 0o755}})
}

// saveTar writes a `docker save` tar of one image named name with these
// layers and run config (history: one step per layer, named by steps).
func saveTar(t *testing.T, name string, layers [][]byte, config map[string]any, steps []string) []byte {
	t.Helper()
	digest := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	var diffIDs, layerPaths []string
	for _, l := range layers {
		diffIDs = append(diffIDs, "sha256:"+digest(l))
		layerPaths = append(layerPaths, "blobs/sha256/"+digest(l))
	}
	var history []map[string]any
	for _, s := range steps {
		history = append(history, map[string]any{"created_by": s})
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
		"config": config, "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}, "history": history,
	})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "blobs/sha256/" + digest(cfg), "RepoTags": []string{name}, "Layers": layerPaths}})
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	add := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b))})
		tw.Write(b)
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "blobs/", Mode: 0o755})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "blobs/sha256/", Mode: 0o755})
	for _, l := range layers {
		add("blobs/sha256/"+digest(l), l)
	}
	add("blobs/sha256/"+digest(cfg), cfg)
	add("manifest.json", manifest)
	tw.Close()
	return out.Bytes()
}

// layeredImageTar writes a `docker save` tar of a three-layer image named
// name: the host's busybox; then /data/{gone,keep}, /olddir/x and
// /data/orig with its hard link /data/link; then a whiteout of /data/gone,
// an opaque /olddir with only y, and /data/new with its hard link
// /data/newlink.
func layeredImageTar(t *testing.T, name string) []byte {
	t.Helper()
	layers := [][]byte{
		busyboxLayer(t),
		tarLayer(t, []tarEntry{{name: "data/", dir: true}, {name: "data/gone", data: "bye\n"}, {name: "data/keep", data: "keep\n"},
			{name: "data/orig", data: "linked\n"}, {name: "data/link", link: "data/orig"},
			{name: "olddir/", dir: true}, {name: "olddir/x", data: "x\n"}}),
		tarLayer(t, []tarEntry{{name: "data/", dir: true}, {name: "data/.wh.gone", data: ""},
			{name: "olddir/", dir: true}, {name: "olddir/.wh..wh..opq", data: ""}, {name: "olddir/y", data: "y\n"},
			{name: "data/new", data: "new\n"}, {name: "data/newlink", link: "data/new"}}),
	}
	return saveTar(t, name, layers, map[string]any{"Cmd": []string{"/bin/busybox", "sh"}, "Env": []string{"PATH=/bin"},
		"Labels": map[string]string{"made.by": "vxnet-test"}}, []string{"busybox", "data", "whiteouts"})
}

// checkLayered runs image and checks its layers were applied: the
// whiteout removed /data/gone, the opaque directory hides /olddir/x, and
// the hard links share their targets' inodes.
func checkLayered(t *testing.T, h *harness.Host, image string) {
	t.Helper()
	out, errOut, code := h.Docker("run", "--rm", "--network", "none", image, "/bin/busybox", "sh", "-c",
		"/bin/busybox cat /data/keep /data/link; /bin/busybox ls /olddir; /bin/busybox stat -c %i /data/orig /data/link /data/new /data/newlink; /bin/busybox ls /data/gone")
	if code != 1 || !strings.Contains(errOut+out, "/data/gone: No such file or directory") {
		t.Errorf("run %s: exit %d (want 1: /data/gone removed by the whiteout): %s%s", image, code, out, errOut)
	}
	f := strings.Fields(out)
	if len(f) != 7 || f[0] != "keep" || f[1] != "linked" || f[2] != "y" {
		t.Fatalf("run %s: got %q, want keep, linked, y (only) and four inodes", image, f)
	}
	if f[3] != f[4] || f[5] != f[6] || f[3] == f[5] {
		t.Errorf("run %s: inodes orig/link %s/%s, new/newlink %s/%s: hard links must share their target's inode", image, f[3], f[4], f[5], f[6])
	}
}

// Images through a real registry (Debian's docker-registry) with the real
// docker CLI: load a three-layer image with whiteouts and hard links, push
// it to a registry that wants a password, remove it, pull it back and run
// it; save and load it again; the registry's password and
// --insecure-registry are enforced.
func TestRegistryPushPull(t *testing.T) {
	if _, err := os.Stat(registryBin); err != nil {
		testreq.Skip(t, "docker-registry is not installed (scripts/setup.sh)")
	}
	var c *harness.Cluster
	c = harness.New(t, harness.Options{Hosts: 1, DaemonArgs: func(int, *harness.Host) []string {
		return []string{"--insecure-registry", c.OutsideAddr().String() + ":5001"}
	}})
	h := c.Host(0)
	h.Start()
	startRegistry(t, c, filepath.Join(c.Dir, "reg-auth"), 5001, "alice", "s3cret")
	startRegistry(t, c, filepath.Join(c.Dir, "reg-open"), 5000, "", "")
	authReg := fmt.Sprintf("%s:5001", c.OutsideAddr())
	openReg := fmt.Sprintf("%s:5000", c.OutsideAddr())
	login := func(on bool) {
		t.Helper()
		if on {
			h.MustDocker(t, "login", "-u", "alice", "-p", "s3cret", authReg)
		} else {
			h.Docker("logout", authReg)
		}
	}
	// docker login checks the password with the registry (POST /auth).
	if _, errOut, code := h.Docker("login", "-u", "alice", "-p", "wrong", authReg); code != 1 || !strings.Contains(errOut, "401 Unauthorized") {
		t.Errorf("docker login with a wrong password: exit %d %q", code, errOut)
	}
	if out, errOut, code := h.Docker("login", "-u", "alice", "-p", "s3cret", authReg); code != 0 || !strings.Contains(out, "Login Succeeded") {
		t.Errorf("docker login: exit %d %q %q", code, out, errOut)
	}
	login(false)

	// docker load of a Docker-format tar; the loaded image runs with its
	// layers applied.
	tarPath := filepath.Join(c.Dir, "layered.tar")
	if err := os.WriteFile(tarPath, layeredImageTar(t, "layered:v1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := h.MustDocker(t, "load", "-i", tarPath); !strings.Contains(out, "Loaded image: layered:v1") {
		t.Errorf("docker load: %q", out)
	}
	checkLayered(t, h, "layered:v1")

	// Push needs the password.
	remote := authReg + "/team/layered:v1"
	h.MustDocker(t, "tag", "layered:v1", remote)
	login(false)
	if _, errOut, code := h.Docker("push", remote); code == 0 || !strings.Contains(errOut, "401") && !strings.Contains(strings.ToLower(errOut), "unauthorized") {
		t.Errorf("push without credentials: exit %d %q (want refused, unauthorized)", code, errOut)
	}
	login(true)
	if out := h.MustDocker(t, "push", remote); !strings.Contains(out, "digest: sha256:") {
		t.Errorf("docker push: %q", out)
	}
	blobs, _ := filepath.Glob(filepath.Join(c.Dir, "reg-auth", "data", "docker", "registry", "v2", "blobs", "sha256", "*", "*"))
	if len(blobs) < 5 { // three layers, a config, a manifest
		t.Errorf("the registry holds %d blobs after the push, want at least 5", len(blobs))
	}

	// Remove every local copy; pulling needs the password too.
	h.MustDocker(t, "rmi", "layered:v1")
	if out := h.MustDocker(t, "rmi", remote); !strings.Contains(out, "Deleted: sha256:") {
		t.Errorf("docker rmi of the last name: %q", out)
	}
	if _, errOut, code := h.Docker("image", "inspect", remote); code == 0 || !strings.Contains(errOut, "No such image") {
		t.Errorf("inspect after rmi: exit %d %q", code, errOut)
	}
	login(false)
	if _, errOut, code := h.Docker("pull", remote); code == 0 || !strings.Contains(errOut, "access denied") {
		t.Errorf("pull without credentials: exit %d %q (want access denied)", code, errOut)
	}
	login(true)
	if out := h.MustDocker(t, "pull", remote); !strings.Contains(out, "Digest: sha256:") || strings.Count(out, "Pull complete") != 3 ||
		!strings.Contains(out, "Status: Downloaded newer image for "+remote) {
		t.Errorf("docker pull: %q", out)
	}
	if out := h.MustDocker(t, "pull", remote); !strings.Contains(out, "Status: Image is up to date for "+remote) {
		t.Errorf("docker pull again: %q", out)
	}
	checkLayered(t, h, remote)
	if lbl := strings.TrimSpace(h.MustDocker(t, "image", "inspect", "-f", "{{index .Config.Labels \"made.by\"}} {{len .RepoDigests}} {{len .RootFS.Layers}}", remote)); lbl != "vxnet-test 1 3" {
		t.Errorf("image inspect labels and digests: %q", lbl)
	}
	if hist := h.MustDocker(t, "history", "--no-trunc", "--format", "{{.CreatedBy}}", remote); strings.Fields(hist)[0] != "whiteouts" || len(strings.Fields(hist)) != 3 {
		t.Errorf("docker history: %q", hist)
	}

	// A plain-HTTP registry not listed with --insecure-registry is refused.
	h.MustDocker(t, "tag", remote, openReg+"/team/layered:v1")
	if _, errOut, code := h.Docker("push", openReg+"/team/layered:v1"); code == 0 || !strings.Contains(errOut, "--insecure-registry") {
		t.Errorf("push to an unlisted plain-HTTP registry: exit %d %q", code, errOut)
	}
	if _, errOut, code := h.Docker("pull", openReg+"/team/other:v1"); code == 0 || !strings.Contains(errOut, "--insecure-registry") {
		t.Errorf("pull from an unlisted plain-HTTP registry: exit %d %q", code, errOut)
	}
	h.MustDocker(t, "rmi", openReg+"/team/layered:v1")

	// save in Docker's format, remove, load, run.
	savePath := filepath.Join(c.Dir, "saved.tar")
	h.MustDocker(t, "save", "-o", savePath, remote)
	if out, err := exec.Command("tar", "-xOf", savePath, "manifest.json").Output(); err != nil || !strings.Contains(string(out), `"RepoTags":["`+remote+`"]`) {
		t.Errorf("docker save: manifest.json %q (%v)", out, err)
	}
	h.MustDocker(t, "rmi", remote)
	if out := h.MustDocker(t, "load", "-i", savePath); !strings.Contains(out, "Loaded image: "+remote) {
		t.Errorf("docker load of the saved tar: %q", out)
	}
	checkLayered(t, h, remote)

	// docker run of an image that is not here pulls it (the CLI does, on
	// create's 404) with the logged-in credential.
	h.MustDocker(t, "rmi", remote)
	if out, errOut, code := h.Docker("run", "--rm", "--network", "none", remote, "/bin/busybox", "cat", "/data/keep"); code != 0 || out != "keep\n" || !strings.Contains(errOut, "Unable to find image '"+remote+"' locally") {
		t.Errorf("run of an image to pull: exit %d %q %q", code, out, errOut)
	}

	// rmi conflicts as Docker's: a running container's image cannot be
	// removed even with -f; a stopped one's needs -f; a second name is
	// only untagged.
	h.MustDocker(t, "run", "-d", "--name", "user1", "--network", "none", remote, "/bin/busybox", "sleep", "1d")
	if _, errOut, code := h.Docker("rmi", "-f", remote); code != 1 || !strings.Contains(errOut, "(cannot be forced) - image is being used by running container") {
		t.Errorf("rmi -f of a running container's image: exit %d %q", code, errOut)
	}
	h.MustDocker(t, "rm", "-f", "user1")
	h.MustDocker(t, "create", "--name", "user2", "--network", "none", remote, "/bin/busybox", "true")
	if _, errOut, code := h.Docker("rmi", remote); code != 1 || !strings.Contains(errOut, "conflict: unable to remove repository reference") || !strings.Contains(errOut, "(must force)") {
		t.Errorf("rmi of a stopped container's image: exit %d %q", code, errOut)
	}
	h.MustDocker(t, "tag", remote, "second:v1")
	if out := h.MustDocker(t, "rmi", "second:v1"); strings.TrimSpace(out) != "Untagged: second:v1" {
		t.Errorf("rmi of a second name: %q", out)
	}
	h.MustDocker(t, "rm", "user2")
	// prune -a removes the now unused image (busybox is kept by nobody
	// either, so it goes too; the daemon rebuilds it at its next start).
	if out := h.MustDocker(t, "image", "prune", "-a", "-f"); !strings.Contains(out, "untagged: "+remote) {
		t.Errorf("image prune -a: %q", out)
	}
	if ls := h.MustDocker(t, "images", "-q"); strings.TrimSpace(ls) != "" {
		t.Errorf("images left after prune -a: %q", ls)
	}
}
