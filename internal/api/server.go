// Package api serves the Docker Engine API over a unix socket, so that the
// vxnet CLI, the real docker CLI and Docker SDK clients can drive the engine.
//
// The handlers decode Docker's request types (github.com/moby/moby/api/types),
// call the engine through the Backend interface and encode Docker's response
// types. Engine errors wrap the classes in internal/model and are mapped to
// HTTP status codes in one place, writeError.
//
// Routes are served with and without the /v1.NN version prefix:
//
//	GET|HEAD /_ping, GET /version, GET /info
//	GET /networks, GET /networks/{id}, POST /networks/create,
//	DELETE /networks/{id}, POST /networks/prune,
//	POST /networks/{id}/connect, POST /networks/{id}/disconnect
//	POST /containers/create, GET /containers/json, GET /containers/{id}/json,
//	POST /containers/{id}/start|stop|wait, DELETE /containers/{id},
//	GET /containers/{id}/logs, POST /containers/{id}/exec
//	POST /exec/{id}/start (hijacked), GET /exec/{id}/json
//	GET /images/json, POST /images/create (pull, or fromSrc=-: docker import),
//	GET /images/{name}/json|history, POST /images/{name}/push|tag,
//	DELETE /images/{name}, POST /images/prune, GET /images/get, POST /images/load
//
// The path prefix /vxnet/ is reserved for vxnet-only endpoints where Docker's
// API has nothing to say; none exist yet (network inspect detail is served
// through Docker's own ?verbose=true, under the extra "VXNet" key).
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vxnet/vxnet/internal/model"
)

// API versions: the version advertised to clients and the oldest request
// shape the handlers accept. Docker 28's CLI speaks 1.50 and negotiates down
// to the lower of its own and ours.
const (
	APIVersion    = "1.51"
	MinAPIVersion = "1.40"
)

// Options configures the server.
type Options struct {
	// Logger receives one debug line per request; nil discards.
	Logger *slog.Logger
	// Version is the daemon's version, reported by /version and /info.
	Version string
}

type server struct {
	b     Backend
	log   *slog.Logger
	ver   string
	execs *execStore
	mux   *http.ServeMux
}

// NewServer returns the Docker API handler for b.
func NewServer(b Backend, opts Options) http.Handler {
	s := &server{
		b:     b,
		log:   opts.Logger,
		ver:   opts.Version,
		execs: newExecStore(),
		mux:   http.NewServeMux(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.ver == "" {
		s.ver = "dev"
	}
	s.routes()
	return s
}

func (s *server) routes() {
	m := s.mux
	m.HandleFunc("GET /_ping", s.ping)
	m.HandleFunc("GET /version", s.version)
	m.HandleFunc("GET /info", s.info)

	m.HandleFunc("GET /networks", s.networkList)
	m.HandleFunc("GET /networks/{$}", s.networkList)
	m.HandleFunc("GET /networks/{id}", s.networkInspect)
	m.HandleFunc("POST /networks/create", s.networkCreate)
	m.HandleFunc("DELETE /networks/{id}", s.networkRemove)
	m.HandleFunc("POST /networks/prune", s.networkPrune)
	m.HandleFunc("POST /networks/{id}/connect", s.networkConnect)
	m.HandleFunc("POST /networks/{id}/disconnect", s.networkDisconnect)

	m.HandleFunc("POST /containers/create", s.containerCreate)
	m.HandleFunc("GET /containers/json", s.containerList)
	m.HandleFunc("GET /containers/{id}/json", s.containerInspect)
	m.HandleFunc("POST /containers/{id}/start", s.containerStart)
	m.HandleFunc("POST /containers/{id}/stop", s.containerStop)
	m.HandleFunc("POST /containers/{id}/wait", s.containerWait)
	m.HandleFunc("POST /containers/{id}/rename", s.containerRename)
	m.HandleFunc("DELETE /containers/{id}", s.containerRemove)
	m.HandleFunc("GET /containers/{id}/logs", s.containerLogs)
	m.HandleFunc("POST /containers/{id}/exec", s.execCreate)
	m.HandleFunc("POST /exec/{id}/start", s.execStart)
	m.HandleFunc("GET /exec/{id}/json", s.execInspect)
	m.HandleFunc("POST /containers/{id}/attach", s.containerAttach)
	m.HandleFunc("POST /containers/{id}/resize", s.containerResize)
	m.HandleFunc("POST /containers/{id}/kill", s.containerKill)
	m.HandleFunc("POST /containers/{id}/restart", s.containerRestart)
	m.HandleFunc("POST /containers/prune", s.containerPrune)
	m.HandleFunc("POST /exec/{id}/resize", s.execResize)
	m.HandleFunc("POST /containers/{id}/pause", s.containerPause)
	m.HandleFunc("POST /containers/{id}/unpause", s.containerUnpause)
	m.HandleFunc("GET /containers/{id}/top", s.containerTop)
	m.HandleFunc("GET /containers/{id}/stats", s.containerStats)
	m.HandleFunc("GET /events", s.events)

	m.HandleFunc("GET /images/json", s.imageList)
	m.HandleFunc("POST /images/create", s.imageCreate)
	m.HandleFunc("POST /images/prune", s.imagePrune)
	m.HandleFunc("POST /auth", s.auth)
	m.HandleFunc("GET /images/get", s.imageSave)
	m.HandleFunc("POST /images/load", s.imageLoad)
	m.HandleFunc("/images/{rest...}", s.imageByName)

	s.nonSwarmRoutes()
	s.volumeRoutes()
	s.archiveRoutes()
	s.vxnetRoutes()
	s.externalRoutes()

	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, apiErr(model.ErrNotFound, "page not found"))
	})
}

