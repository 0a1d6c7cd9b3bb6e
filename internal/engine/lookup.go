package engine

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/vxnet/vxnet/internal/model"
)

// newID returns a 64-hex random ID, like Docker's.
func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// validName is Docker's rule for container names; network names use it too.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// resolve finds an object by Docker's lookup order: full ID, exact name,
// unique ID prefix. An ambiguous prefix is an error. what names the kind
// for the messages ("network", "container").
func resolve[T any](ref string, all map[string]T, name func(T) string, notFound error) (T, error) {
	var zero T
	if ref == "" {
		return zero, notFound
	}
	if v, ok := all[ref]; ok {
		return v, nil
	}
	for _, v := range all {
		if name(v) == ref {
			return v, nil
		}
	}
	var ids []string
	for id := range all {
		if strings.HasPrefix(id, ref) {
			ids = append(ids, id)
		}
	}
	switch len(ids) {
	case 0:
		return zero, notFound
	case 1:
		return all[ids[0]], nil
	}
	sort.Strings(ids)
	return zero, errf(model.ErrInvalid, "multiple IDs found with provided prefix: %s", ref)
}

func (e *Engine) networkLocked(ref string) (model.Network, error) {
	return resolve(ref, e.networks, func(n model.Network) string { return n.Name },
		errf(model.ErrNotFound, "network %s not found", ref))
}

func (e *Engine) containerLocked(ref string) (model.Container, error) {
	ref = strings.TrimPrefix(ref, "/")
	return resolve(ref, e.containers, func(c model.Container) string { return c.Name },
		errf(model.ErrNotFound, "No such container: %s", ref))
}

// lookupContainer resolves ref under the engine lock and returns a copy
// of the container; nothing stays locked afterwards.
func (e *Engine) lookupContainer(ref string) (model.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.containerLocked(ref)
}

// endpointsOf returns the endpoints of a container in attach order.
func (e *Engine) endpointsOfLocked(ctrID string) []model.Endpoint {
	var out []model.Endpoint
	for _, ep := range e.endpoints {
		if ep.ContainerID == ctrID {
			out = append(out, ep)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Order < out[j].Order })
	return out
}

// endpointsOnLocked returns the endpoints on a network, by container name.
func (e *Engine) endpointsOnLocked(netID string) []model.Endpoint {
	var out []model.Endpoint
	for _, ep := range e.endpoints {
		if ep.NetworkID == netID {
			out = append(out, ep)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// randomName gives a readable name like Docker's "adjective_scientist".
func randomName(taken func(string) bool) string {
	left := []string{"brave", "calm", "eager", "fervent", "gifted", "happy", "jolly", "keen", "lucid", "modest",
		"nifty", "quirky", "relaxed", "serene", "tender", "upbeat", "vibrant", "witty", "zealous", "bold"}
	right := []string{"babbage", "curie", "darwin", "euler", "fermat", "galois", "hopper", "hypatia", "knuth",
		"lamport", "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wozniak", "yonath", "zuse"}
	for i := 0; ; i++ {
		var b [2]byte
		rand.Read(b[:])
		n := left[int(b[0])%len(left)] + "_" + right[int(b[1])%len(right)]
		if i > 20 {
			n = fmt.Sprintf("%s%d", n, i)
		}
		if !taken(n) {
			return n
		}
	}
}
