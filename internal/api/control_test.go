package api

import (
	"testing"

	"github.com/moby/moby/api/types/events"
)

// Docker's events filters: exact type/event/scope, ID or name prefix for
// objects, image name with or without tag, labels on attributes.
func TestMatchEvent(t *testing.T) {
	ctr := events.Message{Type: events.ContainerEventType, Action: events.ActionDie, Scope: "local",
		Actor: events.Actor{ID: "abcdef0123", Attributes: map[string]string{"name": "web", "image": "busybox:latest", "exitCode": "3"}}}
	conn := events.Message{Type: events.NetworkEventType, Action: events.ActionConnect, Scope: "local",
		Actor: events.Actor{ID: "net123", Attributes: map[string]string{"name": "front", "container": "abcdef0123"}}}
	tag := events.Message{Type: events.ImageEventType, Action: events.ActionTag, Scope: "local",
		Actor: events.Actor{ID: "sha256:99", Attributes: map[string]string{"name": "app:1"}}}
	health := events.Message{Type: events.ContainerEventType, Action: "health_status: healthy", Scope: "local",
		Actor: events.Actor{ID: "abcdef0123", Attributes: map[string]string{"name": "web"}}}
	for _, tc := range []struct {
		filter string
		m      events.Message
		want   bool
	}{
		{`{}`, ctr, true},
		{`{"type":{"container":true}}`, ctr, true},
		{`{"type":{"network":true}}`, ctr, false},
		{`{"event":{"die":true}}`, ctr, true},
		{`{"event":{"start":true}}`, ctr, false},
		{`{"event":{"health_status":true}}`, health, true},
		{`{"container":{"web":true}}`, ctr, true},
		{`{"container":{"abc":true}}`, ctr, true},
		{`{"container":{"bcd":true}}`, ctr, false},
		{`{"container":{"web":true}}`, conn, false},
		{`{"network":{"front":true}}`, conn, true},
		{`{"network":{"front":true}}`, ctr, false},
		{`{"image":{"busybox":true}}`, ctr, true},
		{`{"image":{"busybox:latest":true}}`, ctr, true},
		{`{"image":{"app":true}}`, tag, true},
		{`{"image":{"other":true}}`, tag, false},
		{`{"label":{"exitCode=3":true}}`, ctr, true},
		{`{"label":{"exitCode=4":true}}`, ctr, false},
		{`{"scope":{"swarm":true}}`, ctr, false},
		{`{"type":{"container":true},"event":{"die":true},"container":{"web":true}}`, ctr, true},
	} {
		f, err := parseFilters(tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.matchEvent(tc.m); got != tc.want {
			t.Errorf("filter %s on %s %s: %v, want %v", tc.filter, tc.m.Type, tc.m.Action, got, tc.want)
		}
	}
}
