package cli

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/testreq"
)

const dockerBin = "/usr/local/bin/docker"

// The real docker CLI talks to the vxnet API server.
func TestDockerCLICompat(t *testing.T) {
	if _, err := os.Stat(dockerBin); err != nil {
		testreq.Skip(t, "docker CLI not installed at "+dockerBin)
	}
	d := newDaemon(t)
	cfg := t.TempDir()
	docker := func(args ...string) (string, string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, dockerBin, append([]string{"-H", "unix://" + d.sock}, args...)...)
		cmd.Env = []string{"HOME=" + cfg, "DOCKER_CONFIG=" + cfg, "PATH=/usr/bin:/bin"}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("docker %v: %v", args, err)
		}
		return out.String(), errb.String(), code
	}
	mustDocker := func(args ...string) string {
		t.Helper()
		out, errOut, code := docker(args...)
		if code != 0 {
			t.Fatalf("docker %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}

	if out := mustDocker("network", "ls"); !regexp.MustCompile(`(?m)^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE\n[0-9a-f]{12}\s+bridge\s+bridge\s+local$`).MatchString(out) {
		t.Fatalf("docker network ls:\n%s", out)
	}
	id := strings.TrimSpace(mustDocker("network", "create", "--subnet", "203.0.113.0/24", "x"))
	if len(id) != 64 {
		t.Fatalf("docker network create printed %q", id)
	}
	if out := mustDocker("network", "inspect", "x"); !strings.Contains(out, `"Subnet": "203.0.113.0/24"`) || !strings.Contains(out, id) {
		t.Fatalf("docker network inspect:\n%s", out)
	}
	if out := mustDocker("network", "inspect", "-f", "{{.Name}} {{.Driver}}", "x"); out != "x bridge\n" {
		t.Fatalf("docker network inspect -f: %q", out)
	}
	if _, errOut, code := docker("network", "rm", "nope"); code != 1 || !strings.Contains(errOut, "network nope not found") {
		t.Fatalf("docker network rm nope: exit %d %q", code, errOut)
	}

	ctr := strings.TrimSpace(mustDocker("run", "-d", "--name", "c1", "--network", "x", "--ip", "203.0.113.9", "busybox", "sleep", "60"))
	if len(ctr) != 64 {
		t.Fatalf("docker run -d printed %q", ctr)
	}
	if out := mustDocker("inspect", "-f", "{{.NetworkSettings.Networks.x.IPAddress}}", "c1"); out != "203.0.113.9\n" {
		t.Fatalf("docker inspect -f: %q", out)
	}
	if out := mustDocker("ps"); !strings.Contains(out, ctr[:12]) || !strings.Contains(out, "c1") {
		t.Fatalf("docker ps:\n%s", out)
	}
	if out := mustDocker("exec", "c1", "echo", "hi"); out != "hi\n" {
		t.Fatalf("docker exec echo: %q", out)
	}
	out, errOut, code := docker("exec", "c1", "fail", "3")
	if code != 3 || out != "out\n" || errOut != "err\n" {
		t.Fatalf("docker exec fail 3: exit %d stdout %q stderr %q", code, out, errOut)
	}
	mustDocker("network", "connect", "bridge", "c1")
	mustDocker("network", "disconnect", "bridge", "c1")
	mustDocker("rm", "-f", "c1")
	mustDocker("network", "rm", "x")
	if out := mustDocker("version", "-f", "{{.Server.APIVersion}}"); out != "1.51\n" {
		t.Fatalf("docker version: %q", out)
	}
}

// Every create option vxnet does not implement is refused naming its field
// (exit 125, Docker's code for a daemon error in run), and nothing is left
// behind; a missing network is named as such, not taken for a missing image.
func TestDockerCLIRefusesUnsupportedOptions(t *testing.T) {
	if _, err := os.Stat(dockerBin); err != nil {
		testreq.Skip(t, "docker CLI not installed at "+dockerBin)
	}
	d := newDaemon(t)
	cfg := t.TempDir()
	docker := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, dockerBin, append([]string{"-H", "unix://" + d.sock}, args...)...)
		cmd.Env = []string{"HOME=" + cfg, "DOCKER_CONFIG=" + cfg, "PATH=/usr/bin:/bin"}
		var errb strings.Builder
		cmd.Stderr = &errb
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return errb.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("docker %v: %v", args, err)
		}
		return errb.String(), 0
	}
	cases := []struct {
		flags []string
		field string
	}{
		{[]string{"--log-driver", "syslog"}, "HostConfig.LogConfig.Type"},
		{[]string{"--userns", "host"}, "HostConfig.UsernsMode"},
		{[]string{"--blkio-weight", "100"}, "HostConfig.BlkioWeight"},
		{[]string{"--device-cgroup-rule", "c 1:3 rwm"}, "HostConfig.DeviceCgroupRules"},
		{[]string{"--health-cmd", "true"}, "Config.Healthcheck"},
	}
	for _, c := range cases {
		args := append(append([]string{"run", "-d"}, c.flags...), "busybox", "sleep", "60")
		errOut, code := docker(args...)
		want := "vxnet does not support " + c.field
		if code != 125 || !strings.Contains(errOut, want) {
			t.Errorf("docker %s: exit %d, stderr %q; want 125 and %q", strings.Join(args, " "), code, errOut, want)
		}
	}
	if errOut, code := docker("run", "-d", "--network", "nosuch", "busybox", "sleep", "60"); code != 125 ||
		!strings.Contains(errOut, "network nosuch not found") || strings.Contains(errOut, "image") {
		t.Errorf("docker run --network nosuch: exit %d, stderr %q", code, errOut)
	}
	if out := d.ok("ps", "-a", "-q"); out != "" {
		t.Errorf("refused runs left containers behind:\n%s", out)
	}
	// The defaults the CLI sends for options not given are accepted.
	if errOut, code := docker("run", "-d", "--restart", "no", "--log-driver", "json-file", "busybox", "sleep", "60"); code != 0 {
		t.Errorf("docker run -d with default options: exit %d %q", code, errOut)
	}
}
