package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxnet/vxnet/internal/testreq"
)

func TestParseReference(t *testing.T) {
	good := []struct{ in, want string }{
		{"busybox", "busybox:latest"},
		{"busybox:1.36", "busybox:1.36"},
		{"team/app:v1.0_rc-2", "team/app:v1.0_rc-2"},
		{"docker.io/library/busybox", "busybox:latest"},
		{"docker.io/team/app:x", "team/app:x"},
		{"registry.example:5000/team/app", "registry.example:5000/team/app:latest"},
		{"localhost/app", "localhost/app:latest"},
		{"a__b.c-d", "a__b.c-d:latest"},
	}
	for _, c := range good {
		r, err := ParseReference(c.in)
		if err != nil || r.String() != c.want {
			t.Errorf("ParseReference(%q) = %v, %v; want %s", c.in, r, err, c.want)
		}
	}
	bad := []string{"", "BusyBox", "busy box", "busybox:", "busybox:-x", "-busybox", "a//b", "app@sha256:abcd", "a..b", "app:tag:x", "x/", strings.Repeat("a", 256)}
	for _, in := range bad {
		if _, err := ParseReference(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseReference(%q) error = %v, want ErrInvalid", in, err)
		}
	}
	if _, err := ParseReference("BusyBox"); err == nil || !strings.Contains(err.Error(), "lowercase") {
		t.Errorf("uppercase error %v does not say lowercase", err)
	}
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"busybox", "a/b:c", "docker.io/library/x", "h:5000/a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			return
		}
		// A normalised name parses to itself.
		r2, err := ParseReference(r.String())
		if err != nil || r2 != r {
			t.Fatalf("%q -> %v -> %v, %v", s, r, r2, err)
		}
	})
}

type entry struct {
	hdr  tar.Header
	data string
}

func makeTar(t *testing.T, gz bool, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var tw *tar.Writer
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		tw = tar.NewWriter(zw)
	} else {
		tw = tar.NewWriter(&buf)
	}
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.data))
		if h.Uid == 0 {
			h.Uid, h.Gid = os.Geteuid(), os.Getegid()
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		zw.Close()
	}
	return buf.Bytes()
}

func sampleEntries() []entry {
	return []entry{
		{tar.Header{Typeflag: tar.TypeDir, Name: "./bin/", Mode: 0o755}, ""},
		{tar.Header{Typeflag: tar.TypeReg, Name: "./bin/tool", Mode: 0o755}, "#!/bin/sh\necho hi\n"},
		{tar.Header{Typeflag: tar.TypeLink, Name: "./bin/tool2", Linkname: "./bin/tool"}, ""},
		{tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/alias", Linkname: "/bin/tool"}, ""},
		{tar.Header{Typeflag: tar.TypeReg, Name: "etc/motd", Mode: 0o644}, "hello\n"},
		{tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3}, ""},
	}
}

func TestImportGetListRemove(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, gz := range []bool{false, true} {
		data := makeTar(t, gz, sampleEntries())
		name := "app:plain"
		if gz {
			name = "app:gz"
		}
		img, err := s.Import(ctx, name, bytes.NewReader(data), Config{})
		if err != nil {
			t.Fatalf("import gz=%v: %v", gz, err)
		}
		sum := sha256.Sum256(data)
		if img.ID != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Errorf("ID %s is not the tar digest", img.ID)
		}
		b, err := os.ReadFile(filepath.Join(img.Rootfs, "bin/tool2"))
		if err != nil || string(b) != "#!/bin/sh\necho hi\n" {
			t.Errorf("hard link content %q, %v", b, err)
		}
		if l, err := os.Readlink(filepath.Join(img.Rootfs, "etc/alias")); err != nil || l != "/bin/tool" {
			t.Errorf("symlink %q, %v", l, err)
		}
		if fi, err := os.Stat(filepath.Join(img.Rootfs, "bin/tool")); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("mode %v, %v", fi, err)
		}
		if img.Size != int64(len("#!/bin/sh\necho hi\n")+len("hello\n")) {
			t.Errorf("size %d", img.Size)
		}
	}
	imgs, err := s.List()
	if err != nil || len(imgs) != 2 {
		t.Fatalf("List = %v, %v", imgs, err)
	}
	got, err := s.Get("app:gz")
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{got.ID, strings.TrimPrefix(got.ID, "sha256:")[:12], "sha256:" + strings.TrimPrefix(got.ID, "sha256:")[:8], "docker.io/library/app:gz"} {
		if g, err := s.Get(ref); err != nil || g.ID != got.ID {
			t.Errorf("Get(%q) = %v, %v", ref, g.ID, err)
		}
	}
	// Default tag.
	if _, err := s.Get("app"); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("Get(app) = %v, want not found", err)
	}
	// Retag and untag.
	if err := s.Tag("app:gz", "app"); err != nil {
		t.Fatal(err)
	}
	if g, err := s.Get("app"); err != nil || g.ID != got.ID || len(g.RepoTags) != 2 {
		t.Fatalf("after tag: %+v, %v", g, err)
	}
	if del, err := s.Remove("app:latest"); err != nil || len(del) != 0 {
		t.Fatalf("untag: %v, %v", del, err)
	}
	if del, err := s.Remove("app:gz"); err != nil || len(del) != 1 {
		t.Fatalf("remove: %v, %v", del, err)
	}
	if _, err := os.Stat(got.Rootfs); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rootfs still there: %v", err)
	}
	if imgs, _ := s.List(); len(imgs) != 1 {
		t.Errorf("List after remove = %d images", len(imgs))
	}
}

