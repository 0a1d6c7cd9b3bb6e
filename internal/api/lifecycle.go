package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/sys/signal"

	"github.com/vxnet/vxnet/internal/model"
)

// containerKill is POST /containers/{id}/kill?signal=S (default SIGKILL;
// names with or without SIG, or numbers).
func (s *server) containerKill(w http.ResponseWriter, r *http.Request) {
	lc, ok := s.b.(Lifecycle)
	if !ok {
		writeError(w, apiErr(model.ErrInvalid, "vxnet cannot signal containers with this backend"))
		return
	}
	// Every refusal reads "cannot kill container: NAME: why", as dockerd's.
	name := r.PathValue("id")
	sig := syscall.SIGKILL
	if v := r.URL.Query().Get("signal"); v != "" {
		var err error
		if sig, err = signal.ParseSignal(v); err != nil {
			writeError(w, apiErr(model.ErrInvalid, "cannot kill container: %s: %s", name, err.Error()))
			return
		}
	}
	if err := lc.KillContainer(r.Context(), name, sig); err != nil {
		if !strings.HasPrefix(err.Error(), "cannot kill container: ") {
			err = fmt.Errorf("cannot kill container: %s: %w", name, err)
		}
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// containerRestart is POST /containers/{id}/restart?t=N: stop (if
// running) then start.
func (s *server) containerRestart(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("id")
	timeout, err := stopTimeout(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if r.URL.Query().Get("signal") != "" {
		writeError(w, apiErr(model.ErrInvalid, "vxnet does not support restart --signal"))
		return
	}
	v, err := s.b.InspectContainer(r.Context(), ref)
	if err != nil {
		writeError(w, err)
		return
	}
	if v.Container.State == model.StateRunning {
		if err := s.b.StopContainer(r.Context(), ref, timeout); err != nil {
			writeError(w, err)
			return
		}
	}
	if err := s.b.StartContainer(r.Context(), ref); err != nil {
		writeError(w, err)
		return
	}
	if p, ok := s.b.(EventPublisher); ok {
		c := v.Container
		p.PublishEvent(events.ContainerEventType, events.ActionRestart, c.ID, map[string]string{"image": c.Image, "name": c.Name})
	}
	w.WriteHeader(http.StatusNoContent)
}

// containerPrune is POST /containers/prune: removes every container that
// is not running. No filters are supported (refused, not ignored).
func (s *server) containerPrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	if err := f.validate(); err != nil {
		writeError(w, err)
		return
	}
	views, err := s.b.ListContainers(r.Context(), true)
	if err != nil {
		writeError(w, err)
		return
	}
	out := container.PruneReport{ContainersDeleted: []string{}}
	for _, v := range views {
		if v.Container.State == model.StateRunning {
			continue
		}
		if err := s.b.RemoveContainer(r.Context(), v.Container.ID, false); err != nil {
			if errors.Is(err, model.ErrNotFound) {
				continue // gone meanwhile (auto-removed)
			}
			writeError(w, err)
			return
		}
		out.ContainersDeleted = append(out.ContainersDeleted, v.Container.ID)
	}
	writeJSON(w, http.StatusOK, out)
}

// logOptions reads docker logs' query parameters; ok is false when none
// but follow is set (the plain Logs call does).
func logOptions(r *http.Request) (LogOptions, bool, error) {
	q := r.URL.Query()
	o := LogOptions{Follow: boolParam(r, "follow"), Tail: -1, Timestamps: boolParam(r, "timestamps")}
	if boolParam(r, "details") {
		return o, false, apiErr(model.ErrInvalid, "vxnet does not support logs --details")
	}
	if t := q.Get("tail"); t != "" && t != "all" {
		n, err := strconv.Atoi(t)
		if err != nil {
			return o, false, apiErr(model.ErrInvalid, "invalid value for tail: %q", t)
		}
		if n >= 0 {
			o.Tail = n
		}
	}
	var err error
	if o.Since, err = unixParam(q.Get("since")); err != nil {
		return o, false, apiErr(model.ErrInvalid, "invalid value for since: %q", q.Get("since"))
	}
	if o.Until, err = unixParam(q.Get("until")); err != nil {
		return o, false, apiErr(model.ErrInvalid, "invalid value for until: %q", q.Get("until"))
	}
	set := o.Timestamps || o.Tail >= 0 || !o.Since.IsZero() || !o.Until.IsZero()
	return o, set, nil
}

// unixParam parses Docker's "SECONDS[.NANOSECONDS]" time parameter ("" and
// "0" are unset).
func unixParam(v string) (time.Time, error) {
	if v == "" || v == "0" {
		return time.Time{}, nil
	}
	secs, frac, _ := strings.Cut(v, ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	var nsec int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		if nsec, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return time.Time{}, err
		}
	}
	return time.Unix(sec, nsec), nil
}
