package enginetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/model"
)

// Runtime is an in-memory engine.Runtime (with the stream and signal
// abilities) whose processes are scripted by their command:
//
//	true              exits 0 at once
//	false             exits 1 at once
//	exit N            exits N at once
//	echo ARGS...      writes ARGS to stdout, exits 0
//	anything else     runs until stopped or killed (137 when stopped)
//
// Exec runs ExecHook when set, otherwise: "echo ARGS" writes ARGS to
// stdout and exits 0; "fail N" writes "out" to stdout and "err" to stderr
// and exits N; "exit N" exits N; anything else is not found (127).
type Runtime struct {
	mu    sync.Mutex
	procs map[string]*proc
	pid   int

	// ExecHook, when set, runs every exec instead of the script above.
	ExecHook func(cmd, env []string, stdout, stderr io.Writer) (int, error)

	// deleteGate holds every Delete until it closes (a shim that takes
	// its time); deleting counts the deletes held.
	deleteGate chan struct{}
	deleting   int
	// waitGate holds the next Wait that sees an exit until it closes
	// (the runtime draining that task's output); gatedWaits counts the
	// Waits it held. waiting counts the Waits on a running process.
	waitGate   chan struct{}
	gatedWaits int
	waiting    int
	// stateFails is how many of the next State calls fail (a runtime
	// that does not answer).
	stateFails int
}

var (
	_ engine.Runtime       = (*Runtime)(nil)
	_ engine.StreamRuntime = (*Runtime)(nil)
	_ engine.SignalRuntime = (*Runtime)(nil)
)

type proc struct {
	spec     engine.ContainerSpec
	running  bool
	runs     int // starts so far
	code     int
	finished time.Time
	// exited is closed when the current run ends; started is closed at
	// the next start (then replaced).
	exited, started chan struct{}
	out             []chunk
}

type chunk struct {
	stderr bool
	data   []byte
	at     time.Time
	run    int
}

// NewRuntime returns an empty Runtime.
func NewRuntime() *Runtime { return &Runtime{procs: map[string]*proc{}, pid: 1000} }

func (r *Runtime) get(id string) (*proc, error) {
	p, ok := r.procs[id]
	if !ok {
		return nil, fmt.Errorf("fake runtime: container %s: %w", id, model.ErrNotFound)
	}
	return p, nil
}

// Create implements engine.Runtime.
func (r *Runtime) Create(ctx context.Context, spec engine.ContainerSpec) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.procs[spec.ID]; ok {
		return fmt.Errorf("fake runtime: container %s exists: %w", spec.ID, model.ErrConflict)
	}
	r.procs[spec.ID] = &proc{spec: spec, started: make(chan struct{})}
	return nil
}

// Start implements engine.Runtime: the command's script decides whether
// the process exits at once.
func (r *Runtime) Start(ctx context.Context, id string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := r.get(id)
	if err != nil {
		return 0, err
	}
	if p.running {
		return 0, fmt.Errorf("fake runtime: container %s is running: %w", id, model.ErrConflict)
	}
	r.pid++
	p.running, p.code, p.finished = true, 0, time.Time{}
	p.runs++
	p.exited = make(chan struct{})
	close(p.started)
	p.started = make(chan struct{})
	args := p.spec.Args
	if len(args) == 0 {
		args = []string{"sh"}
	}
	switch args[0] {
	case "true":
		r.exitLocked(p, 0)
	case "false":
		r.exitLocked(p, 1)
	case "exit":
		code := 0
		if len(args) > 1 {
			code, _ = strconv.Atoi(args[1])
		}
		r.exitLocked(p, code)
	case "echo":
		p.out = append(p.out, chunk{data: []byte(strings.Join(args[1:], " ") + "\n"), at: time.Now(), run: p.runs})
		r.exitLocked(p, 0)
	}
	return r.pid, nil
}

func (r *Runtime) exitLocked(p *proc, code int) {
	if !p.running {
		return
	}
	p.running, p.code, p.finished = false, code, time.Now()
	close(p.exited)
}

// Stop implements engine.Runtime: a running process ends with 137.
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.procs[id]; ok {
		r.exitLocked(p, 137)
	}
	return nil
}

