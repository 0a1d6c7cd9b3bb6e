package ctrfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// root makes a container root with /etc/passwd, a link to / and links
// climbing out with "..".
func root(t *testing.T) (string, string) {
	t.Helper()
	top := t.TempDir()
	r := filepath.Join(top, "root")
	os.MkdirAll(filepath.Join(r, "etc"), 0o755)
	os.WriteFile(filepath.Join(r, "etc", "passwd"), []byte("container\n"), 0o644)
	os.WriteFile(filepath.Join(top, "secret"), []byte("host\n"), 0o644)
	os.Symlink("/", filepath.Join(r, "up"))
	os.Symlink("../../../..", filepath.Join(r, "dotdot"))
	os.Symlink("/etc/passwd", filepath.Join(r, "pw"))
	return top, r
}

func entries(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		out[h.Name] = string(data) + h.Linkname
	}
}

func TestLinksStayInside(t *testing.T) {
	_, r := root(t)
	f := FS{Root: r}
	for _, p := range []string{"/up/etc/passwd", "/dotdot/etc/passwd", "/up/../../etc/passwd"} {
		var b bytes.Buffer
		if err := f.WriteTar(&b, p); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if got := entries(t, b.Bytes())["passwd"]; got != "container\n" {
			t.Errorf("%s read %q, want the container's file", p, got)
		}
	}
	if _, err := f.Stat("/dotdot/secret"); !errors.Is(err, ErrNotFound) {
		t.Errorf("stat of a host file through ..: %v", err)
	}
	st, err := f.Stat("/pw")
	if err != nil || st.Mode&os.ModeSymlink == 0 || st.LinkTarget != "/etc/passwd" {
		t.Errorf("stat of a link: %+v %v", st, err)
	}
}

func TestExtractStaysInside(t *testing.T) {
	top, r := root(t)
	f := FS{Root: r}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	add := func(h *tar.Header, data string) {
		h.Size = int64(len(data))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		tw.WriteHeader(h)
		tw.Write([]byte(data))
	}
	add(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o750}, "")
	add(&tar.Header{Name: "d/a"}, "a\n")
	add(&tar.Header{Name: "d/h", Typeflag: tar.TypeLink, Linkname: "d/a"}, "")
	add(&tar.Header{Name: "../../escape"}, "x\n")
	tw.Close()
	// Into /dotdot, a link climbing out: lands in the container's root.
	if err := f.Extract(&b, "/dotdot", ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(r, "d", "a")); err != nil || string(b) != "a\n" {
		t.Errorf("extracted file: %q %v", b, err)
	}
	var s1, s2 os.FileInfo
	s1, _ = os.Stat(filepath.Join(r, "d", "a"))
	s2, _ = os.Stat(filepath.Join(r, "d", "h"))
	if s1 == nil || s2 == nil || !os.SameFile(s1, s2) {
		t.Errorf("hard link not made")
	}
	if _, err := os.Stat(filepath.Join(top, "escape")); err == nil {
		t.Errorf("an entry named ../../escape was written outside the root")
	}
	if _, err := os.Stat(filepath.Join(r, "escape")); err != nil {
		t.Errorf("../../escape should land in the root: %v", err)
	}
	if err := f.Extract(strings.NewReader(""), "/etc/passwd", ExtractOptions{}); !errors.Is(err, ErrNotDir) {
		t.Errorf("extract into a file: %v", err)
	}
}

func TestMountsMapped(t *testing.T) {
	_, r := root(t)
	vol := t.TempDir()
	os.WriteFile(filepath.Join(vol, "v"), []byte("vol\n"), 0o644)
	f := FS{Root: r, Mounts: []Mount{{Source: vol, Destination: "/data"}}}
	var b bytes.Buffer
	if err := f.WriteTar(&b, "/data/."); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, b.Bytes())["./v"]; got != "vol\n" {
		t.Errorf("volume content through its mount point: %q (entries %v)", got, entries(t, b.Bytes()))
	}
}
