package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vxnet/vxnet/internal/leakcheck"
)

// binEnv names the environment variable that points at a prebuilt vxnet
// binary; when set, Build does not compile.
const binEnv = "VXNET_BIN"

// built is the one vxnet build of this test process. It is package state on
// purpose: building once per process is the point, and Main removes it.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Build returns the path of a vxnet binary: $VXNET_BIN if set, otherwise
// ./cmd/vxnet compiled once per test process into a temporary directory
// (removed by Main).
func Build(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(binEnv); p != "" {
		return p
	}
	built.once.Do(func() {
		built.path, built.err = build()
	})
	if built.err != nil {
		t.Fatalf("%v", built.err)
	}
	return built.path
}

func build() (string, error) {
	dir, err := os.MkdirTemp("", "vxt-bin-")
	if err != nil {
		return "", fmt.Errorf("harness: build vxnet: %w", err)
	}
	built.dir = dir
	return buildIn(dir, "")
}

// BuildTagged compiles ./cmd/vxnet with Go build tags into the directory
// Main removes, for benchmarks that compare a build variant (it ignores
// $VXNET_BIN). Each call compiles.
func BuildTagged(t testing.TB, tags string) string {
	t.Helper()
	Build(t)
	dir := built.dir
	if dir == "" { // $VXNET_BIN: no build directory yet
		var err error
		if dir, err = os.MkdirTemp("", "vxt-bin-"); err != nil {
			t.Fatalf("harness: build vxnet: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	p, err := buildIn(dir, tags)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return p
}

func buildIn(dir, tags string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "vxnet")
	args := []string{"build", "-o", out}
	if tags != "" {
		out = filepath.Join(dir, "vxnet-"+strings.ReplaceAll(tags, ",", "-"))
		args = []string{"build", "-tags", tags, "-o", out}
	}
	cmd := exec.Command(goBin, append(args, "./cmd/vxnet")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("harness: build vxnet: %w\n%s", err, b)
	}
	return out, nil
}

// moduleRoot walks up from the working directory (go test runs a test in
// its package directory), then from this source file, to the directory
// holding go.mod.
func moduleRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", errors.New("harness: find module root: no go.mod above the working directory")
}

// Main is a TestMain for packages that use the harness: it runs the tests
// under a leakcheck (a leak fails the run), then removes the binary that
// Build made.
func Main(m *testing.M) {
	snap := leakcheck.Take(leakcheck.Options{})
	code := m.Run()
	for _, err := range []error{stopSharedContainerd(), snap.Check()} {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}