// Kill implements engine.SignalRuntime: signals whose default action is to
// be ignored do nothing, the others end the process with 128+signal.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := r.get(id)
	if err != nil {
		return err
	}
	if !p.running {
		return fmt.Errorf("fake runtime: container %s is not running: %w", id, model.ErrConflict)
	}
	switch sig {
	case syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGURG, syscall.SIGWINCH:
		return nil
	}
	r.exitLocked(p, 128+int(sig))
	return nil
}

// Delete implements engine.Runtime; deleting what does not exist is not an
// error.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gate := r.deleteGate; gate != nil {
		r.deleting++
		r.mu.Unlock()
		<-gate
		r.mu.Lock()
		r.deleting--
	}
	if p, ok := r.procs[id]; ok {
		r.exitLocked(p, 137)
		delete(r.procs, id)
	}
	return nil
}

// State implements engine.Runtime.
func (r *Runtime) State(ctx context.Context, id string) (engine.RuntimeState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stateFails > 0 {
		r.stateFails--
		return engine.RuntimeState{}, fmt.Errorf("fake runtime: state %s: %w", id, model.ErrUnavailable)
	}
	p, err := r.get(id)
	if err != nil {
		return engine.RuntimeState{}, err
	}
	switch {
	case p.running:
		return engine.RuntimeState{Status: "running", Pid: r.pid}, nil
	case p.runs == 0:
		return engine.RuntimeState{Status: "created"}, nil
	}
	return engine.RuntimeState{Status: "stopped", ExitCode: p.code, FinishedAt: p.finished}, nil
}

// Wait implements engine.Runtime: it returns when the current run ends
// (at once when none is running) with its exit code.
func (r *Runtime) Wait(ctx context.Context, id string) (int, error) {
	r.mu.Lock()
	p, ok := r.procs[id]
	if !ok {
		r.mu.Unlock()
		return 0, nil
	}
	exited := p.exited
	if !p.running {
		code := p.code
		r.mu.Unlock()
		return code, nil
	}
	r.waiting++
	r.mu.Unlock()
	select {
	case <-exited:
	case <-ctx.Done():
		r.mu.Lock()
		r.waiting--
		r.mu.Unlock()
		return 0, ctx.Err()
	}
	r.mu.Lock()
	r.waiting--
	code := p.code
	gate := r.waitGate
	if gate != nil {
		r.waitGate = nil
		r.gatedWaits++
	}
	r.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return code, nil
}

// GateDeletes holds every Delete until gate closes (nil: no gate).
func (r *Runtime) GateDeletes(gate chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleteGate = gate
}

// DeletesHeld counts the deletes waiting on the gate.
func (r *Runtime) DeletesHeld() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.deleting
}

// GateNextWait holds the next Wait that sees its process exit until gate
// closes.
func (r *Runtime) GateNextWait(gate chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waitGate = gate
}

// GatedWaits counts the Waits GateNextWait held; Waiting counts the Waits
// on a running process now.
func (r *Runtime) GatedWaits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gatedWaits
}

func (r *Runtime) Waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waiting
}

// FailStates makes the next n State calls fail as a runtime that does not
// answer would (0: none).
func (r *Runtime) FailStates(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stateFails = n
}

// Exit ends container id's running process with code, as if it exited by
// itself.
func (r *Runtime) Exit(id string, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.procs[id]; ok {
		r.exitLocked(p, code)
	}
}

// Exec implements engine.Runtime.
func (r *Runtime) Exec(ctx context.Context, id string, args, env []string, stdout, stderr io.Writer) (int, error) {
	r.mu.Lock()
	hook := r.ExecHook
	p, err := r.get(id)
	if err == nil && !p.running {
		err = fmt.Errorf("fake runtime: container %s is not running: %w", id, model.ErrConflict)
	}
	r.mu.Unlock()
	if err != nil {
		return -1, err
	}
	if hook != nil {
		return hook(args, env, stdout, stderr)
	}
	switch args[0] {
	case "echo":
		_, err := io.WriteString(stdout, strings.Join(args[1:], " ")+"\n")
		return 0, err
	case "fail", "exit":
		code := 1
		if len(args) > 1 {
			code, _ = strconv.Atoi(args[1])
		}
		if args[0] == "fail" {
			io.WriteString(stdout, "out\n")
			io.WriteString(stderr, "err\n")
		}
		return code, nil
	}
	return 127, fmt.Errorf("exec: %q: executable file not found in $PATH: %w", args[0], model.ErrNotFound)
}

