package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/vxnet/vxnet/internal/model"
)

// ArchiveService is an optional Backend ability, found by type assertion:
// docker cp's archive endpoints. Without it they are refused.
type ArchiveService interface {
	StatContainerPath(ctx context.Context, ref, path string) (PathStat, error)
	// ArchiveContainerPath stats path, calls started with the stat (before
	// any error about the tar itself) and writes the tar to the writer
	// started returns.
	ArchiveContainerPath(ctx context.Context, ref, path string, started func(PathStat) io.Writer) error
	ExtractToContainer(ctx context.Context, ref, dir string, tar io.Reader, noOverwriteDirNonDir, copyUIDGID bool) error
}

// PathStat is a container path's stat.
type PathStat struct {
	Name       string
	Size       int64
	Mode       os.FileMode
	Mtime      time.Time
	LinkTarget string
}

func (s *server) archiveRoutes() {
	m := s.mux
	m.HandleFunc("HEAD /containers/{id}/archive", s.archiveHead)
	m.HandleFunc("GET /containers/{id}/archive", s.archiveGet)
	m.HandleFunc("PUT /containers/{id}/archive", s.archivePut)
}

func (s *server) archiveService(w http.ResponseWriter, r *http.Request) (ArchiveService, string, bool) {
	as, ok := s.b.(ArchiveService)
	if !ok {
		writeError(w, apiErr(model.ErrInvalid, "this vxnet daemon cannot copy files from or to containers"))
		return nil, "", false
	}
	p := r.URL.Query().Get("path")
	if p == "" {
		writeError(w, apiErr(model.ErrInvalid, "Path cannot be empty"))
		return nil, "", false
	}
	return as, p, true
}

// setStat sets Docker's X-Docker-Container-Path-Stat header.
func setStat(w http.ResponseWriter, st PathStat) {
	b, _ := json.Marshal(container.PathStat{Name: st.Name, Size: st.Size, Mode: st.Mode, Mtime: st.Mtime, LinkTarget: st.LinkTarget})
	w.Header().Set("X-Docker-Container-Path-Stat", base64.StdEncoding.EncodeToString(b))
}

func (s *server) archiveHead(w http.ResponseWriter, r *http.Request) {
	as, p, ok := s.archiveService(w, r)
	if !ok {
		return
	}
	st, err := as.StatContainerPath(r.Context(), r.PathValue("id"), p)
	if err != nil {
		writeError(w, err)
		return
	}
	setStat(w, st)
	w.WriteHeader(http.StatusOK)
}

func (s *server) archiveGet(w http.ResponseWriter, r *http.Request) {
	as, p, ok := s.archiveService(w, r)
	if !ok {
		return
	}
	started := false
	err := as.ArchiveContainerPath(r.Context(), r.PathValue("id"), p, func(st PathStat) io.Writer {
		setStat(w, st)
		w.Header().Set("Content-Type", "application/x-tar")
		w.WriteHeader(http.StatusOK)
		started = true
		return w
	})
	if err != nil {
		if !started {
			writeError(w, err)
			return
		}
		s.log.Warn("container archive failed mid-stream", "err", err)
		panic(http.ErrAbortHandler)
	}
}

func (s *server) archivePut(w http.ResponseWriter, r *http.Request) {
	as, p, ok := s.archiveService(w, r)
	if !ok {
		return
	}
	err := as.ExtractToContainer(r.Context(), r.PathValue("id"), p, r.Body,
		boolParam(r, "noOverwriteDirNonDir"), boolParam(r, "copyUIDGID"))
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}
