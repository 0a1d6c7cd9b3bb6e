package engine

import (
	"context"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// The engine's streams (attach, interactive exec, resize) go straight to
// the runtime once the container is resolved; nothing is held locked while
// they run.

func (e *Engine) streamRuntime() (StreamRuntime, error) {
	sr, ok := e.opts.Runtime.(StreamRuntime)
	if !ok {
		return nil, errf(model.ErrInvalid, "this runtime cannot attach to containers")
	}
	return sr, nil
}

// AttachContainer implements api.Streamer.
func (e *Engine) AttachContainer(ctx context.Context, ref string, s api.AttachStreams) error {
	sr, err := e.streamRuntime()
	if err != nil {
		return err
	}
	e.mu.Lock()
	c, err := e.containerLocked(ref)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	if !c.OpenStdin {
		s.Stdin = nil
	}
	return sr.Attach(ctx, c.ID, s)
}

// ExecStream implements api.Streamer.
func (e *Engine) ExecStream(ctx context.Context, ref string, req api.ExecStreamRequest) (int, error) {
	sr, err := e.streamRuntime()
	if err != nil {
		return 0, err
	}
	e.mu.Lock()
	c, err := e.containerLocked(ref)
	e.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if c.State != model.StateRunning {
		return 0, errf(model.ErrConflict, "container %s is not running", c.ID)
	}
	if len(req.Cmd) == 0 {
		return 0, errf(model.ErrInvalid, "no exec command specified")
	}
	return sr.ExecStream(ctx, c.ID, req)
}

// ResizeTTY implements api.Streamer.
func (e *Engine) ResizeTTY(ctx context.Context, ref, execID string, height, width uint32) error {
	sr, err := e.streamRuntime()
	if err != nil {
		return err
	}
	e.mu.Lock()
	c, err := e.containerLocked(ref)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	if c.State != model.StateRunning {
		return errf(model.ErrConflict, "Container %s is not running", c.ID)
	}
	return sr.Resize(ctx, c.ID, execID, height, width)
}
