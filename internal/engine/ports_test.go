package engine_test

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
	"github.com/vxnet/vxnet/internal/harness/freeport"
	"github.com/vxnet/vxnet/internal/model"
)

func tcp(n uint16) model.Port { return model.Port{Num: n, Proto: "tcp"} }

func bind(p model.Port, first, last uint16) model.PortBinding {
	return model.PortBinding{Port: p, HostPortFirst: first, HostPortLast: last}
}

func TestPublishedPortsAllocation(t *testing.T) {
	env := newTestEngine(t, t.TempDir(), enginetest.NewRuntime())
	e := env.e
	mustNet(t, e, api.NetworkCreate{Name: "n", IPAM: []model.IPAMConfig{{Subnet: pfx("10.4.0.0/24")}}})
	p := freeport.Stable(t)
	a := mustRun(t, e, api.ContainerCreate{Name: "a", Network: "n", PortBindings: []model.PortBinding{bind(tcp(80), p, p)}})
	fw := published(env.fw)
	if len(fw) != 1 || fw[0].HostPort != p || fw[0].ContainerPort != 80 || fw[0].ContainerIP != addr("10.4.0.2") {
		t.Fatalf("firewall ports = %+v", fw)
	}

	// The same port again: refused at start with Docker's words, nothing held.
	b, err := e.CreateContainer(bg, api.ContainerCreate{Name: "b", Image: "busybox", Cmd: []string{"sleep", "1d"}, Network: "n",
		PortBindings: []model.PortBinding{bind(tcp(81), 0, 0), bind(tcp(80), p, p)}})
	if err != nil {
		t.Fatal(err)
	}
	err = e.StartContainer(bg, b.ID)
	if err == nil || !strings.Contains(err.Error(), "driver failed programming external connectivity on endpoint b") ||
		!strings.Contains(err.Error(), "Bind for 0.0.0.0:"+itoa(p)+" failed: port is already allocated") {
		t.Fatalf("second start: %v", err)
	}
	if v, _ := e.InspectContainer(bg, "b"); v.Container.State == model.StateRunning || len(v.Container.Ports) != 0 {
		t.Errorf("refused container: state %s ports %v", v.Container.State, v.Container.Ports)
	}
	if len(published(env.fw)) != 1 {
		t.Errorf("firewall ports after refusal = %+v", published(env.fw))
	}
	// A UDP port with the same number is another port.
	mustRun(t, e, api.ContainerCreate{Name: "u", Network: "n", PortBindings: []model.PortBinding{
		bind(model.Port{Num: 53, Proto: "udp"}, p, p)}})

	// Stopping a gives the port back; b now starts with it and a random one.
	if err := e.StopContainer(bg, "a", nil); err != nil {
		t.Fatal(err)
	}
	if err := e.StartContainer(bg, b.ID); err != nil {
		t.Fatal(err)
	}
	v, _ := e.InspectContainer(bg, "b")
	if len(v.Container.Ports) != 2 || v.Container.Ports[1].HostPort != p || v.Container.Ports[0].HostPort == 0 {
		t.Errorf("b ports = %+v", v.Container.Ports)
	}
	if err := e.StartContainer(bg, a.ID); err == nil {
		t.Error("a restarted onto b's port")
	}

	// A process on the host holding a port keeps it.
	held := freeport.Stable(t)
	l, err := net.Listen("tcp4", "0.0.0.0:"+itoa(held))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, _ := e.CreateContainer(bg, api.ContainerCreate{Name: "c", Image: "busybox", Cmd: []string{"sleep", "1d"}, Network: "n",
		PortBindings: []model.PortBinding{bind(tcp(80), held, held)}})
	if err := e.StartContainer(bg, c.ID); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("start on a port a process holds: %v", err)
	}
	// A range skips what is taken.
	d := mustRun(t, e, api.ContainerCreate{Name: "d", Network: "n", PortBindings: []model.PortBinding{bind(tcp(80), held, held+1)}})
	v, _ = e.InspectContainer(bg, d.ID)
	if len(v.Container.Ports) != 1 || v.Container.Ports[0].HostPort != held+1 {
		t.Errorf("range binding got %+v, want port %d", v.Container.Ports, held+1)
	}
	// Removing a container gives its ports back.
	if err := e.RemoveContainer(bg, "d", true); err != nil {
		t.Fatal(err)
	}
	for _, m := range published(env.fw) {
		if m.ID == d.ID {
			t.Errorf("removed container still published: %+v", m)
		}
	}
}

