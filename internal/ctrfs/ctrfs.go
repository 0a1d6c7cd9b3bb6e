// Package ctrfs reads and writes a container's files for docker cp (the
// archive endpoints): stat a path, tar a path, extract a tar into a
// directory, the way Docker's daemon does.
//
// Paths are container paths. Every lookup resolves them with openat2's
// RESOLVE_IN_ROOT against the directory that holds the container's root
// (or a mount's source), so ".." and symbolic links, absolute ones
// included, resolve as they would inside the container and never lead out
// of it.
package ctrfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotFound: the path does not exist in the container.
var ErrNotFound = errors.New("no such file")

// ErrNotDir: the extraction point is not a directory.
var ErrNotDir = errors.New("not a directory")

// Mount maps the container paths under Destination to the host directory
// Source (a volume or bind of a container whose root is not running, so
// its mounts are not in place).
type Mount struct{ Source, Destination string }

// FS is one container's file system: Root is a host directory holding the
// container's root (/proc/PID/root of a running container, or its
// snapshot mounted somewhere); Mounts are looked up first.
type FS struct {
	Root   string
	Mounts []Mount
}

// Stat is Docker's container path stat (X-Docker-Container-Path-Stat).
type Stat struct {
	Name       string      `json:"name"`
	Size       int64       `json:"size"`
	Mode       os.FileMode `json:"mode"`
	Mtime      time.Time   `json:"mtime"`
	LinkTarget string      `json:"linkTarget"`
}

// base returns the root directory and the path below it for cpath.
func (f FS) base(cpath string) (string, string) {
	cpath = path.Clean("/" + cpath)
	best, bestDst := "", ""
	for _, m := range f.Mounts {
		d := path.Clean(m.Destination)
		if (cpath == d || strings.HasPrefix(cpath, d+"/")) && len(d) > len(bestDst) {
			best, bestDst = m.Source, d
		}
	}
	if best != "" {
		return best, strings.TrimPrefix(cpath, bestDst)
	}
	return f.Root, cpath
}

// open resolves cpath inside the container and opens it with flags (plus
// O_CLOEXEC). With noFollow the last component is not followed.
func (f FS) open(cpath string, flags int, noFollow bool) (*os.File, error) {
	root, rel := f.base(cpath)
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open container root: %w", err)
	}
	defer unix.Close(rfd)
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	if noFollow {
		how.Flags |= unix.O_NOFOLLOW
	}
	rel = strings.TrimPrefix(rel, "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(rfd, rel, &how)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%s: %w", cpath, ErrNotFound)
		}
		return nil, &os.PathError{Op: "open", Path: cpath, Err: err}
	}
	return os.NewFile(uintptr(fd), cpath), nil
}

// procPath is the path of an open file through /proc (resolved by the
// kernel to the file itself).
func procPath(fl *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", fl.Fd()) }

// Stat stats cpath as Docker does: the link's own stat for a symbolic
// link, with LinkTarget the container path it resolves to.
func (f FS) Stat(cpath string) (Stat, error) {
	cpath = path.Clean("/" + cpath)
	fl, err := f.open(cpath, unix.O_PATH, true)
	if err != nil {
		return Stat{}, err
	}
	defer fl.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(fl.Fd()), &st); err != nil {
		return Stat{}, err
	}
	out := Stat{Name: path.Base(cpath), Size: st.Size, Mode: fileMode(st.Mode), Mtime: time.Unix(st.Mtim.Unix()).UTC()}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		if t, err := f.resolve(cpath); err == nil {
			out.LinkTarget = t
		}
	}
	return out, nil
}

// resolve follows the symbolic links of cpath inside the container and
// returns the container path it ends at (at most 40 links).
func (f FS) resolve(cpath string) (string, error) {
	for i := 0; i < 40; i++ {
		fl, err := f.open(cpath, unix.O_PATH, true)
		if err != nil {
			return "", err
		}
		var st unix.Stat_t
		err = unix.Fstat(int(fl.Fd()), &st)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
			fl.Close()
			return cpath, err
		}
		buf := make([]byte, 4096)
		n, err := unix.Readlinkat(int(fl.Fd()), "", buf)
		fl.Close()
		if err != nil {
			return "", err
		}
		t := string(buf[:n])
		if !path.IsAbs(t) {
			t = path.Join(path.Dir(cpath), t)
		}
		cpath = path.Clean(t)
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", cpath)
}

func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	}
	if m&unix.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// WriteTar writes cpath as Docker's GET archive does: its entries are
