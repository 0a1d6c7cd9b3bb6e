package api

import (
	"context"
	"encoding/json"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"

	"github.com/vxnet/vxnet/internal/model"
)

func (s *server) imageList(w http.ResponseWriter, r *http.Request) {
	refs, dangling, err := imageListFilters(r)
	if err != nil {
		writeError(w, err)
		return
	}
	imgs, err := s.b.ListImages(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	out := []image.Summary{}
	for _, img := range imgs {
		if dangling != nil && *dangling != (img.Name == "") {
			continue
		}
		if len(refs) > 0 && !matchesReference(img.Name, refs) {
			continue
		}
		sum := image.Summary{
			ID:          img.ID,
			Created:     img.Created,
			Size:        img.Size,
			Containers:  -1,
			SharedSize:  -1,
			Labels:      map[string]string{},
			RepoTags:    []string{},
			RepoDigests: []string{},
		}
		if img.Name != "" {
			sum.RepoTags = append(sum.RepoTags, img.Name)
		}
		out = append(out, sum)
	}
	writeJSON(w, http.StatusOK, out)
}

// imageListFilters reads docker images' filters: reference (a name or a
// path.Match pattern, with or without tag) and dangling. Others are refused.
func imageListFilters(r *http.Request) (refs []string, dangling *bool, err error) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = f.supported("images", "reference", "dangling")
	}
	if err != nil {
		return nil, nil, err
	}
	for ref := range f["reference"] {
		refs = append(refs, ref)
	}
	if _, ok := f["dangling"]; ok {
		d := f.is("dangling", "true", "1")
		dangling = &d
	}
	return refs, dangling, nil
}

// matchesReference reports whether name ("repo:tag") matches one of the
// reference patterns: "repo" matches every tag of repo, "repo:tag" that tag.
func matchesReference(name string, refs []string) bool {
	if name == "" {
		return false
	}
	repo := name
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		repo = name[:i]
	}
	for _, ref := range refs {
		if ok, _ := path.Match(ref, name); ok {
			return true
		}
		if ok, _ := path.Match(ref, repo); ok {
			return true
		}
	}
	return false
}

// imageCreate serves docker pull (fromImage) and docker import (fromSrc=-
// with the rootfs tar as the body).
func (s *server) imageCreate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("fromImage") != "" {
		s.imagePull(w, r)
		return
	}
	if q.Get("fromSrc") != "-" {
		writeError(w, apiErr(model.ErrInvalid, "vxnet imports images only from the request body (fromSrc=-)"))
		return
	}
	img, err := s.b.ImportImage(r.Context(), importName(q.Get("repo"), q.Get("tag")), r.Body)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": img.ID})
}

// importName is repo:tag with Docker's default tag "latest"; a repo that
// already carries a tag keeps it. An empty repo imports an untagged image.
func importName(repo, tag string) string {
	if repo == "" {
		return ""
	}
	if tag != "" {
		return repo + ":" + tag
	}
	last := repo[strings.LastIndex(repo, "/")+1:]
	if strings.Contains(last, ":") || strings.Contains(last, "@") {
		return repo
	}
	return repo + ":latest"
}

func (s *server) ping(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Pragma", "no-cache")
	h.Set("Swarm", "inactive")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte("OK"))
	}
}

// Component is a part of what runs containers, listed by /version after
// the Engine as Docker lists containerd, runc and docker-init.
type Component struct {
	Name, Version string
	Details       map[string]string
}

// Componenter is an optional Backend ability: the runtime's components.
type Componenter interface {
	Components(ctx context.Context) []Component
}

func (s *server) version(w http.ResponseWriter, r *http.Request) {
	v := s.versionResponse()
	if c, ok := s.b.(Componenter); ok {
		for _, cv := range c.Components(r.Context()) {
			v.Components = append(v.Components, system.ComponentVersion{Name: cv.Name, Version: cv.Version, Details: cv.Details})
		}
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *server) versionResponse() system.VersionResponse {
	return system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "vxnet"},
		Version:       s.ver,
		APIVersion:    APIVersion,
		MinAPIVersion: MinAPIVersion,
		Os:            "linux",
		Arch:          goArch(),
		GoVersion:     goVersion(),
		KernelVersion: kernelVersion(),
		Components: []system.ComponentVersion{{
			Name:    "Engine",
			Version: s.ver,
			Details: map[string]string{
				"ApiVersion":    APIVersion,
				"MinAPIVersion": MinAPIVersion,
				"Os":            "linux",
				"Arch":          goArch(),
				"GoVersion":     goVersion(),
				"KernelVersion": kernelVersion(),
			},
		}},
	}
}

func (s *server) info(w http.ResponseWriter, r *http.Request) {
	in, err := s.b.Info(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	ver := in.Version
	if ver == "" {
		ver = s.ver
	}
	out := system.Info{
		ID:                in.ID,
		Name:              in.Name,
		Containers:        in.Containers,
		ContainersRunning: in.Running,
		ContainersStopped: in.Containers - in.Running,
		Images:            in.Images,
		Driver:            "vxnet",
		DriverStatus:      [][2]string{},
		DockerRootDir:     in.DataRoot,
		ServerVersion:     ver,
		OSType:            "linux",
		OperatingSystem:   "vxnet",
		Architecture:      goArch(),
		KernelVersion:     kernelVersion(),
		NCPU:              numCPU(),
		SystemTime:        time.Now().Format(time.RFC3339Nano),
		LoggingDriver:     "json-file",
		CgroupDriver:      "cgroupfs",
		DefaultRuntime:    "runc",
		Labels:            []string{},
		Warnings:          append([]string{}, in.Warnings...),
		Swarm:             swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive},
		// Every container gets Docker's default seccomp profile.
		SecurityOptions: []string{"name=seccomp,profile=builtin"},
	}
	writeJSON(w, http.StatusOK, out)
}