func TestPublishedPortsRefused(t *testing.T) {
	env := newTestEngine(t, t.TempDir(), enginetest.NewRuntime())
	e := env.e
	mustNet(t, e, api.NetworkCreate{Name: "in", Internal: true})
	pb := []model.PortBinding{bind(tcp(80), 8080, 8080)}
	for net, want := range map[string]string{
		"host": "network mode host", "none": "network mode none", "in": "internal network in",
	} {
		_, err := e.CreateContainer(bg, api.ContainerCreate{Image: "busybox", Network: net, PortBindings: pb})
		wantErr(t, err, model.ErrInvalid, want)
	}
	_, err := e.CreateContainer(bg, api.ContainerCreate{Image: "busybox", PortBindings: []model.PortBinding{
		{Port: model.Port{Num: 53, Proto: "sctp"}, HostIP: netip.IPv6Loopback(), HostPortFirst: 53, HostPortLast: 53}}})
	wantErr(t, err, model.ErrInvalid, "cannot publish SCTP ports on ::1")
	if cs, _ := e.ListContainers(bg, true); len(cs) != 0 {
		t.Errorf("refused creates left %d containers", len(cs))
	}
}

// -P publishes every exposed port on a random port; a daemon restart keeps
// the ports of running containers.
func TestPublishAllAndRestart(t *testing.T) {
	dir := t.TempDir()
	rt := enginetest.NewRuntime()
	env := newTestEngine(t, dir, rt)
	c := mustRun(t, env.e, api.ContainerCreate{Name: "c", PublishAll: true,
		ExposedPorts: []model.Port{tcp(80), {Num: 53, Proto: "udp"}}})
	v, _ := env.e.InspectContainer(bg, c.ID)
	if len(v.Container.Ports) != 2 {
		t.Fatalf("-P ports = %+v", v.Container.Ports)
	}
	before := v.Container.Ports
	env.e.Close()
	env.st.Close()
	env2 := newTestEngine(t, dir, rt)
	v, _ = env2.e.InspectContainer(bg, c.ID)
	if len(v.Container.Ports) != 2 || v.Container.Ports[0] != before[0] || v.Container.Ports[1] != before[1] {
		t.Errorf("ports after restart = %+v, want %+v", v.Container.Ports, before)
	}
	if len(published(env2.fw)) != 2 {
		t.Errorf("firewall after restart = %+v", published(env2.fw))
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// A runtime that does not answer at start does not make running containers
// exited: a short silence is waited out; a longer one leaves the record
// (and its published ports) as it is until the exit watcher hears from
// the runtime, which then reports the real exit.
func TestStartRuntimeSilent(t *testing.T) {
	dir := t.TempDir()
	rt := enginetest.NewRuntime()
	env := newTestEngine(t, dir, rt)
	c := mustRun(t, env.e, api.ContainerCreate{Name: "c", PublishAll: true, ExposedPorts: []model.Port{tcp(80)}})
	d := mustRun(t, env.e, api.ContainerCreate{Name: "d", PublishAll: true, ExposedPorts: []model.Port{tcp(81)}})
	for _, fails := range []int{2, 1000} {
		env.e.Close()
		env.st.Close()
		rt.FailStates(fails)
		env = newTestEngine(t, dir, rt)
		for _, x := range []model.Container{c, d} {
			v, err := env.e.InspectContainer(bg, x.ID)
			if err != nil {
				t.Fatal(err)
			}
			if v.Container.State != model.StateRunning || len(v.Container.Ports) != 1 {
				t.Fatalf("%d failed state calls at start: %s is %s with ports %+v", fails, x.Name, v.Container.State, v.Container.Ports)
			}
		}
		if len(published(env.fw)) != 2 {
			t.Fatalf("%d failed state calls at start: firewall %+v", fails, published(env.fw))
		}
	}
	rt.FailStates(0)
	rt.Exit(c.ID, 3)
	waitFor(t, "the exit recorded with code 3 and the port released", func() bool {
		v, _ := env.e.InspectContainer(bg, c.ID)
		return v.Container.State == model.StateExited && v.Container.ExitCode == 3 && len(published(env.fw)) == 1
	})
}
