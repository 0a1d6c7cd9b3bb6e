package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/dockerplugin"
	"github.com/vxnet/vxnet/internal/engine"
)

// DefaultDockerPluginDir is where dockerd looks for plugin sockets.
const DefaultDockerPluginDir = "/run/docker/plugins"

// serveDockerPlugin serves Docker's network, IPAM and authorization plugin
// protocols on <dir>/vxnet.sock. With the default directory it serves only
// when the directory exists (dockerd makes it), and steps aside when
// another daemon already answers there: vxnet never needs dockerd. A
// directory given with --docker-plugin-dir is made, and failing to serve
// there stops the daemon. It returns a function that stops serving.
func serveDockerPlugin(ctx context.Context, cfg Config, eng *engine.Engine, log *slog.Logger) (func(), error) {
	dir := cfg.DockerPluginDir
	if dir == "" {
		return func() {}, nil
	}
	if !cfg.dockerPluginDirSet {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			log.Debug("docker plugin not served: no plugin directory (dockerd not running here)", "dir", dir)
			return func() {}, nil
		}
	}
	sock := filepath.Join(dir, dockerplugin.Name+".sock")
	ln, err := api.ListenUnix(sock)
	if err != nil {
		if !cfg.dockerPluginDirSet {
			log.Warn("docker plugin not served", "err", err)
			return func() {}, nil
		}
		return nil, err
	}
	p := dockerplugin.New(eng, log.With("component", "docker-plugin"))
	srv := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Info("docker network, IPAM and authorization plugin listening", "socket", sock)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		os.Remove(sock)
	}, nil
}
