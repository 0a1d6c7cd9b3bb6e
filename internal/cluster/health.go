package cluster

// Whether the store answers, as this host sees it, and what it cannot do
// while it does not. The lease keepalives (every third of the node TTL) are
// the heartbeat: when none has been answered for two thirds of the TTL the
// store counts as unreachable, and the daemon says so in its log (WARN, at
// most once a minute), /info, `node ls` (the last view, marked stale) and
// `network inspect -v` (remote peers "unverified since T").

import (
	"time"
)

// StoreStatus is this host's view of the cluster store.
type StoreStatus struct {
	Reachable bool
	// LastContact is when the store last answered this host.
	LastContact time.Time
	// LastError is the error of the last failed heartbeat, if any since.
	LastError string
}

// Unreachable is the message for an unreachable store: what cannot be done
// and since when.
func (s StoreStatus) Unreachable() string {
	since := "never answered"
	if !s.LastContact.IsZero() {
		since = "no answer since " + s.LastContact.UTC().Format(time.RFC3339)
	}
	return "cluster store unreachable (" + since + "): global networks, global addresses and advertisements cannot change; remote peers are unverified"
}

// Status returns this host's view of the store.
func (c *Cluster) Status() StoreStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := StoreStatus{LastContact: c.lastContact, LastError: c.lastErr}
	s.Reachable = !c.closed && time.Since(c.lastContact) < max(c.opts.NodeTTL*2/3, 2*time.Second)
	return s
}

// contact records that the store answered.
func (c *Cluster) contact() {
	c.mu.Lock()
	c.lastContact, c.lastErr = time.Now(), ""
	c.mu.Unlock()
}

// contactFailed records a failed heartbeat.
func (c *Cluster) contactFailed(err error) {
	c.mu.Lock()
	c.lastErr = err.Error()
	c.mu.Unlock()
}

// watchHealth logs when the store becomes unreachable (WARN, repeated at
// most once a minute while it lasts) and when it answers again.
func (c *Cluster) watchHealth(done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	down := false
	var warned time.Time
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		s := c.Status()
		switch {
		case !s.Reachable && (!down || time.Since(warned) >= time.Minute):
			down, warned = true, time.Now()
			c.log.Warn(s.Unreachable(), "err", s.LastError)
		case s.Reachable && down:
			down = false
			c.log.Info("cluster store reachable again")
		}
	}
}
