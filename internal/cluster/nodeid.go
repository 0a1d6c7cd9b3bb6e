package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

const nodeIDFile = "node-id"

// LoadOrCreateNodeID returns the node ID kept in dataRoot/node-id, creating
// the file with a new random ID (32 hex digits) the first time. The ID
// survives daemon restarts so the node keeps its identity in the cluster.
func LoadOrCreateNodeID(dataRoot string) (string, error) {
	path := filepath.Join(dataRoot, nodeIDFile)
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if id == "" || strings.ContainsAny(id, "/ \t\n") {
			return "", fmt.Errorf("cluster: load node ID: %s holds no valid ID", path)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("cluster: load node ID: %w", err)
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("cluster: create node ID: %w", err)
	}
	id := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(dataRoot, 0o700); err != nil {
		return "", fmt.Errorf("cluster: create node ID: %w", err)
	}
	tmp, err := os.CreateTemp(dataRoot, nodeIDFile+".tmp*")
	if err != nil {
		return "", fmt.Errorf("cluster: create node ID: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(id + "\n"); err != nil {
		tmp.Close()
		return "", fmt.Errorf("cluster: create node ID: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("cluster: create node ID: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("cluster: create node ID: %w", err)
	}
	// Link, not rename: if another process created the file meanwhile, its
	// ID wins and we read it back.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateNodeID(dataRoot)
		}
		return "", fmt.Errorf("cluster: create node ID: %w", err)
	}
	return id, nil
}
