package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/runtime"
	"github.com/vxnet/vxnet/internal/runtime/image"
)

// imageRuntime is the image part of the containerd runtime: registry pulls
// and pushes, save and load, and forgetting an image's content.
type imageRuntime interface {
	Pull(ctx context.Context, ref string, auth runtime.RegistryAuth, progress runtime.Progress) (image.Image, bool, error)
	Push(ctx context.Context, ref string, auth runtime.RegistryAuth) (string, int64, error)
	Save(ctx context.Context, w io.Writer, refs []string) error
	Load(ctx context.Context, r io.Reader) ([]image.Image, error)
	ForgetImage(ctx context.Context, id string) error
	Login(ctx context.Context, server string, auth runtime.RegistryAuth) error
}

func newImagesAdapter(s *image.Store, rt runtimeBackend) imagesAdapter {
	a := imagesAdapter{s: s}
	if ir, ok := rt.(imageRuntime); ok {
		a.rt = ir
	}
	return a
}

func (a imagesAdapter) runtime() (imageRuntime, error) {
	if a.rt == nil {
		return nil, classed{errors.New("registries, save and load need the containerd runtime (this daemon runs --runtime runc)"), model.ErrInvalid}
	}
	return a.rt, nil
}

// runtimeErr gives the runtime's registry errors their engine class.
func runtimeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, runtime.ErrNotFound), errors.Is(err, image.ErrImageNotFound):
		return classed{err, model.ErrNotFound}
	case errors.Is(err, runtime.ErrUnauthorized):
		return classed{err, model.ErrForbidden}
	case errors.Is(err, runtime.ErrInvalid), errors.Is(err, image.ErrInvalid), errors.Is(err, runtime.ErrInsecureRegistry):
		return classed{err, model.ErrInvalid}
	}
	return err
}

func detail(i image.Image) api.ImageDetail {
	d := api.ImageDetail{
		ID: i.ID, RepoTags: i.RepoTags, RepoDigests: i.RepoDigests, Created: i.Created, Size: i.Size,
		Cmd: i.Config.Cmd, Entrypoint: i.Config.Entrypoint, Env: i.Config.Env, WorkingDir: i.Config.WorkingDir,
		User: i.Config.User, Labels: i.Config.Labels, Layers: i.Layers,
	}
	for p := range i.Config.ExposedPorts {
		d.ExposedPorts = append(d.ExposedPorts, p)
	}
	for v := range i.Config.Volumes {
		d.Volumes = append(d.Volumes, v)
	}
	sort.Strings(d.ExposedPorts)
	sort.Strings(d.Volumes)
	for _, h := range i.History {
		d.History = append(d.History, api.ImageHistory{Created: h.Created, CreatedBy: h.CreatedBy, Comment: h.Comment, Size: h.Size, EmptyLayer: h.EmptyLayer})
	}
	return d
}

func (a imagesAdapter) Inspect(ref string) (api.ImageDetail, error) {
	i, err := a.s.Get(ref)
	if err != nil {
		return api.ImageDetail{}, imageErr(err)
	}
	return detail(i), nil
}

func (a imagesAdapter) Tag(ref, name string) error { return imageErr(a.s.Tag(ref, name)) }

func (a imagesAdapter) Untag(name string) error { return imageErr(a.s.Untag(name)) }

func (a imagesAdapter) Delete(ctx context.Context, id string) error {
	if _, err := a.s.Remove(id); err != nil {
		return imageErr(err)
	}
	if a.rt != nil {
		if err := a.rt.ForgetImage(ctx, id); err != nil {
			return fmt.Errorf("image %s removed, but containerd kept its record: %w", id, err)
		}
	}
	return nil
}

func (a imagesAdapter) Pull(ctx context.Context, ref string, auth api.RegistryAuth, progress func(id, status string)) (api.ImageDetail, bool, error) {
	rt, err := a.runtime()
	if err != nil {
		return api.ImageDetail{}, false, err
	}
	i, upToDate, err := rt.Pull(ctx, ref, regAuth(auth), progress)
	if err != nil {
		return api.ImageDetail{}, false, runtimeErr(err)
	}
	return detail(i), upToDate, nil
}

func regAuth(a api.RegistryAuth) runtime.RegistryAuth {
	return runtime.RegistryAuth{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
}

func (a imagesAdapter) Push(ctx context.Context, ref string, auth api.RegistryAuth) (string, int64, error) {
	rt, err := a.runtime()
	if err != nil {
		return "", 0, err
	}
	dg, size, err := rt.Push(ctx, ref, regAuth(auth))
	return dg, size, runtimeErr(err)
}

func (a imagesAdapter) Save(ctx context.Context, refs []string, w io.Writer) error {
	rt, err := a.runtime()
	if err != nil {
		return err
	}
	return runtimeErr(rt.Save(ctx, w, refs))
}

func (a imagesAdapter) Load(ctx context.Context, r io.Reader) ([]api.ImageDetail, error) {
	rt, err := a.runtime()
	if err != nil {
		return nil, err
	}
	imgs, err := rt.Load(ctx, r)
	if err != nil {
		return nil, runtimeErr(err)
	}
	var out []api.ImageDetail
	for _, i := range imgs {
		out = append(out, detail(i))
	}
	return out, nil
}

func (a imagesAdapter) Login(ctx context.Context, auth api.RegistryAuth) error {
	rt, err := a.runtime()
	if err != nil {
		return err
	}
	return runtimeErr(rt.Login(ctx, auth.ServerAddress, regAuth(auth)))
}
