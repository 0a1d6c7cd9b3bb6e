package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/moby/moby/api/types/container"

	"github.com/vxnet/vxnet/internal/model"
)

// execConfig is one exec instance: created by POST /containers/{id}/exec,
// run once by POST /exec/{id}/start, inspected by GET /exec/{id}/json.
type execConfig struct {
	id          string
	containerID string
	cmd, env    []string
	stdout      bool
	stderr      bool
	stdin, tty  bool
	consoleSize [2]uint
	detachKeys  string
	// user, workingDir and privileged are exec -u, -w and --privileged
	// (the container's when unset).
	user, workingDir string
	privileged       bool
	started          bool
	running          bool
	exitCode         *int
}

// maxExecs bounds the exec instances kept in memory; the oldest finished
// ones are dropped first.
const maxExecs = 1024

// execStore keeps exec instances in memory, like dockerd does (they do not
// survive a daemon restart).
type execStore struct {
	mu    sync.Mutex
	byID  map[string]*execConfig
	order []string
}

func newExecStore() *execStore { return &execStore{byID: map[string]*execConfig{}} }

func (st *execStore) add(e *execConfig) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.byID[e.id] = e
	st.order = append(st.order, e.id)
	for len(st.order) > maxExecs {
		idx := slices.IndexFunc(st.order, func(id string) bool { return st.byID[id].exitCode != nil })
		if idx < 0 {
			break
		}
		delete(st.byID, st.order[idx])
		st.order = slices.Delete(st.order, idx, idx+1)
	}
}

// snapshot returns a copy of the exec instance for reading.
func (st *execStore) snapshot(id string) (execConfig, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	e, ok := st.byID[id]
	if !ok {
		return execConfig{}, false
	}
	return *e, true
}

// begin marks the instance started; an instance runs only once.
func (st *execStore) begin(id string) (execConfig, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	e, ok := st.byID[id]
	if !ok {
		return execConfig{}, apiErr(model.ErrNotFound, "No such exec instance: %s", id)
	}
	if e.started {
		if e.running {
			return execConfig{}, apiErr(model.ErrConflict, "exec instance %s is already running", id)
		}
		return execConfig{}, apiErr(model.ErrConflict, "exec instance %s has already run", id)
	}
	e.started, e.running = true, true
	return *e, nil
}

func (st *execStore) finish(id string, code int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if e, ok := st.byID[id]; ok {
		e.running = false
		e.exitCode = &code
	}
}