// ExecStream implements engine.StreamRuntime: the same script, with the
// request's streams (a TTY changes nothing here).
func (r *Runtime) ExecStream(ctx context.Context, id string, req api.ExecStreamRequest) (int, error) {
	stdout, stderr := req.Stdout, req.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	return r.Exec(ctx, id, req.Cmd, req.Env, stdout, stderr)
}

// Resize implements engine.StreamRuntime.
func (r *Runtime) Resize(ctx context.Context, id, execID string, height, width uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.get(id)
	return err
}

// Attach implements engine.StreamRuntime: it waits for the current run
// (or the next one, when none is running) to end, then writes that run's
// output.
func (r *Runtime) Attach(ctx context.Context, id string, s api.AttachStreams) error {
	r.mu.Lock()
	p, err := r.get(id)
	if err != nil {
		r.mu.Unlock()
		return err
	}
	run, exited, started := p.runs, p.exited, p.started
	running := p.running
	r.mu.Unlock()
	if !running {
		select {
		case <-started:
		case <-ctx.Done():
			return ctx.Err()
		}
		r.mu.Lock()
		run, exited = p.runs, p.exited
		r.mu.Unlock()
	}
	select {
	case <-exited:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.mu.Lock()
	var out []chunk
	for _, c := range p.out {
		if c.run == run {
			out = append(out, c)
		}
	}
	r.mu.Unlock()
	return write(out, s.Stdout, s.Stderr, false)
}

// Logs implements engine.Runtime.
func (r *Runtime) Logs(ctx context.Context, id string, stdout, stderr io.Writer, follow bool) error {
	return r.LogsWith(ctx, id, stdout, stderr, api.LogOptions{Follow: follow, Tail: -1})
}

// LogsWith implements engine.SignalRuntime: the output so far (after the
// current run has ended when following), filtered by time and tail.
func (r *Runtime) LogsWith(ctx context.Context, id string, stdout, stderr io.Writer, o api.LogOptions) error {
	r.mu.Lock()
	p, err := r.get(id)
	if err != nil {
		r.mu.Unlock()
		return err
	}
	running, exited := p.running, p.exited
	r.mu.Unlock()
	if o.Follow && running {
		select {
		case <-exited:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	var out []chunk
	for _, c := range p.out {
		if (o.Since.IsZero() || !c.at.Before(o.Since)) && (o.Until.IsZero() || c.at.Before(o.Until)) {
			out = append(out, c)
		}
	}
	r.mu.Unlock()
	if o.Tail >= 0 && o.Tail < len(out) {
		out = out[len(out)-o.Tail:]
	}
	return write(out, stdout, stderr, o.Timestamps)
}

func write(out []chunk, stdout, stderr io.Writer, stamps bool) error {
	for _, c := range out {
		w := stdout
		if c.stderr {
			w = stderr
		}
		if w == nil {
			continue
		}
		data := c.data
		if stamps {
			data = append([]byte(c.at.UTC().Format(time.RFC3339Nano)+" "), data...)
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
	return nil
}

// List implements engine.Runtime.
func (r *Runtime) List(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id := range r.procs {
		ids = append(ids, id)
	}
	return ids, nil
}

// AddOutput appends to a container's output as if its current run (or its
// last one) printed s; each line is one log entry.
func (r *Runtime) AddOutput(id string, stderr bool, s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := r.get(id)
	if err != nil {
		return err
	}
	for _, line := range bytes.SplitAfter([]byte(s), []byte("\n")) {
		if len(line) > 0 {
			p.out = append(p.out, chunk{stderr: stderr, data: line, at: time.Now(), run: p.runs})
		}
	}
	return nil
}

// Spec returns the spec a container was created with.
func (r *Runtime) Spec(id string) (engine.ContainerSpec, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.procs[id]
	if !ok {
		return engine.ContainerSpec{}, false
	}
	return p.spec, true
}