// named after cpath's last element ("hosts", "etc/passwd"), or "." and
// "./x" for a path ending in "/."; a symbolic link given as the path
// itself is followed, links below it are archived as links.
func (f FS) WriteTar(w io.Writer, cpath string) error {
	clean := path.Clean("/" + cpath)
	name := path.Base(clean)
	if strings.HasSuffix(cpath, "/.") {
		name = "."
	}
	fl, err := f.open(clean, unix.O_PATH, true)
	if err != nil {
		return err
	}
	defer fl.Close()
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	var st unix.Stat_t
	if err := unix.Fstat(int(fl.Fd()), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// The path itself is a link: archived as the link (docker cp -L
		// asks for its target instead).
		buf := make([]byte, 4096)
		n, err := unix.Readlinkat(int(fl.Fd()), "", buf)
		if err != nil {
			return err
		}
		h := &tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: string(buf[:n]), Mode: 0o777,
			ModTime: time.Unix(st.Mtim.Unix()), Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		return tw.Close()
	}
	top := procPath(fl)
	fi, err := os.Stat(top)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		if err := addEntry(tw, top, name, fi, links); err != nil {
			return err
		}
		return tw.Close()
	}
	err = filepath.WalkDir(top+"/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(top, filepath.Clean(p))
		entry := name
		if rel != "." {
			entry = path.Join(name, filepath.ToSlash(rel))
			if name == "." {
				entry = "./" + filepath.ToSlash(rel)
			}
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		return addEntry(tw, p, entry, info, links)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func addEntry(tw *tar.Writer, hostPath, name string, fi os.FileInfo, links map[[2]uint64]string) error {
	target := ""
	if fi.Mode()&os.ModeSymlink != 0 {
		t, err := os.Readlink(hostPath)
		if err != nil {
			return err
		}
		target = t
	}
	h, err := tar.FileInfoHeader(fi, target)
	if err != nil {
		return err
	}
	h.Name = name
	if fi.IsDir() && !strings.HasSuffix(h.Name, "/") {
		h.Name += "/"
	}
	h.Uname, h.Gname = "", ""
	h.Format = tar.FormatPAX
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := links[key]; ok {
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			return tw.WriteHeader(h)
		}
		links[key] = name
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if fi.Mode().IsRegular() {
		src, err := os.Open(hostPath)
		if err != nil {
			return err
		}
		defer src.Close()
		if _, err := io.CopyN(tw, src, h.Size); err != nil {
			return err
		}
	}
	return nil
}

// ExtractOptions are the PUT archive's options.
type ExtractOptions struct {
	// NoOverwriteDirNonDir refuses to replace a directory with a
	// non-directory or the other way round.
	NoOverwriteDirNonDir bool
	// KeepOwner keeps the tar's uid and gid (docker cp -a); otherwise
	// files belong to root, as Docker's.
	KeepOwner bool
}

// Extract unpacks the tar r into the container directory cdir. Entry names
// are relative to cdir; none can leave the container.
func (f FS) Extract(r io.Reader, cdir string, o ExtractOptions) error {
	cdir = path.Clean("/" + cdir)
	d, err := f.open(cdir, unix.O_PATH, false)
	if err != nil {
		return err
	}
	fi, err := os.Stat(procPath(d))
	d.Close()
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("extraction point is not a directory: %w", ErrNotDir)
	}
	type dirTime struct {
		cpath string
		mtime time.Time
	}
	var dirs []dirTime
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		rel := path.Clean("/" + h.Name)
		if rel == "/" && h.Typeflag == tar.TypeDir {
			continue
		}
		cpath := path.Join(cdir, rel)
		parent, err := f.open(path.Dir(cpath), unix.O_PATH|unix.O_DIRECTORY, false)
		if err != nil {
			return fmt.Errorf("extract %s: %w", h.Name, err)
		}
		err = extractOne(parent, path.Base(cpath), h, tr, o, f, cdir)
		parent.Close()
		if err != nil {
			return fmt.Errorf("extract %s: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTime{cpath, h.ModTime})
		}
	}
	// Directory times last, deepest first, as writing into them moved them.
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i].cpath) > len(dirs[j].cpath) })
	for _, dt := range dirs {
		if fl, err := f.open(dt.cpath, unix.O_PATH, true); err == nil {
			ts := []unix.Timespec{unix.NsecToTimespec(dt.mtime.UnixNano()), unix.NsecToTimespec(dt.mtime.UnixNano())}
			unix.UtimesNanoAt(int(fl.Fd()), "", ts, unix.AT_EMPTY_PATH)
			fl.Close()
		}
	}
	return nil
}

func extractOne(parent *os.File, name string, h *tar.Header, r io.Reader, o ExtractOptions, f FS, cdir string) error {
	pfd := int(parent.Fd())
	var st unix.Stat_t
	exists := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	isDir := exists && st.Mode&unix.S_IFMT == unix.S_IFDIR
	if exists {
		if o.NoOverwriteDirNonDir && isDir && h.Typeflag != tar.TypeDir {
			return fmt.Errorf("cannot overwrite directory %q with non-directory %q", name, h.Name)
		}
		if o.NoOverwriteDirNonDir && !isDir && h.Typeflag == tar.TypeDir {
			return fmt.Errorf("cannot overwrite non-directory %q with directory %q", name, h.Name)
		}
		if !(isDir && h.Typeflag == tar.TypeDir) {
			flag := 0
			if isDir {
				flag = unix.AT_REMOVEDIR
			}
			if err := unix.Unlinkat(pfd, name, flag); err != nil {
				return err
			}
		}
	}
	mode := uint32(h.Mode & 0o7777)
	switch h.Typeflag {
	case tar.TypeDir:
		if !isDir {
			if err := unix.Mkdirat(pfd, name, mode); err != nil {
				return err
			}
		}
	case tar.TypeReg, tar.TypeRegA:
		fd, err := unix.Openat(pfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
		if err != nil {
			return err
		}
		out := os.NewFile(uintptr(fd), name)
		_, err = io.Copy(out, r)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, pfd, name); err != nil {
			return err
		}
	case tar.TypeLink:
		target, err := f.open(path.Join(cdir, path.Clean("/"+h.Linkname)), unix.O_PATH, true)
		if err != nil {
			return err
		}
		err = unix.Linkat(int(target.Fd()), "", pfd, name, unix.AT_EMPTY_PATH)
		target.Close()
		if err != nil {
			return err
		}
	case tar.TypeFifo:
		if err := unix.Mkfifoat(pfd, name, mode); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported tar entry type %q", h.Typeflag)
	}
	uid, gid := 0, 0
	if o.KeepOwner {
		uid, gid = h.Uid, h.Gid
	}
	if err := unix.Fchownat(pfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(pfd, name, mode, 0); err != nil {
			return err
		}
	}
	if h.Typeflag != tar.TypeDir {
		ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
		unix.UtimesNanoAt(pfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}
