package engine

import "sync"

// keyedMutex serialises operations per key (a container ID) without one
// lock per object living in the objects themselves. The zero value is
// ready to use; entries are dropped when nobody holds or waits for them.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// lock takes the lock of key and returns its unlock function.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	ent, ok := k.locks[key]
	if !ok {
		ent = &keyedEntry{}
		k.locks[key] = ent
	}
	ent.refs++
	k.mu.Unlock()
	ent.mu.Lock()
	return func() {
		ent.mu.Unlock()
		k.mu.Lock()
		ent.refs--
		if ent.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
