package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/vxnet/vxnet/internal/model"
)

// Docker's default detach keys: ctrl-p ctrl-q.
var defaultDetachKeys = []byte{16, 17}

// parseDetachKeys parses Docker's detach key list: comma-separated single
// characters and ctrl-<x> (ctrl-a .. ctrl-z, ctrl-@, ctrl-[, ctrl-\,
// ctrl-], ctrl-^, ctrl-_). "" is the default.
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		return defaultDetachKeys, nil
	}
	var out []byte
	for _, k := range strings.Split(s, ",") {
		switch {
		case len(k) == 1:
			out = append(out, k[0])
		case strings.HasPrefix(k, "ctrl-") && len(k) == 6:
			c := k[5]
			switch {
			case c >= 'a' && c <= 'z':
				out = append(out, c-'a'+1)
			case c == '@':
				out = append(out, 0)
			case c >= '[' && c <= '_':
				out = append(out, c-'['+27)
			default:
				return nil, apiErr(model.ErrInvalid, "Invalid detach keys (%s) provided", s)
			}
		default:
			return nil, apiErr(model.ErrInvalid, "Invalid detach keys (%s) provided", s)
		}
	}
	return out, nil
}

// errDetached ends an attach whose client typed the detach keys.
var errDetached = errors.New("read escape sequence")

// detachReader passes stdin through until the detach key sequence is
// read; then it calls detach and returns errDetached. A partial sequence
// followed by something else is passed on as typed.
type detachReader struct {
	r       io.Reader
	keys    []byte
	matched int
	pending []byte
	detach  func()
}

func (d *detachReader) Read(p []byte) (int, error) {
	if len(d.pending) > 0 {
		n := copy(p, d.pending)
		d.pending = d.pending[n:]
		return n, nil
	}
	buf := make([]byte, len(p))
	n, err := d.r.Read(buf)
	out := p[:0]
	for _, b := range buf[:n] {
		if b == d.keys[d.matched] {
			d.matched++
			if d.matched == len(d.keys) {
				d.detach()
				return len(out), errDetached
			}
			continue
		}
		if d.matched > 0 {
			d.pending = append(d.pending, d.keys[:d.matched]...)
			d.matched = 0
		}
		d.pending = append(d.pending, b)
	}
	m := copy(p, d.pending)
	d.pending = d.pending[m:]
	return m, err
}

// flushWriter writes raw (TTY) output to a hijacked connection, flushing
// after every write.
type flushWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}

// hijack takes over the connection and answers as dockerd does: "101
// UPGRADED" when the client asked for an upgrade, else "200 OK", with the
// raw stream content type for a TTY and the multiplexed one without.
func hijack(w http.ResponseWriter, r *http.Request, tty bool) (net.Conn, *bufio.ReadWriter, error) {
	upgrade := strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") && r.Header.Get("Upgrade") != ""
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("api: hijack connection: %w", err)
	}
	ctype := "application/vnd.docker.multiplexed-stream"
	if tty {
		ctype = "application/vnd.docker.raw-stream"
	}
	if upgrade {
		fmt.Fprintf(brw, "HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n", ctype)
	} else {
		fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n", ctype)
	}
	fmt.Fprintf(brw, "Api-Version: %s\r\nOstype: linux\r\n\r\n", APIVersion)
	if err := brw.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, brw, nil
}

// outputs returns the writers of a hijacked stream: raw for a TTY (all on
// stdout), multiplexed otherwise; a stream not asked for is dropped.
func outputs(brw *bufio.ReadWriter, tty, stdout, stderr bool) (io.Writer, io.Writer) {
	var outW, errW io.Writer
	if tty {
		fw := &flushWriter{w: brw.Writer}
		outW, errW = fw, fw
	} else {
		mux := newStreamMux(brw.Writer, brw.Writer.Flush)
		outW, errW = mux.stream(streamStdout), mux.stream(streamStderr)
	}
	if !stdout {
		outW = discard
	}
	if !stderr {
		errW = discard
	}
	return outW, errW
}