var versionPrefix = regexp.MustCompile(`^/v([0-9]+)\.([0-9]+)(/.*)$`)

// ServeHTTP strips the version prefix, checks the version, sets Docker's
// common headers and logs the request.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	h := w.Header()
	h.Set("Api-Version", APIVersion)
	h.Set("Ostype", "linux")
	h.Set("Docker-Experimental", "false")
	h.Set("Server", "vxnet/"+s.ver+" (linux)")

	path := r.URL.Path
	if m := versionPrefix.FindStringSubmatch(path); m != nil {
		v := m[1] + "." + m[2]
		if err := checkVersion(v); err != nil {
			writeError(rec, err)
			s.logRequest(r, rec, start)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = m[3]
		r2.URL.RawPath = ""
		r = r2
	}
	s.mux.ServeHTTP(rec, r)
	s.logRequest(r, rec, start)
}

func (s *server) logRequest(r *http.Request, rec *recorder, start time.Time) {
	s.log.LogAttrs(r.Context(), slog.LevelDebug, "api request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", rec.status),
		slog.Duration("took", time.Since(start)))
}

// checkVersion rejects API versions outside [MinAPIVersion, APIVersion] with
// Docker's wording.
func checkVersion(v string) error {
	if versionLess(APIVersion, v) {
		return apiErr(model.ErrInvalid, "client version %s is too new. Maximum supported API version is %s", v, APIVersion)
	}
	if versionLess(v, MinAPIVersion) {
		return apiErr(model.ErrInvalid, "client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", v, MinAPIVersion)
	}
	return nil
}

// versionLess compares "major.minor" API versions numerically.
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// recorder remembers the status for the request log; Unwrap lets
// http.ResponseController reach Flush and Hijack of the real writer.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wroteHeader = true
	return r.ResponseWriter.Write(p)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// ListenUnix listens on the unix socket at path with mode 0660. A stale
// socket file left by a dead daemon is removed; a socket that still accepts
// connections is an error (another daemon owns it), and so is a file that is
// not a socket.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api: create socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("api: listen on %s: file exists and is not a socket: %w", path, model.ErrConflict)
		}
		d := net.Dialer{Timeout: 500 * time.Millisecond}
		if c, err := d.DialContext(context.Background(), "unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("api: listen on %s: socket is in use by another process: %w", path, model.ErrConflict)
		}
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("api: remove stale socket %s: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("api: chmod socket %s: %w", path, err)
	}
	return l, nil
}
