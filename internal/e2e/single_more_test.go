package e2e

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxnet/vxnet/internal/testreq"
)

// Bridge options: ICC off blocks container-to-container traffic on the
// network (but not the way out), the MTU option reaches eth0, and the
// bridge name option names the device.
func TestBridgeOptions(t *testing.T) {
	c, h := single(t)
	cli(t, h, "network", "create", "-o", "com.docker.network.bridge.enable_icc=false",
		"-o", "com.docker.network.driver.mtu=1400", "-o", "com.docker.network.bridge.name=br-quiet", "quiet")
	cli(t, h, "run", "-d", "--name", "q1", "--net", "quiet", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "q2", "--net", "quiet", "--hostname", "second", "-e", "COLOR=blue", "busybox", "sleep", "1d")
	if ping(t, h, "q1", "q2") {
		t.Error("containers on an enable_icc=false network reached each other")
	}
	if !ping(t, h, "q1", c.OutsideAddr().String()) {
		t.Error("enable_icc=false also cut the way out")
	}
	if mtu := cli(t, h, "exec", "q1", "cat", "/sys/class/net/eth0/mtu"); mtu != "1400" {
		t.Errorf("eth0 MTU = %s, want 1400", mtu)
	}
	if _, code := h.Exec("ip", "link", "show", "br-quiet"); code != 0 {
		t.Error("bridge br-quiet does not exist")
	}
	if out := cli(t, h, "exec", "q2", "sh", "-c", "hostname; echo $COLOR"); out != "second\nblue" {
		t.Errorf("hostname/env = %q", out)
	}
	// Masquerade off: the outside sees the container's own address, or
	// nothing if it has no route back; either way not the host's.
	cli(t, h, "network", "create", "-o", "com.docker.network.bridge.enable_ip_masquerade=false", "nomasq")
	cli(t, h, "run", "-d", "--name", "m", "--net", "nomasq", "busybox", "sleep", "1d")
	rec := c.StartEchoServer(8081)
	execCode(t, h, "m", "sh", "-c", "echo x | nc -w 2 "+c.OutsideAddr().String()+" 8081")
	for _, s := range rec.Sources() {
		if s == h.Addr {
			t.Error("masquerade-off network was masqueraded to the host address")
		}
	}
}

// image import of a root filesystem tar, image ls, and running it.
func TestImageImport(t *testing.T) {
	_, h := single(t)
	tarPath := filepath.Join(h.Dir, "rootfs.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testreq.Skip(t, "no /bin/busybox to build a rootfs from")
	}
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))})
	tw.Write(bb)
	tw.WriteHeader(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.Close()
	f.Close()
	id := cli(t, h, "image", "import", "tiny:v1", tarPath)
	if !strings.HasPrefix(id, "sha256:") {
		t.Errorf("import printed %q, want an image ID", id)
	}
	if ls := cli(t, h, "image", "ls"); !strings.Contains(ls, "tiny") || !strings.Contains(ls, "v1") || !strings.Contains(ls, "busybox") {
		t.Errorf("image ls:\n%s", ls)
	}
	if out := cli(t, h, "run", "--rm", "tiny:v1", "/bin/busybox", "echo", "from-tiny"); out != "from-tiny" {
		t.Errorf("run tiny: %q", out)
	}
	cliFails(t, h, "must be lowercase", "image", "import", "Tiny", tarPath)
}

// At start the daemon re-creates what its store says should exist and is
// missing (a bridge deleted by hand while it was down) and deletes objects
// carrying its marks that its store does not know.
func TestRestartReconcilesKernel(t *testing.T) {
	_, h := single(t)
	cli(t, h, "network", "create", "-o", "com.docker.network.bridge.name=br-keep", "keep")
	cli(t, h, "run", "-d", "--name", "k1", "--net", "keep", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "k2", "--net", "keep", "busybox", "sleep", "1d")
	h.Kill()
	h.MustExec(t, "ip", "link", "del", "br-keep")
	// An orphan veth with vxnet's mark and a link without it.
	h.MustExec(t, "ip", "link", "add", "vxvdeadbeef01", "type", "veth", "peer", "name", "vxvdeadbeef02")
	h.MustExec(t, "ip", "link", "set", "vxvdeadbeef01", "alias", "vxnet:ep:0000000000000000000000000000000000000000000000000000000000000000")
	h.MustExec(t, "ip", "link", "add", "mine0", "type", "veth", "peer", "name", "mine1")
	h.Start()
	if _, code := h.Exec("ip", "link", "show", "br-keep"); code != 0 {
		t.Fatal("the deleted bridge was not re-created")
	}
	if !ping(t, h, "k1", "k2") {
		t.Error("containers do not reach each other after the bridge was re-created")
	}
	if _, code := h.Exec("ip", "link", "show", "vxvdeadbeef01"); code == 0 {
		t.Error("marked orphan veth survived the restart")
	}
	if _, code := h.Exec("ip", "link", "show", "mine0"); code != 0 {
		t.Error("an unmarked link was deleted")
	}
}