// containerAttach is POST /containers/{id}/attach: with stream=1 the
// connection is hijacked and carries the container's output (and the
// client's stdin with stdin=1) until its run ends or the client detaches;
// logs=1 first replays the log.
func (s *server) containerAttach(w http.ResponseWriter, r *http.Request) {
	st, ok := s.b.(Streamer)
	if !ok {
		writeError(w, apiErr(model.ErrInvalid, "vxnet cannot attach to containers with this backend"))
		return
	}
	ctx := r.Context()
	v, err := s.b.InspectContainer(ctx, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	c := v.Container
	if c.State != model.StateRunning && c.State != model.StateCreated && boolParam(r, "stream") {
		writeError(w, apiErr(model.ErrConflict, "You cannot attach to a stopped container, start it first"))
		return
	}
	if c.State == model.StateRunning && c.Paused {
		writeError(w, apiErr(model.ErrConflict, "container %s is paused, unpause the container before attach", r.PathValue("id")))
		return
	}
	keys, err := parseDetachKeys(r.URL.Query().Get("detachKeys"))
	if err != nil {
		writeError(w, err)
		return
	}
	conn, brw, err := hijack(w, r, c.Tty)
	if err != nil {
		writeError(w, err)
		return
	}
	defer conn.Close()
	outW, errW := outputs(brw, c.Tty, boolParam(r, "stdout"), boolParam(r, "stderr"))
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	if boolParam(r, "logs") {
		if err := s.b.Logs(ctx, c.ID, outW, errW, false); err != nil {
			s.log.DebugContext(ctx, "api: attach logs", "container", c.ID, "err", err)
		}
	}
	if !boolParam(r, "stream") {
		closeWrite(conn)
		return
	}
	// As dockerd: the end of the client's stdin closes the container's
	// (StdinOnce) only without a TTY; with one it ends the attach and the
	// container runs on.
	as := AttachStreams{Stdout: outW, Stderr: errW, CloseStdin: c.StdinOnce && !c.Tty}
	if boolParam(r, "stdin") && c.OpenStdin {
		var stdin io.Reader = &detachReader{r: brw.Reader, keys: keys, detach: cancel}
		if c.Tty {
			stdin = &endReader{r: stdin, end: cancel}
		}
		as.Stdin = stdin
	} else {
		// Nothing to read, but a connection the client drops ends the
		// attach (its half-close after stdin, EOF, does not).
		go func() {
			if _, err := io.Copy(io.Discard, brw.Reader); err != nil {
				cancel()
			}
		}()
	}
	if err := st.AttachContainer(ctx, c.ID, as); err != nil && !errors.Is(err, context.Canceled) {
		s.log.DebugContext(ctx, "api: attach ended", "container", c.ID, "err", err)
	}
	_ = brw.Flush()
	closeWrite(conn)
}

// resizeRequest returns the backend's Streamer (refusing a backend that
// has none) and the h and w of a resize request.
func (s *server) resizeRequest(r *http.Request) (Streamer, uint32, uint32, error) {
	st, ok := s.b.(Streamer)
	if !ok {
		return nil, 0, 0, apiErr(model.ErrInvalid, "vxnet cannot resize TTYs with this backend")
	}
	h, err1 := strconv.ParseUint(r.URL.Query().Get("h"), 10, 16)
	wd, err2 := strconv.ParseUint(r.URL.Query().Get("w"), 10, 16)
	if err1 != nil || err2 != nil {
		return nil, 0, 0, apiErr(model.ErrInvalid, "invalid resize: h and w must be numbers")
	}
	return st, uint32(h), uint32(wd), nil
}

// containerResize is POST /containers/{id}/resize?h=&w=.
func (s *server) containerResize(w http.ResponseWriter, r *http.Request) {
	st, h, wd, err := s.resizeRequest(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := st.ResizeTTY(r.Context(), r.PathValue("id"), "", h, wd); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// execResize is POST /exec/{id}/resize?h=&w=.
func (s *server) execResize(w http.ResponseWriter, r *http.Request) {
	st, h, wd, err := s.resizeRequest(r)
	if err != nil {
		writeError(w, err)
		return
	}
	id := r.PathValue("id")
	e, ok := s.execs.snapshot(id)
	if !ok {
		writeError(w, apiErr(model.ErrNotFound, "No such exec instance: %s", id))
		return
	}
	if !e.running {
		writeError(w, apiErr(model.ErrConflict, "Exec %s is not running, so it can not be resized.", id))
		return
	}
	if err := st.ResizeTTY(r.Context(), e.containerID, e.id, h, wd); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// endReader calls end when r ends.
type endReader struct {
	r   io.Reader
	end func()
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.end()
	}
	return n, err
}
