package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/sys/mountinfo"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/ctrfs"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/volume"
)

// Volumes (the local driver, internal/volume) and binds. A container's
// mounts are resolved at create: named volumes are made when missing (as
// docker run does), anonymous ones get a fresh name, bind sources must
// exist (-v makes a missing one). They are recorded in the container, so
// they survive restarts; anonymous volumes go with their container when it
// is removed with rm -v or was run with --rm.

func (e *Engine) volumes() (*volume.Store, error) {
	if e.opts.Volumes == nil {
		return nil, errf(model.ErrInvalid, "this daemon has no volume store")
	}
	return e.opts.Volumes, nil
}

// volumeErr gives the volume store's errors their class.
func volumeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, volume.ErrNotFound):
		return classify(err, model.ErrNotFound)
	case errors.Is(err, volume.ErrInvalid):
		return classify(err, model.ErrInvalid)
	}
	return err
}

// resolveMounts makes the volumes of a new container and checks its binds.
// It returns the mounts with their host sources, an undo that removes the
// anonymous volumes it made, and a done to call once the container is
// committed or given up (until then its volumes count as in use).
func (e *Engine) resolveMounts(ms []model.Mount) ([]model.Mount, func(), func(), error) {
	var made, held []string
	done := func() {
		e.mu.Lock()
		for _, n := range held {
			if e.pendingVolumes[n]--; e.pendingVolumes[n] <= 0 {
				delete(e.pendingVolumes, n)
			}
		}
		e.mu.Unlock()
	}
	undoMade := func() {
		for _, n := range made {
			e.opts.Volumes.Remove(n)
		}
	}
	undo := func() { undoMade(); done() }
	out := make([]model.Mount, 0, len(ms))
	for _, m := range ms {
		switch m.Type {
		case "bind":
			if _, err := os.Stat(m.Source); errors.Is(err, os.ErrNotExist) {
				if !m.CreateSource {
					undo()
					return nil, nil, nil, errf(model.ErrInvalid, "invalid mount config for type \"bind\": bind source path does not exist: %s", m.Source)
				}
				if err := os.MkdirAll(m.Source, 0o755); err != nil {
					undo()
					return nil, nil, nil, fmt.Errorf("create bind source %s: %w", m.Source, err)
				}
			}
			if err := checkPropagation(m); err != nil {
				undo()
				return nil, nil, nil, err
			}
		case "volume":
			vs, err := e.volumes()
			if err != nil {
				undo()
				return nil, nil, nil, err
			}
			var labels map[string]string
			if m.Name == "" {
				m.Name, m.Anonymous = volume.NewAnonymousName(), true
				labels = map[string]string{volume.AnonymousLabel: ""}
			}
			e.mu.Lock()
			e.pendingVolumes[m.Name]++
			e.mu.Unlock()
			held = append(held, m.Name)
			v, err := vs.Create(m.Name, labels)
			if err != nil {
				undo()
				return nil, nil, nil, volumeErr(err)
			}
			if m.Anonymous {
				made = append(made, m.Name)
			}
			m.Source = v.Mountpoint
		default:
			undo()
			return nil, nil, nil, errf(model.ErrInvalid, "vxnet does not support mounts of type %q", m.Type)
		}
		m.CreateSource = false
		out = append(out, m)
	}
	// Named volumes made here stay (as Docker's); only anonymous ones are
	// undone.
	return out, undoMade, done, nil
}

// checkPropagation refuses shared and slave binds whose source is not on a
// mount of the propagation they need (Docker's check): otherwise the
// option would silently do nothing.
func checkPropagation(m model.Mount) error {
	want := ""
	switch m.Propagation {
	case "shared", "rshared":
		want = "shared"
	case "slave", "rslave":
		want = "slave"
	default:
		return nil
	}
	info, err := mountOf(m.Source)
	if err != nil {
		return fmt.Errorf("bind %s: %w", m.Source, err)
	}
	opt := " " + strings.ReplaceAll(info.Optional, " ", "  ") + " "
	shared := strings.Contains(opt, " shared:")
	slave := strings.Contains(opt, " master:")
	if want == "shared" && !shared {
		return errf(model.ErrInvalid, "path %s is mounted on %s but it is not a shared mount", m.Source, info.Mountpoint)
	}
	if want == "slave" && !shared && !slave {
		return errf(model.ErrInvalid, "path %s is mounted on %s but it is not a shared or slave mount", m.Source, info.Mountpoint)
	}
	return nil
}

