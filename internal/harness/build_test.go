package harness

import (
	"os"
	"path/filepath"
	"testing"
)

func TestModuleRoot(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "vxnet")); err != nil {
		t.Errorf("module root %s has no cmd/vxnet: %v", root, err)
	}
}

func TestBuildHonoursEnv(t *testing.T) {
	t.Setenv(binEnv, "/opt/prebuilt/vxnet")
	if got := Build(t); got != "/opt/prebuilt/vxnet" {
		t.Errorf("Build = %q, want $%s", got, binEnv)
	}
}
