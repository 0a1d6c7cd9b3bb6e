package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"time"
)

// BusyboxName is the image EnsureBusybox provides.
const BusyboxName = "busybox:latest"

// busyboxCandidates are where Debian's busybox-static lives.
var busyboxCandidates = []string{"/usr/bin/busybox", "/bin/busybox"}

// EnsureBusybox makes sure "busybox:latest" exists, building it from the
// host's static busybox binary when it does not: bin/busybox, every applet
// (`busybox --list-full`) hard-linked to it, a minimal etc/passwd and
// etc/group, empty etc/hosts, etc/resolv.conf and etc/hostname as mount
// targets, and the usual top-level directories. The default command is
// "sh". busyboxPath "" means the first of /usr/bin/busybox, /bin/busybox.
// The image is built as a deterministic tar, so the same binary gives the
// same image ID on every host.
func (s *Store) EnsureBusybox(ctx context.Context, busyboxPath string) (Image, error) {
	if img, err := s.Get(BusyboxName); err == nil {
		return img, nil
	} else if !errors.Is(err, ErrImageNotFound) {
		return Image{}, err
	}
	if busyboxPath == "" {
		for _, p := range busyboxCandidates {
			if _, err := os.Stat(p); err == nil {
				busyboxPath = p
				break
			}
		}
		if busyboxPath == "" {
			return Image{}, fmt.Errorf("image: build busybox: no busybox binary in %s (install busybox-static)", strings.Join(busyboxCandidates, ", "))
		}
	}
	f, err := os.CreateTemp(s.dir+"/tmp", "busybox-*.tar")
	if err != nil {
		return Image{}, fmt.Errorf("image: build busybox: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := writeBusyboxTar(ctx, f, busyboxPath); err != nil {
		return Image{}, fmt.Errorf("image: build busybox: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Image{}, fmt.Errorf("image: build busybox: %w", err)
	}
	return s.Import(ctx, BusyboxName, f, Config{Cmd: []string{"sh"}})
}

func writeBusyboxTar(ctx context.Context, w io.Writer, busyboxPath string) error {
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, busyboxPath, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("%s --list-full: %w", busyboxPath, err)
	}
	var applets []string
	for _, l := range strings.Split(string(out), "\n") {
		l = path.Clean("/" + strings.TrimSpace(l))[1:]
		if l == "" || l == "bin/busybox" || l == "linuxrc" {
			continue
		}
		applets = append(applets, l)
	}
	sort.Strings(applets)

	epoch := time.Unix(0, 0).UTC()
	dirs := map[string]int64{
		"bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555, "root": 0o700,
		"sbin": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
		"var": 0o755, "var/tmp": 0o1777,
	}
	for _, a := range applets {
		for d := path.Dir(a); d != "."; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)

	tw := tar.NewWriter(w)
	for _, d := range names {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: dirs[d], ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := io.Copy(tw, bytes.NewReader(data))
		return err
	}
	if err := file("bin/busybox", 0o755, bin); err != nil {
		return err
	}
	for _, a := range applets {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: a, Linkname: "bin/busybox", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	etc := []struct {
		name string
		data string
	}{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		{"etc/group", "root:x:0:\nnogroup:x:65534:\n"},
		{"etc/hosts", ""},
		{"etc/resolv.conf", ""},
		{"etc/hostname", ""},
	}
	for _, e := range etc {
		if err := file(e.name, 0o644, []byte(e.data)); err != nil {
			return err
		}
	}
	return tw.Close()
}