// mountOf returns the mount holding path.
func mountOf(path string) (*mountinfo.Info, error) {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	var best *mountinfo.Info
	for _, in := range infos {
		if p == in.Mountpoint || strings.HasPrefix(p, strings.TrimSuffix(in.Mountpoint, "/")+"/") {
			if best == nil || len(in.Mountpoint) >= len(best.Mountpoint) {
				best = in
			}
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no mount holds %s", path)
	}
	return best, nil
}

// withImageVolumes adds an anonymous volume for each of the image's volume
// mount points that no mount of the request covers (as Docker does).
func withImageVolumes(ms []model.Mount, imageVolumes []string) []model.Mount {
	out := slices.Clone(ms)
	for _, dst := range imageVolumes {
		dst = path.Clean("/" + dst)
		if slices.ContainsFunc(ms, func(m model.Mount) bool { return m.Destination == dst }) {
			continue
		}
		out = append(out, model.Mount{Type: "volume", Destination: dst, Anonymous: true})
	}
	return out
}

// copyUp copies what the container's image has under the mount point of
// each of its volumes that is empty into the volume (Docker's behaviour;
// not with nocopy). The container is created, not started: its root is
// its snapshot.
func (e *Engine) copyUp(ctx context.Context, id string, ms []model.Mount) error {
	var todo []model.Mount
	for _, m := range ms {
		if m.Type == "volume" && !m.NoCopy && dirEmpty(m.Source) {
			todo = append(todo, m)
		}
	}
	fr, ok := e.opts.Runtime.(FSRuntime)
	if len(todo) == 0 || !ok {
		return nil
	}
	root, _, release, err := fr.RootFS(ctx, id)
	if err != nil {
		return err
	}
	defer release()
	src := ctrfs.FS{Root: root}
	for _, m := range todo {
		st, err := src.Stat(m.Destination)
		if err != nil || !st.Mode.IsDir() {
			continue // nothing there in the image
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(src.WriteTar(pw, m.Destination+"/.")) }()
		err = ctrfs.FS{Root: m.Source}.Extract(pr, "/", ctrfs.ExtractOptions{KeepOwner: true})
		pr.CloseWithError(io.ErrClosedPipe)
		if err != nil {
			return fmt.Errorf("volume %s: %w", m.Name, err)
		}
		os.Chmod(m.Source, st.Mode.Perm())
	}
	return nil
}

func dirEmpty(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) == 0
}

// runtimeMounts are the container's binds and volumes for the runtime.
func runtimeMounts(ms []model.Mount) []Mount {
	var out []Mount
	for _, m := range ms {
		out = append(out, Mount{Source: m.Source, Destination: m.Destination, ReadOnly: m.ReadOnly, Propagation: m.Propagation})
	}
	return out
}

