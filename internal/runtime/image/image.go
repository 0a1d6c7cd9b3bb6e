// Package image is vxnet's local image store: the names and metadata of
// every image. Images come from `vxnet image import NAME ROOTFS.tar` (like
// `docker import`), are built from the host's static busybox
// (EnsureBusybox), or are pulled from a registry or loaded from a saved tar
// by the containerd runtime, which keeps their content (Add; such images
// have a Target and no rootfs directory here).
//
// On-disk layout under the store directory:
//
//	repositories.json          {"repo:tag": "sha256:<hex>", ...}
//	sha256/<hex>/image.json    metadata (Image without the path)
//	sha256/<hex>/rootfs/       the unpacked root filesystem (read only by convention:
//	                           containers mount it as an overlay lower layer)
//	tmp/                       imports in progress
//
// An image ID is "sha256:" + the hex digest of the imported tar's bytes,
// exactly as given (compressed or not). The store serialises its own writes
// with a mutex; one process owns a store directory.
package image

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Sentinel errors callers branch on.
var (
	// ErrImageNotFound: no local image matches the reference.
	ErrImageNotFound = errors.New("image not found")
	// ErrInvalid: a malformed reference, an ambiguous ID prefix, or a bad tar.
	ErrInvalid = errors.New("invalid argument")
)

// Config is the run configuration an image carries.
type Config struct {
	Cmd        []string          `json:"Cmd,omitempty"`
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	User       string            `json:"User,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
	// ExposedPorts as in the OCI image config: {"80/tcp": {}}.
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	// Volumes are the image's volume mount points: {"/data": {}}.
	Volumes map[string]struct{} `json:"Volumes,omitempty"`
	// StopSignal is the signal docker stop sends (a container's default).
	StopSignal string `json:"StopSignal,omitempty"`
}

// Target is the root descriptor (manifest or index) of an image whose
// content containerd holds.
type Target struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// History is one entry of an image's history (from its OCI config).
type History struct {
	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"created_by,omitempty"`
	Comment    string    `json:"comment,omitempty"`
	EmptyLayer bool      `json:"empty_layer,omitempty"`
	// Size is the size of the layer the step made (0 for empty layers).
	Size int64 `json:"size,omitempty"`
}

// Image is one local image.
type Image struct {
	ID       string    `json:"Id"` // sha256:<hex>
	RepoTags []string  `json:"RepoTags,omitempty"`
	Created  time.Time `json:"Created"`
	Size     int64     `json:"Size"` // bytes of regular files in the rootfs
	Config   Config    `json:"Config"`
	// Target is set for images whose content is in containerd (pulled or
	// loaded); they have no Rootfs.
	Target  *Target   `json:"Target,omitempty"`
	History []History `json:"History,omitempty"`
	// RepoDigests are "repo@sha256:..." of the manifests pulled or pushed.
	RepoDigests []string `json:"RepoDigests,omitempty"`
	// Layers are the diff IDs of the image's layers (pulled and loaded
	// images).
	Layers []string `json:"Layers,omitempty"`
	// Rootfs is the absolute path of the unpacked root filesystem ("" for
	// images with a Target).
	Rootfs string `json:"-"`
}

// Store is an image store rooted at a directory.
type Store struct {
	dir string
	mu  sync.Mutex
}

// Open opens (creating if needed) the store at dir.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image: open store %s: %w", dir, err)
		}
	}
	s := &Store{dir: dir}
	// Leftovers of imports interrupted by a crash.
	if ents, err := os.ReadDir(filepath.Join(dir, "tmp")); err == nil {
		for _, e := range ents {
			os.RemoveAll(filepath.Join(dir, "tmp", e.Name()))
		}
	}
	return s, nil
}

// Dir returns the store directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) imageDir(hexID string) string { return filepath.Join(s.dir, "sha256", hexID) }

func (s *Store) readRepos() (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "repositories.json"))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image: read repositories: %w", err)
	}
	m := map[string]string{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("image: decode repositories: %w", err)
	}
	return m, nil
}

func (s *Store) writeRepos(m map[string]string) error {
	return writeJSON(filepath.Join(s.dir, "repositories.json"), m)
}

