package daemon

import (
	"context"
	"log/slog"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/engine"
)

// wireCluster connects cluster mode (etcd) when its flags are given.
func wireCluster(ctx context.Context, cfg Config, eopts *engine.Options, drivers *[]driver.Driver, w *wired, log *slog.Logger) error {
	return nil
}