// removeAnonymousVolumes removes the anonymous volumes of a removed
// container (rm -v, --rm); one another container also uses stays.
func (e *Engine) removeAnonymousVolumes(c model.Container) error {
	var errs []error
	for _, m := range c.Mounts {
		if m.Type != "volume" || !m.Anonymous {
			continue
		}
		if users := e.volumeUsers(m.Name); len(users) > 0 {
			continue
		}
		if err := e.opts.Volumes.Remove(m.Name); err != nil && !errors.Is(err, volume.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// volumeUsers returns the IDs of the containers mounting volume name.
func (e *Engine) volumeUsers(name string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ids []string
	if e.pendingVolumes[name] > 0 {
		ids = append(ids, "(a container being created)")
	}
	for _, c := range e.containers {
		for _, m := range c.Mounts {
			if m.Type == "volume" && m.Name == name {
				ids = append(ids, c.ID)
				break
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// RemoveContainerVolumes is rm with -v: the container, then its anonymous
// volumes.
func (e *Engine) RemoveContainerVolumes(ctx context.Context, ref string, force bool) error {
	c, unlock, err := e.lockContainer(ref)
	if err != nil {
		return err
	}
	defer unlock()
	if err := e.removeContainer(ctx, c, force); err != nil {
		return err
	}
	if c.AutoRemove {
		return nil // removeContainer did
	}
	return e.removeAnonymousVolumes(c)
}

func (e *Engine) volumeInfo(v volume.Volume) api.VolumeInfo {
	return api.VolumeInfo{Name: v.Name, Mountpoint: v.Mountpoint, CreatedAt: v.CreatedAt, Labels: v.Labels,
		Anonymous: v.Anonymous(), RefCount: len(e.volumeUsers(v.Name))}
}

// CreateVolume is docker volume create ("" makes a random name).
func (e *Engine) CreateVolume(ctx context.Context, name, driver string, opts, labels map[string]string) (api.VolumeInfo, error) {
	vs, err := e.volumes()
	if err != nil {
		return api.VolumeInfo{}, err
	}
	if driver != "" && driver != "local" {
		return api.VolumeInfo{}, errf(model.ErrNotFound, "error looking up volume plugin %s: plugin %q not found", driver, driver)
	}
	if len(opts) > 0 {
		return api.VolumeInfo{}, errf(model.ErrInvalid, "vxnet's local volume driver takes no options (--opt)")
	}
	if name == "" {
		name = volume.NewAnonymousName()
	}
	v, err := vs.Create(name, labels)
	if err != nil {
		return api.VolumeInfo{}, volumeErr(err)
	}
	e.PublishEvent(events.VolumeEventType, events.ActionCreate, v.Name, map[string]string{"driver": "local"})
	return e.volumeInfo(v), nil
}

// InspectVolume is docker volume inspect.
func (e *Engine) InspectVolume(ctx context.Context, name string) (api.VolumeInfo, error) {
	vs, err := e.volumes()
	if err != nil {
		return api.VolumeInfo{}, err
	}
	v, err := vs.Get(name)
	if err != nil {
		return api.VolumeInfo{}, volumeErr(err)
	}
	return e.volumeInfo(v), nil
}

// ListVolumes is docker volume ls; each volume comes with how many
// containers use it.
func (e *Engine) ListVolumes(ctx context.Context) ([]api.VolumeInfo, error) {
	vs, err := e.volumes()
	if err != nil {
		return nil, err
	}
	list, err := vs.List()
	if err != nil {
		return nil, err
	}
	var out []api.VolumeInfo
	for _, v := range list {
		out = append(out, e.volumeInfo(v))
	}
	return out, nil
}

// RemoveVolume is docker volume rm; a volume in use is a conflict (even
// with force, as Docker's).
func (e *Engine) RemoveVolume(ctx context.Context, name string, force bool) error {
	vs, err := e.volumes()
	if err != nil {
		return err
	}
	if _, err := vs.Get(name); err != nil {
		if force && errors.Is(err, volume.ErrNotFound) {
			return nil
		}
		return volumeErr(err)
	}
	if users := e.volumeUsers(name); len(users) > 0 {
		return errf(model.ErrConflict, "remove %s: volume is in use - [%s]", name, strings.Join(users, ", "))
	}
	if err := vs.Remove(name); err != nil {
		return volumeErr(err)
	}
	e.PublishEvent(events.VolumeEventType, events.ActionDestroy, name, map[string]string{"driver": "local"})
	return nil
}

// PruneVolumes removes unused volumes: the anonymous ones, or all with
// all (Docker's prune --all).
func (e *Engine) PruneVolumes(ctx context.Context, all bool) ([]string, int64, error) {
	vs, err := e.volumes()
	if err != nil {
		return nil, 0, err
	}
	list, err := vs.List()
	if err != nil {
		return nil, 0, err
	}
	var gone []string
	var freed int64
	for _, v := range list {
		if (!all && !v.Anonymous()) || len(e.volumeUsers(v.Name)) > 0 {
			continue
		}
		size := v.Size()
		if err := vs.Remove(v.Name); err != nil {
			return gone, freed, volumeErr(err)
		}
		e.PublishEvent(events.VolumeEventType, events.ActionDestroy, v.Name, map[string]string{"driver": "local"})
		gone = append(gone, v.Name)
		freed += size
	}
	return gone, freed, nil
}
