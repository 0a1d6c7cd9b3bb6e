package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Named and anonymous volumes, binds (ro/rw) and the Mounts API with the
// real docker CLI: data written through one container is read by the next,
// survives container removal and a daemon restart; Docker's errors for a
// volume in use, a missing one and a read-only mount.
func TestVolumesAndBinds(t *testing.T) {
	c, h := single(t)
	h.MustDocker(t, "volume", "create", "--label", "team=net", "v1")
	if ls := h.MustDocker(t, "volume", "ls", "--format", "{{.Driver}} {{.Name}}"); !strings.Contains(ls, "local v1") {
		t.Errorf("volume ls: %q", ls)
	}
	if lbl := strings.TrimSpace(h.MustDocker(t, "volume", "inspect", "-f", "{{.Labels.team}} {{.Scope}}", "v1")); lbl != "net local" {
		t.Errorf("volume inspect: %q", lbl)
	}
	h.MustDocker(t, "run", "--rm", "--network", "none", "-v", "v1:/data", "busybox", "sh", "-c", "echo hello > /data/f")
	if out := h.MustDocker(t, "run", "--rm", "--network", "none", "-v", "v1:/data:ro", "busybox", "cat", "/data/f"); out != "hello\n" {
		t.Errorf("read back through a second container: %q", out)
	}
	if _, errOut, code := h.Docker("run", "--rm", "--network", "none", "-v", "v1:/data:ro", "busybox", "touch", "/data/g"); code != 1 || !strings.Contains(errOut, "Read-only file system") {
		t.Errorf("write to a :ro volume: exit %d %q", code, errOut)
	}
	// A named volume made by run itself; the Mounts API.
	h.MustDocker(t, "run", "--rm", "--network", "none", "--mount", "type=volume,src=v2,dst=/v", "busybox", "sh", "-c", "echo two > /v/x")
	if out := h.MustDocker(t, "run", "--rm", "--network", "none", "-v", "v2:/w", "busybox", "cat", "/w/x"); out != "two\n" {
		t.Errorf("volume made by --mount: %q", out)
	}

	// In use: a container (even stopped) holds its volume.
	id := strings.TrimSpace(h.MustDocker(t, "create", "--name", "holder", "--network", "none", "-v", "v1:/data", "busybox", "true"))
	if _, errOut, code := h.Docker("volume", "rm", "v1"); code != 1 || !strings.Contains(errOut, "remove v1: volume is in use - ["+id+"]") {
		t.Errorf("volume rm of a volume in use: exit %d %q", code, errOut)
	}
	if m := strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}", "holder")); m != "volume v1 /data true" {
		t.Errorf("inspect Mounts: %q", m)
	}
	h.MustDocker(t, "rm", "holder")
	if _, errOut, code := h.Docker("volume", "inspect", "nosuch"); code != 1 || !strings.Contains(errOut, "get nosuch: no such volume") {
		t.Errorf("volume inspect nosuch: exit %d %q", code, errOut)
	}

	// Anonymous volumes go with rm -v and with --rm; without -v they stay.
	before := volumeCount(t, h)
	h.MustDocker(t, "run", "-d", "--name", "anon1", "--network", "none", "-v", "/scratch", "busybox", "sleep", "1d")
	anon := strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", "anon1"))
	if len(anon) != 64 {
		t.Fatalf("anonymous volume name %q", anon)
	}
	h.MustDocker(t, "exec", "anon1", "sh", "-c", "echo s > /scratch/s")
	h.MustDocker(t, "rm", "-f", "-v", "anon1")
	if _, _, code := h.Docker("volume", "inspect", anon); code == 0 {
		t.Errorf("rm -v left the anonymous volume %s", anon)
	}
	h.MustDocker(t, "run", "--rm", "--network", "none", "-v", "/scratch", "busybox", "true")
	if n := volumeCount(t, h); n != before {
		t.Errorf("run --rm -v /scratch left a volume: %d volumes, had %d", n, before)
	}
	h.MustDocker(t, "create", "--name", "anon2", "--network", "none", "-v", "/scratch", "busybox", "true")
	h.MustDocker(t, "rm", "anon2")
	if n := volumeCount(t, h); n != before+1 {
		t.Errorf("rm without -v: %d volumes, want %d (the anonymous volume stays)", n, before+1)
	}
	// prune removes the unused anonymous volume, not the named ones;
	// prune --all removes the unused named ones too.
	if out := h.MustDocker(t, "volume", "prune", "-f"); strings.Contains(out, "v1") || strings.Contains(out, "v2") || volumeCount(t, h) != before {
		t.Errorf("volume prune: %q, %d volumes left, want %d", out, volumeCount(t, h), before)
	}

	// Binds: read-only and read-write; a missing -v source is made; a
	// missing --mount source is refused.
	dir := filepath.Join(c.Dir, "bind-src")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "in"), []byte("from host\n"), 0o644)
	if out := h.MustDocker(t, "run", "--rm", "--network", "none", "-v", dir+":/b:ro", "busybox", "cat", "/b/in"); out != "from host\n" {
		t.Errorf("bind ro read: %q", out)
	}
	if _, errOut, code := h.Docker("run", "--rm", "--network", "none", "-v", dir+":/b:ro", "busybox", "touch", "/b/x"); code != 1 || !strings.Contains(errOut, "Read-only file system") {
		t.Errorf("write to a ro bind: exit %d %q", code, errOut)
	}
	h.MustDocker(t, "run", "--rm", "--network", "none", "--mount", "type=bind,src="+dir+",dst=/b", "busybox", "sh", "-c", "echo from ctr > /b/out")
	if b, _ := os.ReadFile(filepath.Join(dir, "out")); string(b) != "from ctr\n" {
		t.Errorf("rw bind: host sees %q", b)
	}
	made := filepath.Join(c.Dir, "made-by-v")
	h.MustDocker(t, "run", "--rm", "--network", "none", "-v", made+":/m", "busybox", "true")
	if fi, err := os.Stat(made); err != nil || !fi.IsDir() {
		t.Errorf("-v with a missing source did not make it: %v", err)
	}
	missing := filepath.Join(c.Dir, "nosuch")
	if _, errOut, code := h.Docker("run", "--rm", "--network", "none", "--mount", "type=bind,src="+missing+",dst=/m", "busybox", "true"); code != 125 || !strings.Contains(errOut, "bind source path does not exist: "+missing) {
		t.Errorf("--mount with a missing source: exit %d %q", code, errOut)
	}
	if _, errOut, code := h.Docker("run", "--rm", "--network", "none", "-v", dir+":/b:rshared", "busybox", "true"); code != 125 || !strings.Contains(errOut, "is not a shared mount") {
		t.Errorf("rshared bind of a private mount: exit %d %q", code, errOut)
	}

	// A new volume gets the image's content under its mount point
	// (unless nocopy); an image's VOLUME is an anonymous volume.
	if out := h.MustDocker(t, "run", "--rm", "--network", "none", "-v", "cu1:/usr", "busybox", "ls", "/usr"); out != "bin\nsbin\n" {
		t.Errorf("copy-up into a new volume: ls /usr = %q", out)
	}
	if out := h.MustDocker(t, "run", "--rm", "--network", "none", "-v", "cu2:/usr:nocopy", "busybox", "ls", "/usr"); out != "" {
		t.Errorf("nocopy: ls /usr = %q", out)
	}
	h.MustDocker(t, "volume", "rm", "cu1", "cu2")
	imgTar := filepath.Join(c.Dir, "withvol.tar")
	os.WriteFile(imgTar, saveTar(t, "withvol:1", [][]byte{busyboxLayer(t),
		tarLayer(t, []tarEntry{{name: "seed/", dir: true}, {name: "seed/s", data: "seeded\n"}})},
		map[string]any{"Cmd": []string{"/bin/busybox", "cat", "/seed/s"}, "Volumes": map[string]any{"/seed": map[string]any{}}}, []string{"bb", "seed"}), 0o600)
	h.MustDocker(t, "load", "-i", imgTar)
	h.MustDocker(t, "run", "--name", "wv", "--network", "none", "withvol:1")
	if m := strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{range .Mounts}}{{.Type}} {{.Destination}}{{end}}", "wv")); m != "volume /seed" {
		t.Errorf("image VOLUME: mounts %q", m)
	}
	if out := h.MustDocker(t, "logs", "wv"); out != "seeded\n" {
		t.Errorf("image VOLUME seeded from the image: %q", out)
	}
	h.MustDocker(t, "rm", "-v", "wv")
	h.MustDocker(t, "rmi", "withvol:1")

	// Propagation: with rslave, a mount made on the host under a shared
	// bind source after the start appears in the container; with the
	// default rprivate it does not.
	shared := filepath.Join(c.Dir, "shared")
	os.MkdirAll(filepath.Join(shared, "sub"), 0o755)
	mustRun(t, "mount", "--bind", shared, shared)
	t.Cleanup(func() { exec.Command("umount", "-R", shared).Run() })
	mustRun(t, "mount", "--make-rshared", shared)
	h.MustDocker(t, "run", "-d", "--name", "slave", "--network", "none", "-v", shared+":/p:rslave", "busybox", "sleep", "1d")
	h.MustDocker(t, "run", "-d", "--name", "private", "--network", "none", "-v", shared+":/p", "busybox", "sleep", "1d")
	if p := strings.TrimSpace(h.MustDocker(t, "inspect", "-f", "{{range .Mounts}}{{.Propagation}}{{end}}", "slave")); p != "rslave" {
		t.Errorf("inspect propagation: %q", p)
	}
	mustRun(t, "mount", "-t", "tmpfs", "vxtest", filepath.Join(shared, "sub"))
	os.WriteFile(filepath.Join(shared, "sub", "late"), []byte("late\n"), 0o644)
	if out, _, _ := h.Docker("exec", "slave", "cat", "/p/sub/late"); out != "late\n" {
		t.Errorf("rslave bind: a mount made after the start is not seen: %q", out)
	}
	if out, _, code := h.Docker("exec", "private", "cat", "/p/sub/late"); code == 0 {
		t.Errorf("rprivate bind sees a mount made after the start: %q", out)
	}
	h.MustDocker(t, "rm", "-f", "slave", "private")
	mustRun(t, "umount", filepath.Join(shared, "sub"))

	// The data outlives a daemon restart.
	h.Restart()
	if out := h.MustDocker(t, "run", "--rm", "--network", "none", "-v", "v1:/data", "busybox", "cat", "/data/f"); out != "hello\n" {
		t.Errorf("after a daemon restart: %q", out)
	}
	h.MustDocker(t, "volume", "rm", "v1")
	if out := h.MustDocker(t, "volume", "prune", "-a", "-f"); !strings.Contains(out, "v2") {
		t.Errorf("volume prune -a: %q", out)
	}
}

func mustRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func volumeCount(t *testing.T, h interface {
	MustDocker(testing.TB, ...string) string
}) int {
	t.Helper()
	return len(strings.Fields(h.MustDocker(t, "volume", "ls", "-q")))
}
