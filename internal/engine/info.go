package engine

import (
	"context"
	"io"
	"os"

	"github.com/moby/moby/api/types/events"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// Version is the daemon's version string.
const Version = "0.1.0"

// ListImages lists local images.
func (e *Engine) ListImages(ctx context.Context) ([]api.Image, error) {
	imgs, err := e.opts.Images.List()
	if err != nil {
		return nil, err
	}
	var out []api.Image
	for _, i := range imgs {
		out = append(out, api.Image{ID: i.ID, Name: i.Name, Created: i.Created.Unix(), Size: i.Size})
	}
	return out, nil
}

// ImportImage imports a root filesystem tar as an image.
func (e *Engine) ImportImage(ctx context.Context, name string, r io.Reader) (api.Image, error) {
	i, err := e.opts.Images.Import(name, r)
	if err != nil {
		return api.Image{}, classify(err, model.ErrInvalid)
	}
	e.PublishEvent(events.ImageEventType, events.ActionImport, i.ID, map[string]string{"name": i.Name})
	return api.Image{ID: i.ID, Name: i.Name, Created: i.Created.Unix(), Size: i.Size}, nil
}

// Info reports counts and roots, and what is failing now (a firewall
// that could not be applied) as warnings.
func (e *Engine) Info(ctx context.Context) (api.Info, error) {
	host, _ := os.Hostname()
	in := api.Info{Name: host, Version: Version, DataRoot: e.opts.DataRoot, ExecRoot: e.opts.ExecRoot}
	e.mu.Lock()
	in.Containers = len(e.containers)
	for _, c := range e.containers {
		if c.State == model.StateRunning {
			in.Running++
		}
	}
	e.mu.Unlock()
	if imgs, err := e.opts.Images.List(); err == nil {
		in.Images = len(imgs)
	}
	if s := e.firewallStatus(); s != "" {
		in.Warnings = append(in.Warnings, "WARNING: "+s)
	}
	if g := e.cluster(); g != nil {
		if s := g.Status(); !s.Reachable {
			in.Warnings = append(in.Warnings, "WARNING: "+s.Unreachable())
		}
	} else if e.opts.ClusterPending {
		in.Warnings = append(in.Warnings, "WARNING: cluster store unreachable since the daemon started: global networks are not available yet")
	}
	return in, nil
}

var _ api.Backend = (*Engine)(nil)

// ComponentRuntime is the optional part of a Runtime that reports what
// runs the containers (containerd, runc, docker-init) for /version.
type ComponentRuntime interface {
	Components(ctx context.Context) []api.Component
}

// Components are the runtime's components, for /version.
func (e *Engine) Components(ctx context.Context) []api.Component {
	if cr, ok := e.opts.Runtime.(ComponentRuntime); ok {
		return cr.Components(ctx)
	}
	return nil
}

var _ api.Componenter = (*Engine)(nil)
