package engine

import (
	"maps"

	"github.com/moby/moby/api/types/events"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// The engine publishes Docker's events (/events) for what it does to
// containers, networks and images into its in-memory log (package
// events). Publishing touches only that log's mutex, never mu or I/O.
// Containers join their networks at create and leave them at removal (not
// at start and stop as in dockerd), so network connect and disconnect
// events come then.

// Events returns the events kept so far and a stream of new ones (see
// events.Log.Subscribe).
func (e *Engine) Events() (past []events.Message, ch <-chan events.Message, cancel func()) {
	return e.events.Subscribe()
}

// PublishEvent records an event of another component (images, volumes).
func (e *Engine) PublishEvent(typ events.Type, action events.Action, id string, attrs map[string]string) {
	e.events.Publish(events.Message{Type: typ, Action: action, Actor: events.Actor{ID: id, Attributes: attrs}})
}

// containerEvent publishes a container event with Docker's attributes
// (image, name) plus extra ones.
func (e *Engine) containerEvent(c model.Container, action events.Action, extra map[string]string) {
	attrs := map[string]string{"image": c.Image, "name": c.Name}
	maps.Copy(attrs, extra)
	e.PublishEvent(events.ContainerEventType, action, c.ID, attrs)
}

// networkEvent publishes a network event (name and driver type, and the
// container for connect and disconnect).
func (e *Engine) networkEvent(n model.Network, action events.Action, containerID string) {
	attrs := map[string]string{"name": n.Name, "type": n.Driver}
	if containerID != "" {
		attrs["container"] = containerID
	}
	e.PublishEvent(events.NetworkEventType, action, n.ID, attrs)
}

var (
	_ api.EventSource    = (*Engine)(nil)
	_ api.Controller     = (*Engine)(nil)
	_ api.EventPublisher = (*Engine)(nil)
)
