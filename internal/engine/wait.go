package engine

import (
	"context"

	"github.com/vxnet/vxnet/internal/api"
)

// exitSub is one registered wait for a container's next exit or removal.
type exitSub struct {
	removed bool
	ch      chan int
}

// WaitExit registers a wait before the caller starts the container, so the
// exit code of a container that exits (and is auto-removed) at once is not
// lost. See api.ExitWaiter.
func (e *Engine) WaitExit(ctx context.Context, ref string, removed bool) (func(context.Context) (int, error), error) {
	e.mu.Lock()
	c, err := e.containerLocked(ref)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	sub := exitSub{removed: removed, ch: make(chan int, 1)}
	if e.exitSubs == nil {
		e.exitSubs = map[string][]exitSub{}
	}
	e.exitSubs[c.ID] = append(e.exitSubs[c.ID], sub)
	e.mu.Unlock()
	return func(ctx context.Context) (int, error) {
		select {
		case code := <-sub.ch:
			return code, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, nil
}

// notifyExitLocked wakes waits for the next exit (and, when the container
// is gone, waits for its removal).
func (e *Engine) notifyExitLocked(id string, code int, removed bool) {
	var keep []exitSub
	for _, s := range e.exitSubs[id] {
		if !s.removed || removed {
			s.ch <- code
			continue
		}
		keep = append(keep, s)
	}
	if len(keep) == 0 {
		delete(e.exitSubs, id)
	} else {
		e.exitSubs[id] = keep
	}
}

var _ api.ExitWaiter = (*Engine)(nil)
