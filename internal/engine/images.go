package engine

import (
	"context"
	"io"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/events"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// ImageManager is the optional part of Images that inspects, tags, removes,
// pulls, pushes, saves and loads images (the image store with containerd's
// registry client and archive format behind it). Without it those
// requests are refused.
type ImageManager interface {
	Inspect(ref string) (api.ImageDetail, error)
	Tag(ref, name string) error
	// Untag removes the name only.
	Untag(name string) error
	// Delete removes the image id with its names and content.
	Delete(ctx context.Context, id string) error
	// Pull reports progress (layer ID, status) while it runs; upToDate:
	// the name already named the pulled image.
	Pull(ctx context.Context, ref string, auth api.RegistryAuth, progress func(id, status string)) (d api.ImageDetail, upToDate bool, err error)
	Push(ctx context.Context, ref string, auth api.RegistryAuth) (digest string, size int64, err error)
	Save(ctx context.Context, refs []string, w io.Writer) error
	Load(ctx context.Context, r io.Reader) ([]api.ImageDetail, error)
	// Login checks a credential against its registry.
	Login(ctx context.Context, auth api.RegistryAuth) error
}

func (e *Engine) images() (ImageManager, error) {
	m, ok := e.opts.Images.(ImageManager)
	if !ok {
		return nil, errf(model.ErrInvalid, "this daemon's image store cannot do that")
	}
	return m, nil
}

// InspectImage describes an image.
func (e *Engine) InspectImage(ctx context.Context, ref string) (api.ImageDetail, error) {
	m, err := e.images()
	if err != nil {
		return api.ImageDetail{}, err
	}
	d, err := m.Inspect(ref)
	if err != nil {
		return api.ImageDetail{}, classify(err, model.ErrNotFound)
	}
	return d, nil
}

// TagImage gives the image ref the name name (moving it from another image).
func (e *Engine) TagImage(ctx context.Context, ref, name string) error {
	m, err := e.images()
	if err != nil {
		return err
	}
	if err := m.Tag(ref, name); err != nil {
		return classify(err, model.ErrInvalid)
	}
	if d, err := m.Inspect(name); err == nil {
		if n, err := reference.ParseNormalizedNamed(name); err == nil {
			name = reference.FamiliarString(n) // docker.io/library/x:1 is x:1, as dockerd logs it
		}
		e.PublishEvent(events.ImageEventType, events.ActionTag, d.ID, map[string]string{"name": name})
	}
	return nil
}

// PullImage pulls ref from its registry.
func (e *Engine) PullImage(ctx context.Context, ref string, auth api.RegistryAuth, progress func(id, status string)) (api.ImageDetail, bool, error) {
	m, err := e.images()
	if err != nil {
		return api.ImageDetail{}, false, err
	}
	d, upToDate, err := m.Pull(ctx, ref, auth, progress)
	if err != nil {
		return api.ImageDetail{}, false, classify(err, model.ErrUnavailable)
	}
	e.PublishEvent(events.ImageEventType, events.ActionPull, ref, map[string]string{"name": ref})
	return d, upToDate, nil
}

// PushImage pushes the image named ref to its registry.
func (e *Engine) PushImage(ctx context.Context, ref string, auth api.RegistryAuth) (string, int64, error) {
	m, err := e.images()
	if err != nil {
		return "", 0, err
	}
	dg, size, err := m.Push(ctx, ref, auth)
	if err != nil {
		return "", 0, classify(err, model.ErrUnavailable)
	}
	return dg, size, nil
}

// SaveImages writes the images as one tar in Docker's format.
func (e *Engine) SaveImages(ctx context.Context, refs []string, w io.Writer) error {
	m, err := e.images()
	if err != nil {
		return err
	}
	for _, ref := range refs {
		if _, err := m.Inspect(ref); err != nil {
			return classify(err, model.ErrNotFound)
		}
	}
	return classifyNil(m.Save(ctx, refs, w), model.ErrInvalid)
}

// LoadImages loads a tar made by docker save.
func (e *Engine) LoadImages(ctx context.Context, r io.Reader) ([]api.ImageDetail, error) {
	m, err := e.images()
	if err != nil {
		return nil, err
	}
	out, err := m.Load(ctx, r)
	if err != nil {
		return nil, classify(err, model.ErrInvalid)
	}
	return out, nil
}

// imageUsers returns the containers made from image id, running ones
// first.
func (e *Engine) imageUsers(m ImageManager, id string) []model.Container {
	e.mu.Lock()
	ctrs := make([]model.Container, 0, len(e.containers))
	for _, c := range e.containers {
		ctrs = append(ctrs, c)
	}
	e.mu.Unlock()
	var out []model.Container
	for _, c := range ctrs {
		cid := c.ImageID
		if cid == "" { // made before containers recorded their image's ID
			if d, err := m.Inspect(c.Image); err == nil {
				cid = d.ID
			}
		}
		if cid == id {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b model.Container) int {
		ra, rb := a.State == model.StateRunning, b.State == model.StateRunning
		switch {
		case ra && !rb:
			return -1
		case rb && !ra:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// classifyNil is classify keeping nil.
func classifyNil(err, class error) error {
	if err == nil {
		return nil
	}
	return classify(err, class)
}

func shortImageID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	return id[:min(12, len(id))]
}

// RemoveImage is docker rmi: a name of an image with several names is
// only untagged; otherwise the image is deleted with all its names, unless
// a container uses it (Docker's conflicts: a running container's image
// cannot be deleted even with force; a stopped container's image is only
// untagged with force), or an ID names an image with several names and
// force is not given.
func (e *Engine) RemoveImage(ctx context.Context, ref string, force bool) ([]api.ImageDeleteItem, error) {
	items, id, err := e.removeImage(ctx, ref, force)
	for _, it := range items {
		switch {
		case it.Untagged != "":
			e.PublishEvent(events.ImageEventType, events.ActionUnTag, id, map[string]string{"name": it.Untagged})
		case it.Deleted != "":
			e.PublishEvent(events.ImageEventType, events.ActionDelete, id, map[string]string{"name": id})
		}
	}
	return items, err
}

// removeImage is RemoveImage; it also returns the image's ID.
func (e *Engine) removeImage(ctx context.Context, ref string, force bool) ([]api.ImageDeleteItem, string, error) {
	m, err := e.images()
	if err != nil {
		return nil, "", err
	}
	img, err := m.Inspect(ref)
	if err != nil {
		return nil, "", classify(err, model.ErrNotFound)
	}
	byName := ""
	if n, ok := tagOf(img, ref); ok {
		byName = n
	}
	if byName != "" && len(img.RepoTags) > 1 {
		if err := m.Untag(byName); err != nil {
			return nil, img.ID, classify(err, model.ErrInvalid)
		}
		return []api.ImageDeleteItem{{Untagged: byName}}, img.ID, nil
	}
	short := shortImageID(img.ID)
	if byName == "" && len(img.RepoTags) > 1 && !force {
		return nil, img.ID, errf(model.ErrConflict, "conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", short)
	}
	users := e.imageUsers(m, img.ID)
	if len(users) > 0 {
		u := users[0]
		if u.State == model.StateRunning {
			return nil, img.ID, errf(model.ErrConflict, "conflict: unable to delete %s (cannot be forced) - image is being used by running container %s", short, u.ID[:12])
		}
		if !force {
			if byName != "" {
				return nil, img.ID, errf(model.ErrConflict, "conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", ref, u.ID[:12], short)
			}
			return nil, img.ID, errf(model.ErrConflict, "conflict: unable to delete %s (must be forced) - image is being used by stopped container %s", short, u.ID[:12])
		}
		// Forced with stopped users: the names go, the image stays.
		var out []api.ImageDeleteItem
		for _, t := range img.RepoTags {
			if err := m.Untag(t); err != nil {
				return out, img.ID, classify(err, model.ErrInvalid)
			}
			out = append(out, api.ImageDeleteItem{Untagged: t})
		}
		return out, img.ID, nil
	}
	var out []api.ImageDeleteItem
	for _, t := range img.RepoTags {
		out = append(out, api.ImageDeleteItem{Untagged: t})
	}
	for _, d := range img.RepoDigests {
		out = append(out, api.ImageDeleteItem{Untagged: d})
	}
	if err := m.Delete(ctx, img.ID); err != nil {
		return nil, img.ID, classify(err, model.ErrInvalid)
	}
	return append(out, api.ImageDeleteItem{Deleted: img.ID}), img.ID, nil
}

// tagOf returns the image's name that ref spells, if ref is a name.
func tagOf(img api.ImageDetail, ref string) (string, bool) {
	full := ref
	last := ref[strings.LastIndex(ref, "/")+1:]
	if !strings.Contains(last, ":") {
		full = ref + ":latest"
	}
	for _, cand := range []string{ref, full, strings.TrimPrefix(full, "docker.io/"), strings.TrimPrefix(full, "docker.io/library/")} {
		if slices.Contains(img.RepoTags, cand) {
			return cand, true
		}
	}
	return "", false
}

// PruneImages removes the images no container uses: the untagged ones, or
// all of them with all. It returns what it removed and the bytes freed.
func (e *Engine) PruneImages(ctx context.Context, all bool) ([]api.ImageDeleteItem, int64, error) {
	m, err := e.images()
	if err != nil {
		return nil, 0, err
	}
	list, err := e.opts.Images.List()
	if err != nil {
		return nil, 0, err
	}
	seen := map[string]bool{}
	var out []api.ImageDeleteItem
	var freed int64
	for _, i := range list {
		if seen[i.ID] {
			continue
		}
		seen[i.ID] = true
		d, err := m.Inspect(i.ID)
		if err != nil {
			continue
		}
		if (!all && len(d.RepoTags) > 0) || len(e.imageUsers(m, d.ID)) > 0 {
			continue
		}
		if err := m.Delete(ctx, d.ID); err != nil {
			return out, freed, classify(err, model.ErrInvalid)
		}
		for _, t := range d.RepoTags {
			out = append(out, api.ImageDeleteItem{Untagged: t})
		}
		out = append(out, api.ImageDeleteItem{Deleted: d.ID})
		freed += d.Size
	}
	return out, freed, nil
}

// Login is docker login: the credential is checked against the registry,
// not stored (the client keeps it and sends it with each pull and push).
func (e *Engine) Login(ctx context.Context, auth api.RegistryAuth) error {
	m, err := e.images()
	if err != nil {
		return err
	}
	return classifyNil(m.Login(ctx, auth), model.ErrForbidden)
}
