package image

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"
)

// Import unpacks a root filesystem tar (plain or gzip) as an image named
// name ("repo" or "repo:tag"; the tag defaults to latest), like
// `docker import`. cfg is the image's run configuration (Cmd may be empty:
// containers must then give a command). Importing identical bytes again
// only (re)tags the existing image. Entries cannot escape the rootfs
// (os.Root); device nodes are skipped (containers get a fresh /dev).
func (s *Store) Import(ctx context.Context, name string, r io.Reader, cfg Config) (Image, error) {
	named, err := ParseReference(name)
	if err != nil {
		return Image{}, err
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "import-")
	if err != nil {
		return Image{}, fmt.Errorf("image: import %s: %w", named, err)
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return Image{}, fmt.Errorf("image: import %s: %w", named, err)
	}
	h := sha256.New()
	size, err := unpack(ctx, io.TeeReader(r, h), rootfs)
	if err != nil {
		return Image{}, fmt.Errorf("image: import %s: %w", named, err)
	}
	hexID := hex.EncodeToString(h.Sum(nil))
	img := Image{ID: "sha256:" + hexID, Created: time.Now().UTC().Truncate(time.Second), Size: size, Config: cfg}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Stat(s.imageDir(hexID)); errors.Is(err, os.ErrNotExist) {
		if err := writeJSON(filepath.Join(tmp, "image.json"), img); err != nil {
			return Image{}, fmt.Errorf("image: import %s: %w", named, err)
		}
		if err := os.Rename(tmp, s.imageDir(hexID)); err != nil {
			return Image{}, fmt.Errorf("image: import %s: %w", named, err)
		}
	}
	repos, err := s.readRepos()
	if err != nil {
		return Image{}, err
	}
	repos[named.String()] = img.ID
	if err := s.writeRepos(repos); err != nil {
		return Image{}, fmt.Errorf("image: import %s: %w", named, err)
	}
	return s.load(hexID, repos)
}

// unpack extracts a plain or gzip tar stream into dir and returns the total
// size of regular files. It reads r to the end so a digest of r covers all
// bytes.
func unpack(ctx context.Context, r io.Reader, dir string) (int64, error) {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return 0, fmt.Errorf("read gzip: %v: %w", err, ErrInvalid)
		}
		defer zr.Close()
		src = zr
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()

	type dirTimes struct {
		name  string
		mtime time.Time
	}
	var dirs []dirTimes
	var size int64
	entries := 0
	tr := tar.NewReader(src)
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read tar: %v: %w", err, ErrInvalid)
		}
		entries++
		name := path.Clean("/" + hdr.Name)[1:]
		if name == "" {
			continue // the root itself
		}
		mode := hdr.FileInfo().Mode()
		if parent := path.Dir(name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return 0, fmt.Errorf("create %s: %w", parent, err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if fi, err := root.Lstat(name); err == nil && !fi.IsDir() {
				if err := root.Remove(name); err != nil {
					return 0, fmt.Errorf("replace %s: %w", name, err)
				}
			}
			if err := root.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return 0, fmt.Errorf("create %s: %w", name, err)
			}
			dirs = append(dirs, dirTimes{name, hdr.ModTime})
		case tar.TypeReg:
			if err := removeNonDir(root, name); err != nil {
				return 0, err
			}
			f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return 0, fmt.Errorf("create %s: %w", name, err)
			}
			n, err := io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return 0, fmt.Errorf("write %s: %w", name, err)
			}
			size += n
		case tar.TypeSymlink:
			if err := removeNonDir(root, name); err != nil {
				return 0, err
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return 0, fmt.Errorf("symlink %s: %w", name, err)
			}
		case tar.TypeLink:
			if err := removeNonDir(root, name); err != nil {
				return 0, err
			}
			target := path.Clean("/" + hdr.Linkname)[1:]
			if err := root.Link(target, name); err != nil {
				return 0, fmt.Errorf("link %s: %w", name, err)
			}
			continue // shares the target's inode, owner and mode
		default:
			// Devices, FIFOs, PAX/GNU extras without content: skipped.
			continue
		}
		// Without root, files keep the importing user's ownership.
		if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil && os.Geteuid() == 0 {
			return 0, fmt.Errorf("chown %s: %w", name, err)
		}
		if hdr.Typeflag == tar.TypeSymlink {
			continue
		}
		// After chown, which clears setuid/setgid bits.
		perm := mode.Perm() | mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
		if err := root.Chmod(name, perm); err != nil {
			return 0, fmt.Errorf("chmod %s: %w", name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if err := root.Chtimes(name, hdr.ModTime, hdr.ModTime); err != nil {
				return 0, fmt.Errorf("chtimes %s: %w", name, err)
			}
		}
	}
	if entries == 0 {
		return 0, fmt.Errorf("read tar: archive is empty: %w", ErrInvalid)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		root.Chtimes(dirs[i].name, dirs[i].mtime, dirs[i].mtime)
	}
	// Drain padding and trailers so the caller's digest covers every byte.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return 0, fmt.Errorf("read tar: %w", err)
	}
	return size, nil
}

// removeNonDir removes name if it exists and is not a directory (a later tar
// entry replaces an earlier one).
func removeNonDir(root *os.Root, name string) error {
	fi, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("replace directory %s with a non-directory: %w", name, ErrInvalid)
	}
	if err := root.Remove(name); err != nil {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	return nil
}
