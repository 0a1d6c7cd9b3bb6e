package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vxnet/vxnet/internal/model"
)

// ImageService is an optional Backend ability, found by type assertion:
// registry pulls and pushes, tags, inspect, history, rmi, prune, save and
// load. Without it those requests are refused.
type ImageService interface {
	// PullImage calls progress (a layer's ID, its status) as the pull goes;
	// upToDate: the name already named the pulled image.
	PullImage(ctx context.Context, ref string, auth RegistryAuth, progress func(id, status string)) (d ImageDetail, upToDate bool, err error)
	PushImage(ctx context.Context, ref string, auth RegistryAuth) (digest string, size int64, err error)
	TagImage(ctx context.Context, ref, name string) error
	InspectImage(ctx context.Context, ref string) (ImageDetail, error)
	RemoveImage(ctx context.Context, ref string, force bool) ([]ImageDeleteItem, error)
	PruneImages(ctx context.Context, all bool) ([]ImageDeleteItem, int64, error)
	SaveImages(ctx context.Context, refs []string, w io.Writer) error
	LoadImages(ctx context.Context, r io.Reader) ([]ImageDetail, error)
	// Login checks a credential against its registry (docker login).
	Login(ctx context.Context, auth RegistryAuth) error
}

// RegistryAuth is the credential of a pull or push (X-Registry-Auth).
type RegistryAuth struct {
	Username, Password, ServerAddress string
	IdentityToken, RegistryToken      string
}

// ImageDetail describes one image for inspect and history.
type ImageDetail struct {
	ID                    string
	RepoTags, RepoDigests []string
	Created               time.Time
	Size                  int64
	Cmd, Entrypoint, Env  []string
	WorkingDir, User      string
	// Layers are the layers' diff IDs, when known.
	Layers                []string
	Labels                map[string]string
	ExposedPorts, Volumes []string
	History               []ImageHistory
}

// ImageHistory is one step of an image's history.
type ImageHistory struct {
	Created            time.Time
	CreatedBy, Comment string
	Size               int64
	EmptyLayer         bool
}

// ImageDeleteItem is one line of rmi's answer.
type ImageDeleteItem struct{ Untagged, Deleted string }

func (s *server) imageService(w http.ResponseWriter) (ImageService, bool) {
	is, ok := s.b.(ImageService)
	if !ok {
		writeError(w, apiErr(model.ErrInvalid, "this vxnet daemon does not manage images beyond import"))
	}
	return is, ok
}

// registryAuth decodes X-Registry-Auth (base64url JSON of Docker's
// AuthConfig; standard base64 is accepted too). An absent or empty header
// means no credentials.
func registryAuth(r *http.Request) (RegistryAuth, error) {
	h := r.Header.Get(registry.AuthHeader)
	if h == "" {
		return RegistryAuth{}, nil
	}
	var b []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.StdEncoding, base64.RawURLEncoding, base64.RawStdEncoding} {
		if b, err = enc.DecodeString(h); err == nil {
			break
		}
	}
	if err != nil {
		return RegistryAuth{}, apiErr(model.ErrInvalid, "invalid X-Registry-Auth header: %v", err)
	}
	var ac registry.AuthConfig
	if err := json.Unmarshal(b, &ac); err != nil {
		return RegistryAuth{}, apiErr(model.ErrInvalid, "invalid X-Registry-Auth header: %v", err)
	}
	if ac.Auth != "" && ac.Username == "" {
		if raw, err := base64.StdEncoding.DecodeString(ac.Auth); err == nil {
			ac.Username, ac.Password, _ = strings.Cut(string(raw), ":")
		}
	}
	return RegistryAuth{Username: ac.Username, Password: ac.Password, ServerAddress: ac.ServerAddress,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}, nil
}

// jsonStream writes Docker's JSON message stream (the progress output of
// pull, push and load).
type jsonStream struct {
	w   http.ResponseWriter
	enc *json.Encoder
}

func newJSONStream(w http.ResponseWriter) *jsonStream {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	return &jsonStream{w: w, enc: json.NewEncoder(w)}
}

