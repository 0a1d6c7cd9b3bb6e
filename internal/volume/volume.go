// Package volume is vxnet's "local" volume driver: named directories on
// the host that containers mount, kept across container removal and daemon
// restarts.
//
// On-disk layout under the store directory (as Docker's):
//
//	<name>/_data        the volume's content (mounted into containers)
//	<name>/volume.json  metadata: creation time, labels, anonymous or not
//
// A volume is created by writing its metadata into a temporary directory
// renamed into place, so a crash never leaves a half-made volume visible.
// The store serialises its own writes; one process owns a directory.
package volume

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"
)

// Errors callers branch on.
var (
	ErrNotFound = errors.New("no such volume")
	ErrInvalid  = errors.New("invalid volume")
	ErrExists   = errors.New("volume exists")
)

// AnonymousLabel marks volumes made for a container's `-v /path` (Docker's
// label), removed with the container by rm -v and --rm.
const AnonymousLabel = "com.docker.volume.anonymous"

// validName is Docker's rule for volume names.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// Volume is one local volume.
type Volume struct {
	Name      string            `json:"Name"`
	CreatedAt time.Time         `json:"CreatedAt"`
	Labels    map[string]string `json:"Labels,omitempty"`
	// Mountpoint is the host directory containers mount.
	Mountpoint string `json:"-"`
}

// Anonymous reports whether the volume was made for one container's
// anonymous mount.
func (v Volume) Anonymous() bool {
	_, ok := v.Labels[AnonymousLabel]
	return ok
}

// Store is a volume store rooted at a directory.
type Store struct {
	dir string
	mu  sync.Mutex
}

// Open opens (creating if needed) the store at dir and removes what
// interrupted creations and removals left.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o701); err != nil {
		return nil, fmt.Errorf("volume: open %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("volume: open %s: %w", dir, err)
	}
	for _, e := range ents {
		if n := e.Name(); len(n) > 0 && n[0] == '.' {
			os.RemoveAll(filepath.Join(dir, n))
		}
	}
	return &Store{dir: dir}, nil
}

// Dir returns the store directory.
func (s *Store) Dir() string { return s.dir }

// NewAnonymousName returns a fresh name for an anonymous volume (64 hex
// digits, as Docker's).
func NewAnonymousName() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// CheckName refuses names Docker refuses.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("%q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path: %w", name, ErrInvalid)
	}
	return nil
}

func (s *Store) load(name string) (Volume, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, name, "volume.json"))
	if errors.Is(err, os.ErrNotExist) {
		return Volume{}, fmt.Errorf("get %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", name, err)
	}
	var v Volume
	if err := json.Unmarshal(b, &v); err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", name, err)
	}
	v.Name = name
	v.Mountpoint = filepath.Join(s.dir, name, "_data")
	return v, nil
}

// Create makes the volume name with labels. Creating an existing volume
// returns it (Docker's create is idempotent for the local driver).
func (s *Store) Create(name string, labels map[string]string) (Volume, error) {
	if err := CheckName(name); err != nil {
		return Volume{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, err := s.load(name); err == nil {
		return v, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Volume{}, err
	}
	tmp, err := os.MkdirTemp(s.dir, ".create-")
	if err != nil {
		return Volume{}, fmt.Errorf("create %s: %w", name, err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o701); err != nil {
		return Volume{}, fmt.Errorf("create %s: %w", name, err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "_data"), 0o755); err != nil {
		return Volume{}, fmt.Errorf("create %s: %w", name, err)
	}
	v := Volume{Name: name, CreatedAt: time.Now().UTC().Truncate(time.Second), Labels: labels}
	b, _ := json.Marshal(v)
	if err := os.WriteFile(filepath.Join(tmp, "volume.json"), b, 0o600); err != nil {
		return Volume{}, fmt.Errorf("create %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, name)); err != nil {
		return Volume{}, fmt.Errorf("create %s: %w", name, err)
	}
	return s.load(name)
}

// Get returns the volume name.
func (s *Store) Get(name string) (Volume, error) {
	if !validName.MatchString(name) {
		return Volume{}, fmt.Errorf("get %s: %w", name, ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load(name)
}

// List returns every volume, by name.
func (s *Store) List() ([]Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("volume: list: %w", err)
	}
	var out []Volume
	for _, e := range ents {
		if !e.IsDir() || !validName.MatchString(e.Name()) {
			continue
		}
		v, err := s.load(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes the volume and its content. The caller makes sure no
// container uses it.
func (s *Store) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.load(name); err != nil {
		return err
	}
	trash := filepath.Join(s.dir, ".rm-"+name)
	if err := os.Rename(filepath.Join(s.dir, name), trash); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// Size returns the bytes of regular files in the volume (for prune).
func (v Volume) Size() int64 {
	var n int64
	filepath.WalkDir(v.Mountpoint, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
