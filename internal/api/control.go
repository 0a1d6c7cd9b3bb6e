package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/vxnet/vxnet/internal/model"
)

// Controller is an optional Backend ability, found by type assertion:
// pause and unpause, top and stats. Without it these are refused.
type Controller interface {
	PauseContainer(ctx context.Context, ref string) error
	UnpauseContainer(ctx context.Context, ref string) error
	// TopContainer runs ps with psArgs ("" = -ef) and keeps the container's
	// processes.
	TopContainer(ctx context.Context, ref, psArgs string) (container.TopResponse, error)
	// ContainerStats is one sample of the container's statistics, without
	// the previous sample's figures (the handler fills those in).
	ContainerStats(ctx context.Context, ref string) (container.StatsResponse, error)
}

// EventSource is an optional Backend ability, found by type assertion:
// the daemon's events (/events). Without it /events is refused.
type EventSource interface {
	// Events returns the events kept so far, oldest first, and a channel
	// of new ones (closed when the reader falls too far behind); cancel
	// ends the subscription.
	Events() (past []events.Message, ch <-chan events.Message, cancel func())
}

// EventPublisher is an optional Backend ability: events of what the API
// layer composes from several calls (restart is a stop and a start).
type EventPublisher interface {
	PublishEvent(typ events.Type, action events.Action, id string, attrs map[string]string)
}

// statsInterval is the period of streamed stats (dockerd's).
const statsInterval = time.Second

func (s *server) controller(w http.ResponseWriter) (Controller, bool) {
	c, ok := s.b.(Controller)
	if !ok {
		writeError(w, apiErr(model.ErrInvalid, "vxnet cannot pause, top or read stats of containers with this backend"))
	}
	return c, ok
}

func (s *server) containerPause(w http.ResponseWriter, r *http.Request) {
	if c, ok := s.controller(w); ok {
		noContent(w, c.PauseContainer(r.Context(), r.PathValue("id")))
	}
}

func (s *server) containerUnpause(w http.ResponseWriter, r *http.Request) {
	if c, ok := s.controller(w); ok {
		noContent(w, c.UnpauseContainer(r.Context(), r.PathValue("id")))
	}
}

