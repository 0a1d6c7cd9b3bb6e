package engine

import (
	"context"
	"time"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// Restart policies, as dockerd's restart manager applies them:
//   - no: never; always: whenever the container exits; unless-stopped: the
//     same, but not once a user stopped it; on-failure[:N]: when it exits
//     non-zero, at most N times (0: no bound) since a user last started it.
//   - A container a user stopped or killed is not restarted while the
//     daemon runs, whatever its policy.
//   - Back-off: the first restart waits 100 ms, each next one twice as
//     long, at most a minute; a run of 10 s or more resets it to 100 ms.
//     While it waits the container shows as "restarting".
//   - At daemon start, containers that ran before and are not running are
//     started again when the policy says so: always (even if a user
//     stopped it), unless-stopped (unless a user stopped it), on-failure
//     (after a non-zero exit, within its retry count).

const (
	restartFirstDelay = 100 * time.Millisecond
	restartMaxDelay   = time.Minute
	restartResetAfter = 10 * time.Second
)

// restartState is one container's restart back-off (under mu).
type restartState struct {
	delay   time.Duration // the last back-off (0: none yet)
	pending bool          // a restart is scheduled
	gen     int           // identifies the scheduled restart
}

// policyRestarts is Docker's decision: does policy p restart a container
// that exited with code after count restarts? manual: a user stopped it.
func policyRestarts(p model.RestartPolicy, code int, manual bool, count int) bool {
	switch p.Name {
	case model.RestartAlways:
		return true
	case model.RestartUnlessStopped:
		return !manual
	case model.RestartOnFailure:
		return code != 0 && (p.MaximumRetryCount == 0 || count < p.MaximumRetryCount)
	}
	return false
}

// restartingLocked reports whether the container waits out a back-off.
func (e *Engine) restartingLocked(id string) bool {
	rs := e.restarts[id]
	return rs != nil && rs.pending
}

// cancelRestartLocked drops a scheduled restart; reset also forgets the
// back-off (a user started the container).
func (e *Engine) cancelRestartLocked(id string, reset bool) {
	if rs := e.restarts[id]; rs != nil {
		rs.pending = false
		rs.gen++
		if reset {
			delete(e.restarts, id)
		}
	}
}

// afterExit acts on a container that just exited (the caller recorded the
// exit and holds its op lock): --rm removes it, a restart policy schedules
// its restart.
func (e *Engine) afterExit(c model.Container) {
	if c.AutoRemove {
		if err := e.removeContainer(e.ctx, c, true); err != nil {
			e.log.Warn("auto-remove", "name", c.Name, "err", err)
		}
		return
	}
	if c.ManuallyStopped || !policyRestarts(c.RestartPolicy, c.ExitCode, false, c.RestartCount) {
		return
	}
	e.mu.Lock()
	rs := e.restarts[c.ID]
	if rs == nil {
		rs = &restartState{}
		e.restarts[c.ID] = rs
	}
	if c.FinishedAt.Sub(c.StartedAt) >= restartResetAfter {
		rs.delay = 0
	}
	switch {
	case rs.delay == 0:
		rs.delay = restartFirstDelay
	case rs.delay < restartMaxDelay:
		rs.delay = min(2*rs.delay, restartMaxDelay)
	}
	rs.gen++
	rs.pending = true
	gen, delay := rs.gen, rs.delay
	e.mu.Unlock()

	c.RestartCount++
	if err := e.opts.Store.Put(store.Containers, c.ID, c); err != nil {
		e.log.Error("record restart count", "name", c.Name, "err", err)
	}
	e.mu.Lock()
	if cur, ok := e.containers[c.ID]; ok {
		cur.RestartCount = c.RestartCount
		e.containers[c.ID] = cur
	}
	e.mu.Unlock()
	e.log.Info("container restarts by policy", "name", c.Name, "policy", c.RestartPolicy.Name, "in", delay, "count", c.RestartCount)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-e.ctx.Done():
			return
		}
		e.restartByPolicy(c.ID, gen)
	}()
}

// restartByPolicy starts a container whose back-off (gen) has passed, if
// nothing cancelled it meanwhile.
func (e *Engine) restartByPolicy(id string, gen int) {
	unlock := e.ctrOps.lock(id)
	defer unlock()
	e.mu.Lock()
	rs := e.restarts[id]
	due := rs != nil && rs.pending && rs.gen == gen
	c, ok := e.containers[id]
	e.mu.Unlock()
	if !due {
		return
	}
	// The container shows as restarting until the start is done.
	defer func() {
		e.mu.Lock()
		if rs.gen == gen {
			rs.pending = false
		}
		e.mu.Unlock()
	}()
	if !ok || c.State == model.StateRunning {
		return
	}
	if err := e.startLocked(e.ctx, c, false); err != nil {
		e.log.Warn("restart by policy", "name", c.Name, "err", err)
	}
}

// stoppedByUser records that a user stops or kills the container (before
// the signal), so its exit does not restart it; a scheduled restart is
// cancelled.
func (e *Engine) stoppedByUser(id string) {
	unlock := e.ctrOps.lock(id)
	defer unlock()
	e.mu.Lock()
	c, ok := e.containers[id]
	e.cancelRestartLocked(id, false)
	e.mu.Unlock()
	if !ok || c.ManuallyStopped {
		return
	}
	c.ManuallyStopped = true
	if err := e.opts.Store.Put(store.Containers, id, c); err != nil {
		e.log.Error("record a stop by the user", "name", c.Name, "err", err)
		return
	}
	e.mu.Lock()
	if cur, ok := e.containers[id]; ok {
		cur.ManuallyStopped = true
		e.containers[id] = cur
	}
	e.mu.Unlock()
}

// restartAtStart starts, at daemon start, the containers that ran before,
// are not running and whose policy says so (see the top of this file).
func (e *Engine) restartAtStart(ctx context.Context) {
	e.mu.Lock()
	var todo []model.Container
	for _, c := range e.containers {
		if c.State == model.StateExited && !c.AutoRemove && !c.StartedAt.IsZero() &&
			policyRestarts(c.RestartPolicy, c.ExitCode, c.ManuallyStopped, c.RestartCount) {
			todo = append(todo, c)
		}
	}
	e.mu.Unlock()
	for _, c := range todo {
		unlock := e.ctrOps.lock(c.ID)
		cur, ok := e.containerByID(c.ID)
		if ok && cur.State == model.StateExited {
			if err := e.startLocked(ctx, cur, true); err != nil {
				e.log.Warn("restart by policy at daemon start", "name", c.Name, "err", err)
			} else {
				e.log.Info("container restarted by policy at daemon start", "name", c.Name, "policy", c.RestartPolicy.Name)
			}
		}
		unlock()
	}
}

func (e *Engine) containerByID(id string) (model.Container, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.containers[id]
	return c, ok
}