func (j *jsonStream) send(v any) {
	_ = j.enc.Encode(v)
	if f, ok := j.w.(http.Flusher); ok {
		f.Flush()
	}
}

// imagePull serves POST /images/create?fromImage= with Docker's JSON
// message stream. The answer starts with the first layer's progress (the
// reference is resolved by then); an error before that is an error
// response, one after it an error message in the stream, as dockerd does.
func (s *server) imagePull(w http.ResponseWriter, r *http.Request) {
	is, ok := s.imageService(w)
	if !ok {
		return
	}
	q := r.URL.Query()
	if p := q.Get("platform"); p != "" {
		writeError(w, apiErr(model.ErrInvalid, "vxnet pulls only for its own platform; --platform %s is not supported", p))
		return
	}
	from := q.Get("fromImage")
	ref, tag := from, q.Get("tag")
	if tag != "" {
		if strings.HasPrefix(tag, "sha256:") {
			ref += "@" + tag
		} else {
			ref += ":" + tag
		}
	} else if i := strings.LastIndexAny(from, ":@"); i > strings.LastIndex(from, "/") {
		tag = from[i+1:]
	} else {
		tag, ref = "latest", from+":latest"
	}
	auth, err := registryAuth(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var js *jsonStream
	start := func() {
		if js == nil {
			js = newJSONStream(w)
			js.send(map[string]string{"status": "Pulling from " + from, "id": tag})
		}
	}
	d, upToDate, err := is.PullImage(r.Context(), ref, auth, func(id, status string) {
		start()
		js.send(map[string]any{"status": status, "progressDetail": map[string]any{}, "id": id})
	})
	if err != nil {
		if js == nil {
			writeError(w, err)
			return
		}
		msg := strings.TrimSpace(err.Error())
		js.send(map[string]any{"errorDetail": map[string]string{"message": msg}, "error": msg})
		return
	}
	start()
	for _, dg := range d.RepoDigests {
		js.send(map[string]string{"status": "Digest: " + dg[strings.LastIndex(dg, "@")+1:]})
	}
	if upToDate {
		js.send(map[string]string{"status": "Status: Image is up to date for " + ref})
	} else {
		js.send(map[string]string{"status": "Status: Downloaded newer image for " + ref})
	}
}

// imageByName dispatches the routes whose image name may hold slashes
// (reg:5000/team/app): GET .../json, GET .../history, POST .../push,
// POST .../tag, DELETE ....
func (s *server) imageByName(w http.ResponseWriter, r *http.Request) {
	rest := r.PathValue("rest")
	name, op := rest, ""
	if i := strings.LastIndex(rest, "/"); i > 0 {
		switch rest[i+1:] {
		case "json", "history", "push", "tag":
			name, op = rest[:i], rest[i+1:]
		}
	}
	switch {
	case r.Method == http.MethodDelete && op == "":
		s.imageRemove(w, r, rest)
	case r.Method == http.MethodGet && op == "json":
		s.imageInspect(w, r, name)
	case r.Method == http.MethodGet && op == "history":
		s.imageHistory(w, r, name)
	case r.Method == http.MethodPost && op == "push":
		s.imagePush(w, r, name)
	case r.Method == http.MethodPost && op == "tag":
		s.imageTag(w, r, name)
	default:
		writeError(w, apiErr(model.ErrNotFound, "page not found"))
	}
}

func (s *server) imageInspect(w http.ResponseWriter, r *http.Request, name string) {
	is, ok := s.imageService(w)
	if !ok {
		return
	}
	d, err := is.InspectImage(r.Context(), name)
	if err != nil {
		writeError(w, noSuchImage(err, name))
		return
	}
	cfg := &dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{
		Cmd: d.Cmd, Entrypoint: d.Entrypoint, Env: d.Env, WorkingDir: d.WorkingDir, User: d.User, Labels: d.Labels,
	}}
	if len(d.ExposedPorts) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for _, p := range d.ExposedPorts {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	if len(d.Volumes) > 0 {
		cfg.Volumes = map[string]struct{}{}
		for _, v := range d.Volumes {
			cfg.Volumes[v] = struct{}{}
		}
	}
	out := image.InspectResponse{
		ID:           d.ID,
		RepoTags:     append([]string{}, d.RepoTags...),
		RepoDigests:  append([]string{}, d.RepoDigests...),
		Created:      d.Created.UTC().Format(time.RFC3339Nano),
		Config:       cfg,
		Architecture: goArch(),
		Os:           "linux",
		Size:         d.Size,
		RootFS:       image.RootFS{Type: "layers", Layers: d.Layers},
	}
	writeJSON(w, http.StatusOK, out)
}

// noSuchImage words a missing image as Docker does.
func noSuchImage(err error, name string) error {
	if statusOf(err) == http.StatusNotFound {
		return apiErr(model.ErrNotFound, "No such image: %s", name)
	}
	return err
}

func (s *server) imageHistory(w http.ResponseWriter, r *http.Request, name string) {
	is, ok := s.imageService(w)
	if !ok {
		return
	}
	d, err := is.InspectImage(r.Context(), name)
	if err != nil {
		writeError(w, noSuchImage(err, name))
		return
	}
	out := []image.HistoryResponseItem{}
	hist := d.History
	if len(hist) == 0 {
		hist = []ImageHistory{{Created: d.Created, Comment: "Imported from -", Size: d.Size}}
	}
	// Newest first; the newest step carries the image's ID and names.
	for i := len(hist) - 1; i >= 0; i-- {
		h := hist[i]
		item := image.HistoryResponseItem{ID: "<missing>", Created: h.Created.Unix(), CreatedBy: h.CreatedBy, Comment: h.Comment, Size: h.Size, Tags: nil}
		if i == len(hist)-1 {
			item.ID = d.ID
			item.Tags = append([]string{}, d.RepoTags...)
		}
		out = append(out, item)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) imagePush(w http.ResponseWriter, r *http.Request, name string) {
	is, ok := s.imageService(w)
	if !ok {
		return
	}
	ref := name
	if tag := r.URL.Query().Get("tag"); tag != "" {
		ref += ":" + tag
	}
	if r.URL.Query().Get("platform") != "" {
		writeError(w, apiErr(model.ErrInvalid, "vxnet does not support push --platform"))
		return
	}
	auth, err := registryAuth(r)
	if err != nil {
		writeError(w, err)
		return
	}
	dg, size, err := is.PushImage(r.Context(), ref, auth)
	if err != nil {
		writeError(w, noSuchImage(err, ref))
		return
	}
	tag := "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		tag = ref[i+1:]
	}
	js := newJSONStream(w)
	js.send(map[string]string{"status": "The push refers to repository [" + strings.TrimSuffix(ref, ":"+tag) + "]"})
	js.send(map[string]string{"status": tag + ": digest: " + dg + " size: " + itoa(size)})
	js.send(map[string]any{"progressDetail": map[string]any{}, "aux": map[string]any{"Tag": tag, "Digest": dg, "Size": size}})
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func (s *server) imageTag(w http.ResponseWriter, r *http.Request, name string) {
	is, ok := s.imageService(w)
	if !ok {
		return
	}
	q := r.URL.Query()
	repo, tag := q.Get("repo"), q.Get("tag")
	if repo == "" {
		writeError(w, apiErr(model.ErrInvalid, "repository name (repo) is required"))
		return
	}
	target := repo
	if tag != "" {
		target += ":" + tag
	}
	if err := is.TagImage(r.Context(), name, target); err != nil {
		writeError(w, noSuchImage(err, name))
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (s *server) imageRemove(w http.ResponseWriter, r *http.Request, name string) {
	is, ok := s.imageService(w)
	if !ok {
		return
	}
	if boolParam(r, "noprune") {
		writeError(w, apiErr(model.ErrInvalid, "vxnet does not support rmi --no-prune"))
		return
	}
	items, err := is.RemoveImage(r.Context(), name, boolParam(r, "force"))
	if err != nil {
		writeError(w, noSuchImage(err, name))
		return
	}
	out := []image.DeleteResponse{}
	for _, it := range items {
		out = append(out, image.DeleteResponse{Untagged: it.Untagged, Deleted: it.Deleted})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) imagePrune(w http.ResponseWriter, r *http.Request) {
	is, ok := s.imageService(w)
	if !ok {
		return
	}
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err == nil {
		err = f.supported("image prune", "dangling")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	all := f.is("dangling", "false", "0")
	items, freed, err := is.PruneImages(r.Context(), all)
	if err != nil {
		writeError(w, err)
		return
	}
	out := image.PruneReport{ImagesDeleted: []image.DeleteResponse{}, SpaceReclaimed: uint64(freed)}
	for _, it := range items {
		out.ImagesDeleted = append(out.ImagesDeleted, image.DeleteResponse{Untagged: it.Untagged, Deleted: it.Deleted})
	}
	writeJSON(w, http.StatusOK, out)
}

// imageSave serves GET /images/get?names=... and GET /images/{name}/get.
func (s *server) imageSave(w http.ResponseWriter, r *http.Request) {
	is, ok := s.imageService(w)
	if !ok {
		return
	}
	names := r.URL.Query()["names"]
	if n := r.PathValue("name"); n != "" {
		names = []string{n}
	}
	if len(names) == 0 {
		writeError(w, apiErr(model.ErrInvalid, "no images to save: give names"))
		return
	}
	if r.URL.Query().Get("platform") != "" {
		writeError(w, apiErr(model.ErrInvalid, "vxnet does not support save --platform"))
		return
	}
	// Errors before the first byte are error responses; the tar is then
	// streamed.
	pw := &lazyWriter{w: w}
	if err := is.SaveImages(r.Context(), names, pw); err != nil {
		if !pw.started {
			writeError(w, noSuchImage(err, strings.Join(names, ", ")))
			return
		}
		s.log.Warn("image save failed mid-stream", "err", err)
		panic(http.ErrAbortHandler)
	}
	if !pw.started {
		pw.start()
	}
}

// lazyWriter sends the 200 header with the first byte.
type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) start() {
	l.started = true
	l.w.Header().Set("Content-Type", "application/x-tar")
	l.w.WriteHeader(http.StatusOK)
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.start()
	}
	return l.w.Write(p)
}

func (s *server) imageLoad(w http.ResponseWriter, r *http.Request) {
	is, ok := s.imageService(w)
	if !ok {
		return
	}
	if r.URL.Query().Get("platform") != "" {
		writeError(w, apiErr(model.ErrInvalid, "vxnet does not support load --platform"))
		return
	}
	loaded, err := is.LoadImages(r.Context(), r.Body)
	if err != nil {
		writeError(w, err)
		return
	}
	js := newJSONStream(w)
	for _, d := range loaded {
		if len(d.RepoTags) == 0 {
			js.send(map[string]string{"stream": "Loaded image ID: " + d.ID + "\n"})
		}
		for _, t := range d.RepoTags {
			js.send(map[string]string{"stream": "Loaded image: " + t + "\n"})
		}
	}
}

// auth serves POST /auth (docker login): the credential is checked, not
// kept.
func (s *server) auth(w http.ResponseWriter, r *http.Request) {
	is, ok := s.imageService(w)
	if !ok {
		return
	}
	var ac registry.AuthConfig
	if err := decodeJSON(r, &ac, false); err != nil {
		writeError(w, err)
		return
	}
	if ac.Auth != "" && ac.Username == "" {
		if raw, err := base64.StdEncoding.DecodeString(ac.Auth); err == nil {
			ac.Username, ac.Password, _ = strings.Cut(string(raw), ":")
		}
	}
	err := is.Login(r.Context(), RegistryAuth{Username: ac.Username, Password: ac.Password, ServerAddress: ac.ServerAddress,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken})
	if err != nil {
		if statusOf(err) == http.StatusForbidden {
			// A refused credential is 401, as dockerd answers it.
			writeJSON(w, http.StatusUnauthorized, map[string]string{"message": strings.TrimSpace(err.Error())})
			return
		}
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, registry.AuthResponse{Status: "Login Succeeded"})
}
