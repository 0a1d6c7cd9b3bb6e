// Package store keeps vxnet's local-scope state (networks, endpoints,
// sandboxes, containers, IPAM state) in a bbolt file under the data root.
// Values are stored as JSON in one bucket per kind; domain types know
// nothing about persistence. Writes that belong together go in one
// transaction (Update), so a crash never leaves half an operation behind.
package store

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vxnet/vxnet/internal/model"
)

// Buckets.
const (
	Networks   = "networks"
	Endpoints  = "endpoints"
	Sandboxes  = "sandboxes"
	Containers = "containers"
	IPAM       = "ipam"
	Meta       = "meta"
	// Peers holds the last advertisement set of each global network.
	Peers = "peers"
	// Externals holds namespaces attached by other runtimes (CNI, Docker).
	Externals = "externals"
	// Held lists the global addresses this node holds without an endpoint
	// record (allocated, not yet recorded; or unrecorded, not yet
	// released), so a crash in between does not leak them.
	Held = "held"
)

var buckets = []string{Networks, Endpoints, Sandboxes, Containers, IPAM, Meta, Peers, Externals, Held}

// Store is a bbolt database. It is safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// Open opens (creating if needed) the database at path. It fails after a
// short timeout if another process holds the file.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Tx is a read-write transaction.
type Tx struct{ tx *bolt.Tx }

// Put stores v as JSON under bucket/key.
func (t *Tx) Put(bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s/%s: %w", bucket, key, err)
	}
	return t.tx.Bucket([]byte(bucket)).Put([]byte(key), b)
}

// Delete removes bucket/key; a missing key is fine.
func (t *Tx) Delete(bucket, key string) error {
	return t.tx.Bucket([]byte(bucket)).Delete([]byte(key))
}

// Update runs fn in one read-write transaction; an error rolls it back.
func (s *Store) Update(fn func(*Tx) error) error {
	return s.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Put stores one value.
func (s *Store) Put(bucket, key string, v any) error {
	return s.Update(func(t *Tx) error { return t.Put(bucket, key, v) })
}

// Delete removes one value.
func (s *Store) Delete(bucket, key string) error {
	return s.Update(func(t *Tx) error { return t.Delete(bucket, key) })
}

// Get decodes bucket/key into v; a missing key wraps model.ErrNotFound.
func (s *Store) Get(bucket, key string, v any) error {
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket)).Get([]byte(key))
		if b == nil {
			return fmt.Errorf("store: %s/%s: %w", bucket, key, model.ErrNotFound)
		}
		return json.Unmarshal(b, v)
	})
}

// List decodes every value of a bucket.
func List[T any](s *Store, bucket string) ([]T, error) {
	var out []T
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).ForEach(func(k, v []byte) error {
			var x T
			if err := json.Unmarshal(v, &x); err != nil {
				return fmt.Errorf("store: decode %s/%s: %w", bucket, k, err)
			}
			out = append(out, x)
			return nil
		})
	})
	return out, err
}
