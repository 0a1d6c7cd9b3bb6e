package api

import (
	"context"
	"net/http"
	"time"

	"github.com/moby/moby/api/types/volume"

	"github.com/vxnet/vxnet/internal/model"
)

// VolumeService is an optional Backend ability, found by type assertion:
// local volumes (/volumes) and rm -v. Without it those requests are
// refused.
type VolumeService interface {
	CreateVolume(ctx context.Context, name, driver string, opts, labels map[string]string) (VolumeInfo, error)
	InspectVolume(ctx context.Context, name string) (VolumeInfo, error)
	ListVolumes(ctx context.Context) ([]VolumeInfo, error)
	// RemoveVolume refuses a volume in use (ErrConflict); force makes a
	// missing volume a success.
	RemoveVolume(ctx context.Context, name string, force bool) error
	// PruneVolumes removes unused anonymous volumes (all unused with all)
	// and returns their names and the bytes freed.
	PruneVolumes(ctx context.Context, all bool) ([]string, int64, error)
	// RemoveContainerVolumes is container removal with rm -v.
	RemoveContainerVolumes(ctx context.Context, ref string, force bool) error
}

// VolumeInfo is one volume.
type VolumeInfo struct {
	Name, Mountpoint string
	CreatedAt        time.Time
	Labels           map[string]string
	Anonymous        bool
	// RefCount is the number of containers using it.
	RefCount int
}

func (s *server) volumeRoutes() {
	m := s.mux
	m.HandleFunc("POST /volumes/create", s.volumeCreate)
	m.HandleFunc("GET /volumes", s.volumeList)
	m.HandleFunc("GET /volumes/{name}", s.volumeInspect)
	m.HandleFunc("DELETE /volumes/{name}", s.volumeRemove)
	m.HandleFunc("POST /volumes/prune", s.volumePrune)
}

func (s *server) volumeService(w http.ResponseWriter) (VolumeService, bool) {
	vs, ok := s.b.(VolumeService)
	if !ok {
		writeError(w, apiErr(model.ErrInvalid, "this vxnet daemon has no volumes"))
	}
	return vs, ok
}

func volumeResponse(v VolumeInfo) volume.Volume {
	labels := v.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return volume.Volume{
		Name: v.Name, Driver: "local", Mountpoint: v.Mountpoint, CreatedAt: v.CreatedAt.Format(time.RFC3339),
		Labels: labels, Scope: "local", Options: map[string]string{},
	}
}

func (s *server) volumeCreate(w http.ResponseWriter, r *http.Request) {
	vs, ok := s.volumeService(w)
	if !ok {
		return
	}
	var req volume.CreateRequest
	if err := decodeJSON(r, &req, false); err != nil {
		writeError(w, err)
		return
	}
	if req.ClusterVolumeSpec != nil {
		writeError(w, apiErr(model.ErrInvalid, "vxnet does not support cluster volumes"))
		return
	}
	v, err := vs.CreateVolume(r.Context(), req.Name, req.Driver, req.DriverOpts, req.Labels)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, volumeResponse(v))
}

func (s *server) volumeList(w http.ResponseWriter, r *http.Request) {
	vs, ok := s.volumeService(w)
	if !ok {
		return
	}
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = f.supported("volume", "dangling", "name")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	var dangling *bool
	if _, ok := f["dangling"]; ok {
		d := f.is("dangling", "true", "1")
		dangling = &d
	}
	var names []string
	for n := range f["name"] {
		names = append(names, n)
	}
	list, err := vs.ListVolumes(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	out := volume.ListResponse{Volumes: []volume.Volume{}, Warnings: []string{}}
	for _, v := range list {
		if dangling != nil && *dangling != (v.RefCount == 0) {
			continue
		}
		if len(names) > 0 && !containsSub(v.Name, names) {
			continue
		}
		out.Volumes = append(out.Volumes, volumeResponse(v))
	}
	writeJSON(w, http.StatusOK, out)
}

// containsSub: Docker's name filter matches substrings.
func containsSub(name string, subs []string) bool {
	for _, s := range subs {
		if len(s) <= len(name) {
			for i := 0; i+len(s) <= len(name); i++ {
				if name[i:i+len(s)] == s {
					return true
				}
			}
		}
	}
	return false
}

func (s *server) volumeInspect(w http.ResponseWriter, r *http.Request) {
	vs, ok := s.volumeService(w)
	if !ok {
		return
	}
	v, err := vs.InspectVolume(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, volumeResponse(v))
}

func (s *server) volumeRemove(w http.ResponseWriter, r *http.Request) {
	vs, ok := s.volumeService(w)
	if !ok {
		return
	}
	if err := vs.RemoveVolume(r.Context(), r.PathValue("name"), boolParam(r, "force")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) volumePrune(w http.ResponseWriter, r *http.Request) {
	vs, ok := s.volumeService(w)
	if !ok {
		return
	}
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = f.supported("volume prune", "all")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	all := f.is("all", "true", "1")
	gone, freed, err := vs.PruneVolumes(r.Context(), all)
	if err != nil {
		writeError(w, err)
		return
	}
	if gone == nil {
		gone = []string{}
	}
	writeJSON(w, http.StatusOK, volume.PruneReport{VolumesDeleted: gone, SpaceReclaimed: uint64(freed)})
}