func TestImportRejects(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := makeTar(t, false, sampleEntries())
	for _, name := range []string{"Bad", "bad name", "x@sha256:00"} {
		if _, err := s.Import(ctx, name, bytes.NewReader(data), Config{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Import(%q) = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.Import(ctx, "junk", strings.NewReader("this is not a tar archive at all, no no no"), Config{}); err == nil {
		t.Error("junk import succeeded")
	}
	// A symlink pointing out of the rootfs must not let a later entry write
	// outside it.
	outside := t.TempDir()
	evil := makeTar(t, false, []entry{
		{tar.Header{Typeflag: tar.TypeSymlink, Name: "escape", Linkname: outside}, ""},
		{tar.Header{Typeflag: tar.TypeReg, Name: "escape/pwned", Mode: 0o644}, "x"},
	})
	if _, err := s.Import(ctx, "evil", bytes.NewReader(evil), Config{}); err == nil {
		t.Error("escaping import succeeded")
	}
	if _, err := os.Stat(filepath.Join(outside, "pwned")); err == nil {
		t.Error("file written outside the rootfs")
	}
	if _, err := s.Get("Bad"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Get(Bad) = %v, want ErrInvalid", err)
	}
	_, err = s.Get("foo")
	if !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("Get(foo) = %v, want not found", err)
	}
	want := "No such image: foo:latest"
	if err.Error() != want {
		t.Errorf("message %q", err)
	}
	// Leftovers of failed imports are gone.
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(ents) != 0 {
		t.Errorf("tmp not cleaned: %v", ents)
	}
}

func TestEnsureBusybox(t *testing.T) {
	var bb string
	for _, p := range busyboxCandidates {
		if _, err := os.Stat(p); err == nil {
			bb = p
		}
	}
	if bb == "" {
		testreq.Skip(t, "needs busybox-static")
	}
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.EnsureBusybox(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(img.RepoTags) != 1 || img.RepoTags[0] != BusyboxName || len(img.Config.Cmd) != 1 || img.Config.Cmd[0] != "sh" {
		t.Errorf("image %+v", img)
	}
	for _, f := range []string{"bin/sh", "bin/busybox", "etc/passwd", "etc/hosts", "etc/resolv.conf", "etc/hostname", "tmp", "proc", "sys", "dev"} {
		if _, err := os.Lstat(filepath.Join(img.Rootfs, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	// The applets work (outside a container too, since it is static).
	out, err := exec.Command(filepath.Join(img.Rootfs, "bin/sh"), "-c", "echo ok").Output()
	if err != nil || string(out) != "ok\n" {
		t.Errorf("sh: %q, %v", out, err)
	}
	again, err := s.EnsureBusybox(ctx, "")
	if err != nil || again.ID != img.ID {
		t.Errorf("second EnsureBusybox = %v, %v", again.ID, err)
	}
	// Deterministic: another store builds the same ID.
	s2, _ := Open(t.TempDir())
	if other, err := s2.EnsureBusybox(ctx, bb); err != nil || other.ID != img.ID {
		t.Errorf("other store ID %s, %v; want %s", other.ID, err, img.ID)
	}
}