func noContent(w http.ResponseWriter, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// containerTop is GET /containers/{id}/top?ps_args=ARGS.
func (s *server) containerTop(w http.ResponseWriter, r *http.Request) {
	c, ok := s.controller(w)
	if !ok {
		return
	}
	top, err := c.TopContainer(r.Context(), r.PathValue("id"), r.URL.Query().Get("ps_args"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, top)
}

// containerStats is GET /containers/{id}/stats?stream=BOOL&one-shot=BOOL.
// Each sample carries the previous one's CPU figures (precpu_stats) and
// time (preread), one a second while streaming. Without stream, the
// answer is the second sample (so the CPU share can be computed), or the
// first with one-shot.
func (s *server) containerStats(w http.ResponseWriter, r *http.Request) {
	c, ok := s.controller(w)
	if !ok {
		return
	}
	ctx, ref := r.Context(), r.PathValue("id")
	stream := r.URL.Query().Get("stream") == "" || boolParam(r, "stream")
	oneShot := boolParam(r, "one-shot")
	if oneShot && stream {
		writeError(w, apiErr(model.ErrInvalid, "cannot have stream=true and one-shot=true"))
		return
	}
	cur, err := c.ContainerStats(ctx, ref)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	t := time.NewTicker(statsInterval)
	defer t.Stop()
	first := true
	for {
		if stream || oneShot || !first {
			writeBody(w, cur)
			_ = rc.Flush()
			if !stream {
				return
			}
		}
		first = false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next, err := c.ContainerStats(ctx, ref)
		if err != nil {
			return // removed meanwhile
		}
		next.PreCPUStats, next.PreRead = cur.CPUStats, cur.Read
		cur = next
	}
}

// eventFilterTerms are the terms of Docker's events filters.
var eventFilterTerms = []string{"config", "container", "daemon", "event", "image", "label", "network", "node",
	"plugin", "scope", "secret", "service", "type", "volume"}

// events is GET /events?since=T&until=T&filters=F: the kept events since
// T (only when since is given), then new ones as they come, until the
// until time or the client leaves.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	src, ok := s.b.(EventSource)
	if !ok {
		writeError(w, apiErr(model.ErrInvalid, "vxnet does not serve events with this backend"))
		return
	}
	q := r.URL.Query()
	since, err := unixParam(q.Get("since"))
	if err != nil {
		writeError(w, apiErr(model.ErrInvalid, "invalid value for since: %q", q.Get("since")))
		return
	}
	until, err := unixParam(q.Get("until"))
	if err != nil {
		writeError(w, apiErr(model.ErrInvalid, "invalid value for until: %q", q.Get("until")))
		return
	}
	if !since.IsZero() && !until.IsZero() && until.Before(since) {
		writeError(w, apiErr(model.ErrInvalid, "`since` time (%s) cannot be after `until` time (%s)", q.Get("since"), q.Get("until")))
		return
	}
	f, err := parseFilters(q.Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	if err := f.validate(eventFilterTerms...); err != nil {
		writeError(w, err)
		return
	}
	past, ch, cancel := src.Events()
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	send := func(m events.Message) bool {
		t := time.Unix(0, m.TimeNano)
		if !until.IsZero() && t.After(until) {
			return false
		}
		if (since.IsZero() || !t.Before(since)) && f.matchEvent(m) {
			writeBody(w, m)
			_ = rc.Flush()
		}
		return true
	}
	if !since.IsZero() {
		for _, m := range past {
			if !send(m) {
				return
			}
		}
	}
	var end <-chan time.Time
	if !until.IsZero() {
		d := time.Until(until)
		if d <= 0 {
			return
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		end = timer.C
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-end:
			return
		case m, ok := <-ch:
			if !ok || !send(m) {
				return
			}
		}
	}
}

// matchEvent applies Docker's events filters: type, event and scope match
// exactly; container, network, volume and the other object terms match the
// actor's ID or name exactly or by prefix; image matches the image's
// name (with or without tag) or ID; label matches the actor's attributes.
func (f filters) matchEvent(m events.Message) bool {
	if !f.exact("type", string(m.Type)) || !f.exact("scope", m.Scope) {
		return false
	}
	if !f.exact("event", string(m.Action)) {
		a, _, _ := strings.Cut(string(m.Action), ":")
		if !f.exact("event", a) {
			return false
		}
	}
	for _, term := range []string{"container", "daemon", "network", "volume", "plugin", "node", "service", "secret", "config"} {
		if len(f[term]) > 0 {
			if !f.prefix(term, m.Actor.ID) && !f.prefix(term, m.Actor.Attributes["name"]) {
				return false
			}
		}
	}
	if len(f["image"]) > 0 {
		name := m.Actor.Attributes["image"]
		if m.Type == events.ImageEventType {
			name = m.Actor.Attributes["name"]
		}
		if !f.exact("image", m.Actor.ID) && !f.exact("image", name) && !f.exact("image", stripTag(name)) {
			return false
		}
	}
	return f.matchLabels(m.Actor.Attributes)
}

// exact: the term is absent or one of its values is v.
func (f filters) exact(term, v string) bool {
	vals := f[term]
	return len(vals) == 0 || vals[v]
}

// prefix: the term is absent or one of its values is v or a prefix of it.
func (f filters) prefix(term, v string) bool {
	vals := f[term]
	if len(vals) == 0 {
		return true
	}
	for x := range vals {
		if x != "" && strings.HasPrefix(v, x) {
			return true
		}
	}
	return false
}

// stripTag drops the tag of an image reference (keeping a registry port).
func stripTag(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i]
	}
	return ref
}
