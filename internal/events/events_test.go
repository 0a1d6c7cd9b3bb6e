package events

import (
	"fmt"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"
)

func msg(i int) events.Message {
	return events.Message{Type: events.ContainerEventType, Action: events.ActionStart, Actor: events.Actor{ID: fmt.Sprint(i)}}
}

// The ring keeps the last events in order; a subscriber gets them, then
// the new ones, with no gap.
func TestRingAndSubscribe(t *testing.T) {
	now := time.Unix(100, 5)
	l := New(3, func() time.Time { return now })
	for i := 0; i < 5; i++ {
		l.Publish(msg(i))
	}
	past, ch, cancel := l.Subscribe()
	var ids []string
	for _, m := range past {
		ids = append(ids, m.Actor.ID)
	}
	if fmt.Sprint(ids) != "[2 3 4]" {
		t.Fatalf("past events %v, want [2 3 4]", ids)
	}
	if past[0].Time != 100 || past[0].TimeNano != now.UnixNano() || past[0].Scope != "local" {
		t.Errorf("time and scope not filled in: %+v", past[0])
	}
	l.Publish(msg(5))
	if m := <-ch; m.Actor.ID != "5" {
		t.Errorf("streamed %q, want 5", m.Actor.ID)
	}
	cancel()
	cancel()
	if _, ok := <-ch; ok {
		t.Error("channel open after cancel")
	}
	l.Publish(msg(6)) // no subscriber left: must not block or panic
}

// A subscriber that does not read is dropped instead of blocking
// publishers.
func TestSlowSubscriberDropped(t *testing.T) {
	l := New(4, nil)
	_, ch, cancel := l.Subscribe()
	defer cancel()
	for i := 0; i < subBuffer+10; i++ {
		l.Publish(msg(i))
	}
	n := 0
	for range ch {
		n++
	}
	if n != subBuffer {
		t.Errorf("slow subscriber got %d events before its stream ended, want %d", n, subBuffer)
	}
}
