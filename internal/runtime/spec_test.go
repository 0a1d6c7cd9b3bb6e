package runtime

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestOCISpec(t *testing.T) {
	c := containerConfig{
		ID: "abc", Args: []string{"sh"}, Env: []string{"A=1"}, Hostname: "h",
		NetnsPath: "/run/vxnet/netns/x",
		Mounts:    []Mount{{Source: "/x/hosts", Destination: "/etc/hosts", ReadOnly: true}, {Source: "/x/hostname", Destination: "/etc/hostname"}},
	}
	s := ociSpec(c, "vxnet-1/abc")
	if s.Hostname != "h" || s.Root.Path != "rootfs" || s.Process.Cwd != "/" || s.Process.Terminal || s.Linux.CgroupsPath != "vxnet-1/abc" {
		t.Errorf("basic fields: %+v", s)
	}
	if !slices.Contains(s.Process.Capabilities.Effective, "CAP_NET_RAW") || !slices.Contains(s.Process.Capabilities.Bounding, "CAP_NET_RAW") {
		t.Error("CAP_NET_RAW missing")
	}
	var netns *specs.LinuxNamespace
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			netns = &s.Linux.Namespaces[i]
		}
	}
	if netns == nil || netns.Path != c.NetnsPath {
		t.Errorf("network namespace %+v", netns)
	}
	var ro, rw bool
	for _, m := range s.Mounts {
		if m.Destination == "/etc/hosts" {
			ro = m.Type == "bind" && slices.Contains(m.Options, "ro") && m.Source == "/x/hosts"
		}
		if m.Destination == "/etc/hostname" {
			rw = m.Type == "bind" && !slices.Contains(m.Options, "ro")
		}
	}
	if !ro || !rw {
		t.Errorf("bind mounts: %+v", s.Mounts)
	}
	c.NetnsPath = ""
	for _, ns := range ociSpec(c, "p").Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			t.Error("host networking still has a network namespace entry")
		}
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "PATH=/bin"}, []string{"A=2", "B=3"}, "h")
	want := []string{"PATH=/bin", "HOSTNAME=h", "A=2", "B=3"}
	if !slices.Equal(got, want) {
		t.Errorf("mergeEnv = %v, want %v", got, want)
	}
	if got := mergeEnv(nil, nil, "h"); got[0] != defaultPath {
		t.Errorf("default PATH missing: %v", got)
	}
}
