package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docker cp both ways with the real docker CLI, for files and directories,
// into and out of running and stopped containers (a stopped one's volume
// included); symbolic links resolve inside the container, never on the
// host; a missing path is Docker's error.
func TestDockerCp(t *testing.T) {
	c, h := single(t)
	dir := filepath.Join(c.Dir, "cp")
	os.MkdirAll(filepath.Join(dir, "tree", "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from host\n"), 0o640)
	os.WriteFile(filepath.Join(dir, "tree", "sub", "deep"), []byte("deep\n"), 0o644)
	os.Symlink("sub/deep", filepath.Join(dir, "tree", "ln"))

	h.MustDocker(t, "run", "-d", "--name", "cp1", "--network", "none", "busybox", "sleep", "1d")
	// Host to container: a file into a directory, a directory under a new name.
	h.MustDocker(t, "cp", filepath.Join(dir, "hello.txt"), "cp1:/tmp/")
	h.MustDocker(t, "cp", filepath.Join(dir, "tree"), "cp1:/tmp/tree2")
	if out := h.MustDocker(t, "exec", "cp1", "sh", "-c", "cat /tmp/hello.txt; stat -c '%a %u' /tmp/hello.txt; cat /tmp/tree2/sub/deep; readlink /tmp/tree2/ln; cat /tmp/tree2/ln"); out != "hello from host\n640 0\ndeep\nsub/deep\ndeep\n" {
		t.Errorf("files copied in: %q", out)
	}
	// Container to host: a file, a directory, and a directory's content (/.).
	h.MustDocker(t, "exec", "cp1", "sh", "-c", "mkdir -p /srv/d/e && echo one > /srv/d/one && echo two > /srv/d/e/two && ln /srv/d/one /srv/d/hard && ln -s / /srv/up")
	h.MustDocker(t, "cp", "cp1:/srv/d/one", filepath.Join(dir, "one.txt"))
	h.MustDocker(t, "cp", "cp1:/srv/d", filepath.Join(dir, "out"))
	h.MustDocker(t, "cp", "cp1:/srv/d/.", filepath.Join(dir, "flat"))
	for p, want := range map[string]string{"one.txt": "one\n", "out/one": "one\n", "out/e/two": "two\n", "out/hard": "one\n", "flat/e/two": "two\n"} {
		if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(b) != want {
			t.Errorf("copied out %s: %q, %v (want %q)", p, b, err, want)
		}
	}
	// A link to / inside the container is the container's root.
	h.MustDocker(t, "cp", "cp1:/srv/up/etc/passwd", filepath.Join(dir, "passwd"))
	if b, _ := os.ReadFile(filepath.Join(dir, "passwd")); !strings.HasPrefix(string(b), "root:x:0:0:root:/root:/bin/sh\nnobody:") {
		t.Errorf("cp through a link to / read %q, want the container's /etc/passwd", b)
	}
	h.MustDocker(t, "exec", "cp1", "ln", "-s", "../../../../../../", "/srv/dotdot")
	h.MustDocker(t, "cp", filepath.Join(dir, "hello.txt"), "cp1:/srv/dotdot/tmp/escaped.txt")
	if _, err := os.Stat("/tmp/escaped.txt"); err == nil {
		os.Remove("/tmp/escaped.txt")
		t.Errorf("cp through ../ links wrote on the host")
	}
	if out := h.MustDocker(t, "exec", "cp1", "cat", "/tmp/escaped.txt"); out != "hello from host\n" {
		t.Errorf("cp through ../ links: %q", out)
	}
	if _, errOut, code := h.Docker("cp", "cp1:/nosuch", dir); code != 1 || !strings.Contains(errOut, "Could not find the file /nosuch in container cp1") {
		t.Errorf("cp of a missing path: exit %d %q", code, errOut)
	}
	h.MustDocker(t, "rm", "-f", "cp1")

	// A stopped container: its snapshot, and its volume, both ways.
	h.MustDocker(t, "create", "--name", "cp2", "--network", "none", "-v", "cpvol:/vol", "busybox", "sh", "-c", "cat /etc/motd /vol/in; echo made > /vol/out")
	h.MustDocker(t, "cp", filepath.Join(dir, "hello.txt"), "cp2:/etc/motd")
	h.MustDocker(t, "cp", filepath.Join(dir, "one.txt"), "cp2:/vol/in")
	if out := h.MustDocker(t, "start", "-a", "cp2"); out != "hello from host\none\n" {
		t.Errorf("stopped container sees the copied files: %q", out)
	}
	h.MustDocker(t, "cp", "cp2:/vol/out", filepath.Join(dir, "volout"))
	if b, _ := os.ReadFile(filepath.Join(dir, "volout")); string(b) != "made\n" {
		t.Errorf("cp out of a stopped container's volume: %q", b)
	}
	h.MustDocker(t, "rm", "-v", "cp2")

	// Read-only: the root file system (--read-only) and a :ro volume are
	// not written, a volume of a read-only container is.
	h.MustDocker(t, "create", "--name", "cp3", "--network", "none", "--read-only", "-v", "cpvol:/vol", "-v", "cpro:/ro:ro", "busybox", "true")
	if _, errOut, code := h.Docker("cp", filepath.Join(dir, "hello.txt"), "cp3:/etc/"); code != 1 || !strings.Contains(errOut, "container rootfs is marked read-only") {
		t.Errorf("cp into a --read-only container: exit %d %q", code, errOut)
	}
	if _, errOut, code := h.Docker("cp", filepath.Join(dir, "hello.txt"), "cp3:/ro/"); code != 1 || !strings.Contains(errOut, "mounted volume is marked read-only") {
		t.Errorf("cp into a :ro volume: exit %d %q", code, errOut)
	}
	h.MustDocker(t, "cp", filepath.Join(dir, "hello.txt"), "cp3:/vol/")
	h.MustDocker(t, "rm", "-v", "cp3")
	h.MustDocker(t, "volume", "rm", "cpro")
	h.MustDocker(t, "volume", "rm", "cpvol")
}
