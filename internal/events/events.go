// Package events keeps the daemon's recent events (Docker's /events): a
// small in-memory ring of the last events and the subscribers that stream
// new ones. Publishing takes one short mutex and never blocks on a
// subscriber: one that does not keep up is dropped (its channel closed),
// as dockerd drops slow event readers.
package events

import (
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
)

// DefaultSize is the number of past events kept (dockerd keeps 256).
const DefaultSize = 1024

// subBuffer is how many events a subscriber may lag behind.
const subBuffer = 1024

// Log is the ring of recent events and their subscribers. The zero value
// is not usable; use New.
type Log struct {
	now func() time.Time

	mu   sync.Mutex
	ring []events.Message // oldest first once full, from next
	next int
	full bool
	subs map[chan events.Message]struct{}
}

// New returns a Log keeping the last size events (size <= 0: DefaultSize).
func New(size int, now func() time.Time) *Log {
	if size <= 0 {
		size = DefaultSize
	}
	if now == nil {
		now = time.Now
	}
	return &Log{now: now, ring: make([]events.Message, size), subs: map[chan events.Message]struct{}{}}
}

// Publish records m (its time set now when unset, scope "local" when
// unset) and hands it to every subscriber.
func (l *Log) Publish(m events.Message) {
	if m.TimeNano == 0 {
		t := l.now()
		m.Time, m.TimeNano = t.Unix(), t.UnixNano()
	}
	if m.Scope == "" {
		m.Scope = "local"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring[l.next] = m
	l.next = (l.next + 1) % len(l.ring)
	if l.next == 0 {
		l.full = true
	}
	for ch := range l.subs {
		select {
		case ch <- m:
		default:
			delete(l.subs, ch) // too slow: the stream ends
			close(ch)
		}
	}
}

// Subscribe returns the events kept so far (oldest first) and a channel of
// the events published from now on, with no gap or overlap between them.
// The channel is closed when the subscriber falls too far behind or after
// cancel.
func (l *Log) Subscribe() (past []events.Message, ch <-chan events.Message, cancel func()) {
	c := make(chan events.Message, subBuffer)
	l.mu.Lock()
	if l.full {
		past = append(past, l.ring[l.next:]...)
	}
	past = append(past, l.ring[:l.next]...)
	l.subs[c] = struct{}{}
	l.mu.Unlock()
	var once sync.Once
	return past, c, func() {
		once.Do(func() {
			l.mu.Lock()
			if _, ok := l.subs[c]; ok {
				delete(l.subs, c)
				close(c)
			}
			l.mu.Unlock()
		})
	}
}
