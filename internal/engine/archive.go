package engine

import (
	"context"
	"errors"
	"io"
	"path"
	"strings"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/ctrfs"
	"github.com/vxnet/vxnet/internal/model"
)

// FSRuntime is the optional part of a Runtime that gives access to a
// container's files (docker cp): a host directory holding its root, and
// whether that is its bare snapshot (mounted: its binds and volumes are
// not in it) or the running container's view.
type FSRuntime interface {
	RootFS(ctx context.Context, id string) (root string, mounted bool, release func(), err error)
}

// containerFS opens the container's files. The caller calls release.
func (e *Engine) containerFS(ctx context.Context, ref string) (ctrfs.FS, model.Container, func(), error) {
	c, err := e.lookupContainer(ref)
	if err != nil {
		return ctrfs.FS{}, model.Container{}, nil, err
	}
	fr, ok := e.opts.Runtime.(FSRuntime)
	if !ok {
		return ctrfs.FS{}, c, nil, errf(model.ErrInvalid, "this daemon's runtime cannot copy files from or to containers")
	}
	root, mounted, release, err := fr.RootFS(ctx, c.ID)
	if err != nil {
		return ctrfs.FS{}, c, nil, classify(err, model.ErrUnavailable)
	}
	fsys := ctrfs.FS{Root: root}
	if mounted {
		for _, m := range c.Mounts {
			fsys.Mounts = append(fsys.Mounts, ctrfs.Mount{Source: m.Source, Destination: m.Destination})
		}
		for _, m := range e.mounts(c.ID) { // /etc/hosts, resolv.conf, hostname
			fsys.Mounts = append(fsys.Mounts, ctrfs.Mount{Source: m.Source, Destination: m.Destination})
		}
	}
	return fsys, c, release, nil
}

func archiveErr(err error, c model.Container, p string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ctrfs.ErrNotFound):
		return errf(model.ErrNotFound, "Could not find the file %s in container %s", p, c.Name)
	case errors.Is(err, ctrfs.ErrNotDir):
		return errf(model.ErrInvalid, "extraction point is not a directory")
	}
	return classify(err, model.ErrInvalid)
}

func pathStat(s ctrfs.Stat) api.PathStat {
	return api.PathStat{Name: s.Name, Size: s.Size, Mode: s.Mode, Mtime: s.Mtime, LinkTarget: s.LinkTarget}
}

// StatContainerPath is HEAD /containers/{id}/archive.
func (e *Engine) StatContainerPath(ctx context.Context, ref, p string) (api.PathStat, error) {
	fsys, c, release, err := e.containerFS(ctx, ref)
	if err != nil {
		return api.PathStat{}, err
	}
	defer release()
	st, err := fsys.Stat(p)
	if err != nil {
		return api.PathStat{}, archiveErr(err, c, p)
	}
	return pathStat(st), nil
}

// ArchiveContainerPath is GET /containers/{id}/archive: stat first (given
// to started before any byte), then the tar.
func (e *Engine) ArchiveContainerPath(ctx context.Context, ref, p string, started func(api.PathStat) io.Writer) error {
	fsys, c, release, err := e.containerFS(ctx, ref)
	if err != nil {
		return err
	}
	defer release()
	st, err := fsys.Stat(p)
	if err != nil {
		return archiveErr(err, c, p)
	}
	return archiveErr(fsys.WriteTar(started(pathStat(st)), p), c, p)
}

// ExtractToContainer is PUT /containers/{id}/archive.
func (e *Engine) ExtractToContainer(ctx context.Context, ref, dir string, r io.Reader, noOverwriteDirNonDir, copyUIDGID bool) error {
	fsys, c, release, err := e.containerFS(ctx, ref)
	if err != nil {
		return err
	}
	defer release()
	// As Docker's: a read-only mount or root file system is not written.
	var under *model.Mount
	clean := path.Clean("/" + dir)
	for i, m := range c.Mounts {
		if (clean == m.Destination || strings.HasPrefix(clean, strings.TrimSuffix(m.Destination, "/")+"/")) &&
			(under == nil || len(m.Destination) > len(under.Destination)) {
			under = &c.Mounts[i]
		}
	}
	switch {
	case under != nil && under.ReadOnly:
		return errf(model.ErrForbidden, "mounted volume is marked read-only")
	case under == nil && c.Run.ReadonlyRootfs:
		return errf(model.ErrForbidden, "container rootfs is marked read-only")
	}
	return archiveErr(fsys.Extract(r, dir, ctrfs.ExtractOptions{NoOverwriteDirNonDir: noOverwriteDirNonDir, KeepOwner: copyUIDGID}), c, dir)
}
