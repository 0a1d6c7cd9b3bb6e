package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/events"

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
	c, err := e.lookupContainer(ref)
	if err != nil {
		return err
	}
	if c.Paused {
		return errf(model.ErrConflict, "container %s is paused, unpause the container before attach", strings.TrimPrefix(ref, "/"))
	}
	if !c.OpenStdin {
		s.Stdin = nil
	}
	e.containerEvent(c, events.ActionAttach, nil)
	return sr.Attach(ctx, c.ID, s)
}

// ExecStream implements api.Streamer.
func (e *Engine) ExecStream(ctx context.Context, ref string, req api.ExecStreamRequest) (int, error) {
	sr, err := e.streamRuntime()
	if err != nil {
		return 0, err
	}
	c, err := e.execTarget(ref, req.Cmd)
	if err != nil {
		return 0, err
	}
	return sr.ExecStream(ctx, c.ID, req)
}

// ResizeTTY implements api.Streamer.
func (e *Engine) ResizeTTY(ctx context.Context, ref, execID string, height, width uint32) error {
	sr, err := e.streamRuntime()
	if err != nil {
		return err
	}
	c, err := e.lookupContainer(ref)
	if err != nil {
		return err
	}
	if c.State != model.StateRunning {
		return errf(model.ErrConflict, "Container %s is not running", c.ID)
	}
	return sr.Resize(ctx, c.ID, execID, height, width)
}

func (e *Engine) signalRuntime() (SignalRuntime, error) {
	sr, ok := e.opts.Runtime.(SignalRuntime)
	if !ok {
		return nil, errf(model.ErrInvalid, "this runtime cannot signal containers")
	}
	return sr, nil
}

// KillContainer implements api.Lifecycle. The exit (if the signal ends the
// process) is recorded by the container's exit watch.
func (e *Engine) KillContainer(ctx context.Context, ref string, sig syscall.Signal) error {
	sr, err := e.signalRuntime()
	if err != nil {
		return err
	}
	c, err := e.lookupContainer(ref)
	if err != nil {
		return err
	}
	if c.State != model.StateRunning {
		return errf(model.ErrConflict, "cannot kill container: %s: container %s is not running", strings.TrimPrefix(ref, "/"), c.ID)
	}
	// As dockerd: a kill with SIGKILL or the stop signal (any signal when
	// the container has none configured) is a stop by the user; the
	// restart policy does not bring the container back.
	if sig == syscall.SIGKILL || c.Run.StopSignal == "" || sig == stopSignalOf(c) {
		e.stoppedByUser(c.ID)
	}
	if err := sr.Kill(ctx, c.ID, sig); err != nil {
		if errors.Is(err, model.ErrConflict) {
			return errf(model.ErrConflict, "cannot kill container: %s: container %s is not running", strings.TrimPrefix(ref, "/"), c.ID)
		}
		return fmt.Errorf("cannot kill container: %s: %w", strings.TrimPrefix(ref, "/"), err)
	}
	e.containerEvent(c, events.ActionKill, map[string]string{"signal": strconv.Itoa(int(sig))})
	e.thaw(ctx, c)
	if sig == syscall.SIGKILL {
		// As dockerd: a SIGKILL returns once the container is stopped.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := e.opts.Runtime.Wait(wctx, c.ID); err == nil {
			e.markExited(ctx, c.ID)
		}
	}
	return nil
}

// LogsWith implements api.Lifecycle.
func (e *Engine) LogsWith(ctx context.Context, ref string, stdout, stderr io.Writer, o api.LogOptions) error {
	sr, err := e.signalRuntime()
	if err != nil {
		return err
	}
	c, err := e.lookupContainer(ref)
	if err != nil {
		return err
	}
	return sr.LogsWith(ctx, c.ID, stdout, stderr, o)
}
