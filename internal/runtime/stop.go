package runtime

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/moby/sys/signal"
	"golang.org/x/sys/unix"
)

// signaller is what stopGracefully needs of a runtime: both the runc and
// the containerd runtime provide it.
type signaller interface {
	State(ctx context.Context, id string) (State, error)
	Wait(ctx context.Context, id string) (int, error)
	Kill(ctx context.Context, id string, sig syscall.Signal) error
}

// stopGracefully sends the stop signal (sig; 0 means SIGTERM), waits up to
// timeout, then SIGKILL and waits again (10s). A container that is not
// running is left alone. The caller holds the container's lock.
func stopGracefully(ctx context.Context, r signaller, id string, sig syscall.Signal, timeout time.Duration) error {
	if sig == 0 {
		sig = unix.SIGTERM
	}
	st, err := r.State(ctx, id)
	if err != nil {
		return err
	}
	if st.Status != StatusRunning {
		return nil
	}
	waitFor := func(d time.Duration) bool {
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		_, err := r.Wait(wctx, id)
		return err == nil
	}
	if err := r.Kill(ctx, id, sig); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	if timeout > 0 && waitFor(timeout) {
		return nil
	}
	if err := r.Kill(ctx, id, unix.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	if !waitFor(10 * time.Second) {
		if ctx.Err() != nil {
			return fmt.Errorf("runtime: stop %s: %w", id, ctx.Err())
		}
		return fmt.Errorf("runtime: stop %s: still running after SIGKILL", id)
	}
	return nil
}

// stopSignal parses a container's StopSignal ("" or a bad one: SIGTERM).
func stopSignal(name string) syscall.Signal {
	if name == "" {
		return unix.SIGTERM
	}
	sig, err := signal.ParseSignal(name)
	if err != nil {
		return unix.SIGTERM
	}
	return sig
}