// writeJSON writes v to path atomically (temp file, fsync, rename).
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// load reads one image's metadata; repos fills RepoTags.
func (s *Store) load(hexID string, repos map[string]string) (Image, error) {
	b, err := os.ReadFile(filepath.Join(s.imageDir(hexID), "image.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Image{}, ErrImageNotFound
		}
		return Image{}, fmt.Errorf("image: read %s: %w", hexID, err)
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return Image{}, fmt.Errorf("image: decode %s: %w", hexID, err)
	}
	img.Rootfs = filepath.Join(s.imageDir(hexID), "rootfs")
	if img.Target != nil {
		img.Rootfs = ""
	}
	img.RepoTags = nil
	for name, id := range repos {
		if id == img.ID {
			img.RepoTags = append(img.RepoTags, name)
		}
	}
	sort.Strings(img.RepoTags)
	return img, nil
}

func (s *Store) ids() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "sha256"))
	if err != nil {
		return nil, fmt.Errorf("image: list: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && isHex(e.Name()) && len(e.Name()) == 64 {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// List returns all images, newest first.
func (s *Store) List() ([]Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	repos, err := s.readRepos()
	if err != nil {
		return nil, err
	}
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, id := range ids {
		img, err := s.load(id, repos)
		if errors.Is(err, ErrImageNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Get finds an image by name ("busybox", "busybox:latest"), full ID
// ("sha256:<hex>" or "<hex>") or unique ID prefix. An unknown image returns
// an error wrapping ErrImageNotFound whose message tells how to import one;
// a malformed name or an ambiguous prefix returns ErrInvalid.
func (s *Store) Get(ref string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.get(ref)
}

func (s *Store) get(ref string) (Image, error) {
	repos, err := s.readRepos()
	if err != nil {
		return Image{}, err
	}
	hexRef := strings.TrimPrefix(ref, "sha256:")
	if len(hexRef) == 64 && isHex(hexRef) {
		img, err := s.load(hexRef, repos)
		if err == nil || !errors.Is(err, ErrImageNotFound) {
			return img, err
		}
	}
	named, perr := ParseReference(ref)
	if perr == nil {
		if id, ok := repos[named.String()]; ok {
			img, err := s.load(strings.TrimPrefix(id, "sha256:"), repos)
			if err == nil || !errors.Is(err, ErrImageNotFound) {
				return img, err
			}
		}
	}
	if isHex(hexRef) {
		ids, err := s.ids()
		if err != nil {
			return Image{}, err
		}
		var match []string
		for _, id := range ids {
			if strings.HasPrefix(id, strings.ToLower(hexRef)) {
				match = append(match, id)
			}
		}
		switch len(match) {
		case 1:
			return s.load(match[0], repos)
		case 0:
		default:
			return Image{}, fmt.Errorf("image: ID prefix %q is ambiguous (%d images): %w", ref, len(match), ErrInvalid)
		}
	}
	if perr != nil {
		return Image{}, perr
	}
	return Image{}, &notFoundError{ref: named}
}

// notFoundError is Docker's message for a missing image (the docker CLI
// pulls the image when create answers it with 404).
type notFoundError struct{ ref Reference }

func (e *notFoundError) Error() string {
	return fmt.Sprintf("No such image: %s", e.ref)
}

func (e *notFoundError) Is(target error) bool { return target == ErrImageNotFound }

// Tag points name at the image ref resolves to (moving the tag if another
// image had it).
func (s *Store) Tag(ref, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.get(ref)
	if err != nil {
		return err
	}
	named, err := ParseReference(name)
	if err != nil {
		return err
	}
	repos, err := s.readRepos()
	if err != nil {
		return err
	}
	repos[named.String()] = img.ID
	if err := s.writeRepos(repos); err != nil {
		return fmt.Errorf("image: tag %s: %w", named, err)
	}
	return nil
}

// Remove removes ref. If ref is a name and the image has other names, only
// that name is removed (untag); otherwise the image and all its names are
// deleted. The caller makes sure no container uses the image. It returns
// the IDs of deleted images (empty when only untagged).
func (s *Store) Remove(ref string) (deleted []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.get(ref)
	if err != nil {
		return nil, err
	}
	repos, err := s.readRepos()
	if err != nil {
		return nil, err
	}
	if named, perr := ParseReference(ref); perr == nil && repos[named.String()] == img.ID && len(img.RepoTags) > 1 {
		delete(repos, named.String())
		if err := s.writeRepos(repos); err != nil {
			return nil, fmt.Errorf("image: untag %s: %w", named, err)
		}
		return nil, nil
	}
	for name, id := range repos {
		if id == img.ID {
			delete(repos, name)
		}
	}
	if err := s.writeRepos(repos); err != nil {
		return nil, fmt.Errorf("image: remove %s: %w", img.ID, err)
	}
	hexID := strings.TrimPrefix(img.ID, "sha256:")
	// Rename first so a crash never leaves a half-deleted image visible.
	trash := filepath.Join(s.dir, "tmp", "rm-"+hexID)
	if err := os.Rename(s.imageDir(hexID), trash); err != nil {
		return nil, fmt.Errorf("image: remove %s: %w", img.ID, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return nil, fmt.Errorf("image: remove %s: %w", img.ID, err)
	}
	return []string{img.ID}, nil
}

// Add records an image whose content containerd holds (img.Target set,
// img.ID "sha256:<hex>" of its config) and points name at it ("" adds it
// untagged). Adding an existing ID keeps its metadata, adds the name and
// merges RepoDigests.
func (s *Store) Add(name string, img Image) (Image, error) {
	hexID := strings.TrimPrefix(img.ID, "sha256:")
	if img.Target == nil || len(hexID) != 64 || !isHex(hexID) {
		return Image{}, fmt.Errorf("image: add %q: need a sha256 ID and a target: %w", img.ID, ErrInvalid)
	}
	var named Reference
	if name != "" {
		var err error
		if named, err = ParseReference(name); err != nil {
			return Image{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	repos, err := s.readRepos()
	if err != nil {
		return Image{}, err
	}
	dir := s.imageDir(hexID)
	if old, err := s.load(hexID, repos); err == nil {
		for _, d := range old.RepoDigests {
			if !slices.Contains(img.RepoDigests, d) {
				img.RepoDigests = append(img.RepoDigests, d)
			}
		}
		sort.Strings(img.RepoDigests)
		old.RepoDigests = img.RepoDigests
		old.RepoTags = nil
		if err := writeJSON(filepath.Join(dir, "image.json"), old); err != nil {
			return Image{}, fmt.Errorf("image: add %s: %w", img.ID, err)
		}
	} else if errors.Is(err, ErrImageNotFound) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return Image{}, fmt.Errorf("image: add %s: %w", img.ID, err)
		}
		img.RepoTags, img.Rootfs = nil, ""
		if err := writeJSON(filepath.Join(dir, "image.json"), img); err != nil {
			return Image{}, fmt.Errorf("image: add %s: %w", img.ID, err)
		}
	} else {
		return Image{}, err
	}
	if name != "" {
		repos[named.String()] = img.ID
		if err := s.writeRepos(repos); err != nil {
			return Image{}, fmt.Errorf("image: tag %s: %w", named, err)
		}
	}
	return s.load(hexID, repos)
}

// Untag removes the name name (the image stays, even without names).
func (s *Store) Untag(name string) error {
	named, err := ParseReference(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	repos, err := s.readRepos()
	if err != nil {
		return err
	}
	if _, ok := repos[named.String()]; !ok {
		return &notFoundError{ref: named}
	}
	delete(repos, named.String())
	if err := s.writeRepos(repos); err != nil {
		return fmt.Errorf("image: untag %s: %w", named, err)
	}
	return nil
}

// Untagged reports whether the image has no name (a "dangling" image).
func (img Image) Untagged() bool { return len(img.RepoTags) == 0 }

func isHex(s string) bool {
	if s == "" {
		return false
	}
	_, err := hex.DecodeString(s + strings.Repeat("0", len(s)%2))
	return err == nil
}
