package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
)

// labelStdin marks containers whose task gets a stdin (docker run -i).
const labelStdin = "vxnet.stdin"

// labelStopSignal holds the container's stop signal (StopSignal; "" is
// SIGTERM).
const labelStopSignal = "vxnet.stop-signal"

// hub is the daemon's side of one container's streams across its runs: the
// clients attached to its output, and the pipe its task's stdin reads from.
// A client may attach before the task starts (docker run in the
// foreground); it then sees the task's output from the first byte.
type hub struct {
	mu     sync.Mutex
	subs   map[*attachment]struct{}
	stdinR *io.PipeReader // read by the current (or next) task's stdin copier
	stdinW *io.PipeWriter // written by attached clients
}

// attachment is one attached client.
type attachment struct {
	stdout, stderr io.Writer
	done           chan struct{} // closed when the run it watched has ended
}

func newHub() *hub {
	h := &hub{subs: map[*attachment]struct{}{}}
	h.stdinR, h.stdinW = io.Pipe()
	return h
}

// hub returns the hub of container id, making it on first use.
func (r *Containerd) hub(id string) *hub {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hubs[id]
	if h == nil {
		h = newHub()
		r.hubs[id] = h
	}
	return h
}

// broadcast writes p to every attached client's stream (stderr when
// toStderr). A client that fails to take it is dropped.
func (h *hub) broadcast(toStderr bool, p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for a := range h.subs {
		w := a.stdout
		if toStderr {
			w = a.stderr
		}
		if w == nil {
			continue
		}
		if _, err := w.Write(p); err != nil {
			delete(h.subs, a)
			close(a.done)
		}
	}
}

// runEnded releases every attached client and gives the next run a fresh
// stdin pipe.
func (h *hub) runEnded() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for a := range h.subs {
		close(a.done)
	}
	h.subs = map[*attachment]struct{}{}
	h.stdinW.CloseWithError(io.ErrClosedPipe)
	h.stdinR, h.stdinW = io.Pipe()
}

// hubWriter is one output stream of a hub: what the task writes goes to the
// container's log and to the attached clients.
type hubWriter struct {
	h        *hub
	stderr   bool
	toLogger *io.PipeWriter
}

func (w *hubWriter) Write(p []byte) (int, error) {
	w.h.broadcast(w.stderr, p)
	return w.toLogger.Write(p)
}

func (w *hubWriter) Close() error { return w.toLogger.Close() }

// AttachOptions are the streams of one attach.
type AttachOptions struct {
	// Stdin, if set, is copied to the task's stdin (containers created
	// with Spec.Stdin only). When it ends, CloseStdin closes the task's
	// stdin (docker's StdinOnce); otherwise the task's stdin stays open.
	Stdin      io.Reader
	CloseStdin bool
	// Stdout and Stderr receive the output (nil drops a stream). With a
	// TTY all output is on Stdout.
	Stdout, Stderr io.Writer
}

// Attach connects the streams to the container (running, or created and
// about to start) and returns when its current run has ended and its
// output is delivered, or when ctx ends (the client detached).
func (r *Containerd) Attach(ctx context.Context, id string, o AttachOptions) error {
	if err := checkID(id); err != nil {
		return err
	}
	cctx := r.ctx(ctx)
	ctr, err := r.client.LoadContainer(cctx, id)
	if err != nil {
		return notFound(id, err)
	}
	labels, err := ctr.Labels(cctx)
	if err != nil {
		return fmt.Errorf("runtime: attach %s: %w", id, err)
	}
	if t, err := ctr.Task(cctx, nil); err == nil {
		if st, err := t.Status(cctx); err == nil && st.Status == containerd.Stopped {
			return nil // the run is over; its output is in the log
		}
	}
	h := r.hub(id)
	a := &attachment{stdout: o.Stdout, stderr: o.Stderr, done: make(chan struct{})}
	h.mu.Lock()
	h.subs[a] = struct{}{}
	stdinW := h.stdinW
	h.mu.Unlock()
	if o.Stdin != nil && labels[labelStdin] == "true" {
		go func() {
			_, err := io.Copy(stdinW, o.Stdin)
			if o.CloseStdin && (err == nil || errors.Is(err, io.EOF)) {
				stdinW.Close()
				// The shim holds the stdin FIFO open too; close its end so
				// the process sees EOF.
				// stdin may end before the task exists (docker run -i with
				// an empty stdin): wait for it, bounded.
				for i := 0; i < 600; i++ {
					if t, err := ctr.Task(cctx, nil); err == nil {
						t.CloseIO(cctx, containerd.WithStdinCloser)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		h.mu.Lock()
		if _, ok := h.subs[a]; ok {
			delete(h.subs, a)
			close(a.done)
		}
		h.mu.Unlock()
		return ctx.Err()
	}
}

// Resize sets the TTY size of the container's task (execID "") or of one
// of its execs.
func (r *Containerd) Resize(ctx context.Context, id, execID string, height, width uint32) error {
	cctx := r.ctx(ctx)
	ctr, err := r.client.LoadContainer(cctx, id)
	if err != nil {
		return notFound(id, err)
	}
	t, err := ctr.Task(cctx, nil)
	if err != nil {
		return fmt.Errorf("runtime: resize %s: %w", id, ErrNotRunning)
	}
	if execID == "" {
		return t.Resize(cctx, width, height)
	}
	p, err := t.LoadProcess(cctx, execID, nil)
	if err != nil {
		return notFound(execID, err)
	}
	return p.Resize(cctx, width, height)
}
