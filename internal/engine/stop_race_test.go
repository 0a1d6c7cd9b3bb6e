package engine_test

import (
	"github.com/vxnet/vxnet/internal/engine/enginetest"
	"testing"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// A restart (stop, then start) while the watcher of the stopped run is
// still returning (the runtime drains that task's output first): the old
// run's exit is not taken for the new run's, and the new run gets its own
// watcher, so the new run's own exit is recorded with its code.
func TestRestartWhileOldWatcherReturns(t *testing.T) {
	rt := enginetest.NewRuntime()
	e := newTestEngine(t, t.TempDir(), rt).e
	c := mustRun(t, e, api.ContainerCreate{Name: "r", Network: "none"})

	gate := make(chan struct{})
	rt.GateNextWait(gate)
	one := 1
	if err := e.StopContainer(bg, c.ID, &one); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old run's watcher to see its exit", func() bool {
		return rt.GatedWaits() == 1
	})
	if err := e.StartContainer(bg, c.ID); err != nil {
		t.Fatal(err)
	}
	close(gate) // the old watcher returns the old run's 137 now

	// The new run ends by itself with 3: that is what inspect must say
	// (not the old run's 137, nor running forever for want of a watcher).
	// (Once the new run's watcher waits: the fake answers a Wait on a
	// process already gone with 0.)
	waitFor(t, "a watcher on the new run", func() bool {
		return rt.Waiting() == 1
	})
	rt.Exit(c.ID, 3)
	waitFor(t, "the new run's exit (3) recorded", func() bool {
		got, err := e.InspectContainer(bg, c.ID)
		return err == nil && got.Container.State == model.StateExited && got.Container.ExitCode == 3
	})
}
