package volume

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestStore(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Create("data", map[string]string{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Mountpoint != filepath.Join(dir, "data", "_data") || v.Anonymous() {
		t.Errorf("volume %+v", v)
	}
	os.WriteFile(filepath.Join(v.Mountpoint, "f"), []byte("1234"), 0o644)
	again, err := s.Create("data", nil)
	if err != nil || again.Labels["a"] != "b" {
		t.Errorf("create of an existing volume must return it: %+v %v", again, err)
	}
	anon, _ := s.Create(NewAnonymousName(), map[string]string{AnonymousLabel: ""})
	if !anon.Anonymous() || len(anon.Name) != 64 {
		t.Errorf("anonymous volume %+v", anon)
	}
	if _, err := s.Create("../x", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad name: %v", err)
	}
	// A crash mid-create leaves a dot directory: gone at the next open,
	// never listed.
	os.Mkdir(filepath.Join(dir, ".create-123"), 0o700)
	s, _ = Open(dir)
	list, err := s.List()
	// Sorted by name; the anonymous volume's random hex name may sort
	// before or after "data".
	dataAt := 1
	if len(list) == 2 && list[0].Name == "data" {
		dataAt = 0
	}
	if err != nil || len(list) != 2 || list[dataAt].Name != "data" || list[dataAt].Size() != 4 || list[1-dataAt].Name != anon.Name ||
		list[0].Name > list[1].Name {
		t.Errorf("list: %+v %v", list, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".create-123")); err == nil {
		t.Errorf("leftover of an interrupted create kept")
	}
	if err := s.Remove("data"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("data"); !errors.Is(err, ErrNotFound) || err.Error() != "get data: no such volume" {
		t.Errorf("get after remove: %v", err)
	}
}
