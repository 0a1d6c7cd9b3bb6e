package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// errNoRuncContainer: runc has no state for the ID.
var errNoRuncContainer = errors.New("runc: container does not exist")

// runcState is the JSON of `runc state`.
type runcState struct {
	ID      string    `json:"id"`
	Pid     int       `json:"pid"`
	Status  string    `json:"status"` // creating, created, running, paused, stopped
	Created time.Time `json:"created"`
}

// runc runs `runc --root <root> args...` and returns its stdout; a failure
// carries runc's stderr text.
func runc(ctx context.Context, runcPath, root string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, runcPath, append([]string{"--root", root}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "does not exist") || strings.Contains(msg, "not exist") {
			return nil, fmt.Errorf("%w: %s", errNoRuncContainer, msg)
		}
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("runc %s: %s", args[0], msg)
	}
	return stdout.Bytes(), nil
}

func (r *Runtime) runc(ctx context.Context, args ...string) ([]byte, error) {
	return runc(ctx, r.runcPath, r.opts.RuncRoot, args...)
}

// runcState returns runc's view of id, or errNoRuncContainer.
func (r *Runtime) runcState(ctx context.Context, id string) (runcState, error) {
	out, err := r.runc(ctx, "state", id)
	if err != nil {
		return runcState{}, err
	}
	var st runcState
	if err := json.Unmarshal(out, &st); err != nil {
		return runcState{}, fmt.Errorf("runtime: decode runc state: %w", err)
	}
	return st, nil
}

// runcDelete force-deletes id's runc state; missing is success.
func (r *Runtime) runcDelete(ctx context.Context, id string) error {
	if _, err := r.runc(ctx, "delete", "--force", id); err != nil && !errors.Is(err, errNoRuncContainer) {
		return fmt.Errorf("runtime: delete %s: %w", id, err)
	}
	return nil
}