func newExecID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *server) execCreate(w http.ResponseWriter, r *http.Request) {
	var req container.ExecCreateRequest
	if err := decodeJSON(r, &req, false); err != nil {
		writeError(w, err)
		return
	}
	if len(req.Cmd) == 0 {
		writeError(w, apiErr(model.ErrInvalid, "No exec command specified"))
		return
	}
	if _, ok := s.b.(Streamer); !ok && (req.Tty || req.AttachStdin) {
		writeError(w, apiErr(model.ErrInvalid, "vxnet exec supports neither a TTY nor stdin with this backend"))
		return
	}
	if _, err := parseDetachKeys(req.DetachKeys); err != nil {
		writeError(w, err)
		return
	}
	// A user, working directory or privilege of the exec's own needs the
	// streaming backend (containerd); without it they are refused, not
	// ignored.
	if _, ok := s.b.(Streamer); !ok {
		for _, f := range []struct {
			set  bool
			name string
		}{{req.User != "", "User"}, {req.WorkingDir != "", "WorkingDir"}, {req.Privileged, "Privileged"}} {
			if f.set {
				writeError(w, apiErr(model.ErrInvalid, "vxnet does not support ExecConfig.%s with this backend", f.name))
				return
			}
		}
	}
	if req.WorkingDir != "" && !strings.HasPrefix(req.WorkingDir, "/") {
		writeError(w, apiErr(model.ErrInvalid, "the working directory '%s' is invalid, it needs to be an absolute path", req.WorkingDir))
		return
	}
	v, err := s.b.InspectContainer(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if v.Container.State != model.StateRunning {
		writeError(w, apiErr(model.ErrConflict, "container %s is not running", v.Container.ID))
		return
	}
	if v.Container.Paused {
		writeError(w, apiErr(model.ErrConflict, "Container %s is paused, unpause the container before exec", v.Container.ID))
		return
	}
	e := &execConfig{
		id:          newExecID(),
		containerID: v.Container.ID,
		cmd:         slices.Clone(req.Cmd),
		env:         slices.Clone(req.Env),
		stdout:      req.AttachStdout,
		stderr:      req.AttachStderr,
		stdin:       req.AttachStdin,
		tty:         req.Tty,
		detachKeys:  req.DetachKeys,
		user:        req.User,
		workingDir:  req.WorkingDir,
		privileged:  req.Privileged,
	}
	if req.ConsoleSize != nil {
		e.consoleSize = *req.ConsoleSize
	}
	s.execs.add(e)
	writeJSON(w, http.StatusCreated, container.ExecCreateResponse{ID: e.id})
}

// execStart runs the exec instance. Unless Detach, it hijacks the connection
// as dockerd does: "101 UPGRADED" when the client asked for an upgrade, else
// "200 OK", then the command's output as a multiplexed stream until it ends,
// then the connection is closed. The exit code is read with exec inspect.
func (s *server) execStart(w http.ResponseWriter, r *http.Request) {
	var req container.ExecStartRequest
	if err := decodeJSON(r, &req, true); err != nil {
		writeError(w, err)
		return
	}
	id := r.PathValue("id")
	if e, ok := s.execs.snapshot(id); ok && (e.tty || e.stdin || req.Tty || e.user != "" || e.workingDir != "" || e.privileged) {
		s.execStartStream(w, r, req)
		return
	} else if !ok {
		writeError(w, apiErr(model.ErrNotFound, "No such exec instance: %s", id))
		return
	}
	if req.Detach {
		e, err := s.execs.begin(id)
		if err != nil {
			writeError(w, err)
			return
		}
		go s.runExec(context.Background(), e, discard, discard)
		w.WriteHeader(http.StatusOK)
		return
	}

	upgrade := strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") &&
		r.Header.Get("Upgrade") != ""
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, fmt.Errorf("api: hijack connection: %w", err))
		return
	}
	defer conn.Close()
	e, err := s.execs.begin(id)
	if err != nil {
		// Not hijacked from the client's view yet: answer in plain HTTP.
		fmt.Fprintf(brw, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nApi-Version: %s\r\nConnection: close\r\n\r\n{\"message\":%q}\n",
			statusOf(err), http.StatusText(statusOf(err)), APIVersion, err.Error())
		_ = brw.Flush()
		return
	}
	if upgrade {
		fmt.Fprint(brw, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n")
	} else {
		fmt.Fprint(brw, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n")
	}
	fmt.Fprintf(brw, "Api-Version: %s\r\nOstype: linux\r\n\r\n", APIVersion)
	if err := brw.Flush(); err != nil {
		s.execs.finish(id, -1)
		return
	}
	mux := newStreamMux(brw.Writer, brw.Writer.Flush)
	outW, errW := mux.stream(streamStdout), mux.stream(streamStderr)
	if !e.stdout {
		outW = discard
	}
	if !e.stderr {
		errW = discard
	}
	s.runExec(context.Background(), e, outW, errW)
	_ = brw.Flush()
	closeWrite(conn)
}

// runExec runs the command and records its exit code. A command that could
// not be run reports its error on the stdout stream, ended by "\r\n", and
// exits 126 (or the runtime's 127 for a missing command), as dockerd's does.
func (s *server) runExec(ctx context.Context, e execConfig, stdout, stderr interface{ Write([]byte) (int, error) }) {
	code, err := s.b.Exec(ctx, e.containerID, e.cmd, e.env, stdout, stderr)
	if err != nil {
		s.log.DebugContext(ctx, "api: exec failed", "exec", e.id, "container", e.containerID, "err", err)
		fmt.Fprintf(stdout, "%s\r\n", err.Error())
		if code <= 0 {
			code = 126
		}
	}
	s.execs.finish(e.id, code)
}

func closeWrite(c interface{ Close() error }) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

func (s *server) execInspect(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e, ok := s.execs.snapshot(id)
	if !ok {
		writeError(w, apiErr(model.ErrNotFound, "No such exec instance: %s", id))
		return
	}
	out := container.ExecInspectResponse{
		ID:          e.id,
		Running:     e.running,
		ExitCode:    e.exitCode,
		OpenStdout:  e.stdout,
		OpenStderr:  e.stderr,
		ContainerID: e.containerID,
		ProcessConfig: &container.ExecProcessConfig{
			Entrypoint: e.cmd[0],
			Arguments:  slices.Clone(e.cmd[1:]),
		},
	}
	writeJSON(w, http.StatusOK, out)
}

// execStartStream runs an exec with a TTY or stdin (Backend Streamer): the
// connection is hijacked, the client's input feeds the process's stdin
// (until the detach keys), its output comes back raw with a TTY and
// multiplexed without.
func (s *server) execStartStream(w http.ResponseWriter, r *http.Request, req container.ExecStartRequest) {
	st, ok := s.b.(Streamer)
	if !ok {
		writeError(w, apiErr(model.ErrInvalid, "vxnet exec supports neither a TTY nor stdin with this backend"))
		return
	}
	id := r.PathValue("id")
	snap, _ := s.execs.snapshot(id)
	tty := snap.tty || req.Tty
	if req.Detach {
		e, err := s.execs.begin(id)
		if err != nil {
			writeError(w, err)
			return
		}
		go func() {
			code, err := st.ExecStream(context.Background(), e.containerID, ExecStreamRequest{ID: e.id, Cmd: e.cmd, Env: e.env, Tty: tty,
				User: e.user, WorkingDir: e.workingDir, Privileged: e.privileged})
			if err != nil && code <= 0 {
				code = 126
			}
			s.execs.finish(e.id, code)
		}()
		w.WriteHeader(http.StatusOK)
		return
	}
	e, err := s.execs.begin(id)
	if err != nil {
		writeError(w, err)
		return
	}
	conn, brw, err := hijack(w, r, tty)
	if err != nil {
		s.execs.finish(id, -1)
		return
	}
	defer conn.Close()
	outW, errW := outputs(brw, tty, e.stdout, e.stderr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sreq := ExecStreamRequest{ID: e.id, Cmd: e.cmd, Env: e.env, Tty: tty, ConsoleSize: e.consoleSize, Stdout: outW, Stderr: errW,
		User: e.user, WorkingDir: e.workingDir, Privileged: e.privileged}
	if req.ConsoleSize != nil {
		sreq.ConsoleSize = *req.ConsoleSize
	}
	if e.stdin {
		keys, _ := parseDetachKeys(e.detachKeys)
		// Detaching ends the client's connection; the process runs on.
		sreq.Stdin = &detachReader{r: brw.Reader, keys: keys, detach: func() { conn.Close() }}
	}
	code, err := st.ExecStream(ctx, e.containerID, sreq)
	if err != nil && ctx.Err() == nil {
		s.log.DebugContext(ctx, "api: exec failed", "exec", e.id, "container", e.containerID, "err", err)
		fmt.Fprintf(errW, "%s\n", err.Error())
		if code <= 0 {
			code = 126
		}
	}
	s.execs.finish(e.id, code)
	_ = brw.Flush()
	closeWrite(conn)
}
