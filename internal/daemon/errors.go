package daemon

import (
	"errors"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/runtime/image"
)

// classed keeps a component's message and gives it an engine error class.
type classed struct {
	err   error
	class error
}

func (c classed) Error() string   { return c.err.Error() }
func (c classed) Unwrap() []error { return []error{c.err, c.class} }

func imageErr(err error) error {
	switch {
	case errors.Is(err, image.ErrImageNotFound):
		return classed{err, model.ErrNotFound}
	case errors.Is(err, image.ErrInvalid):
		return classed{err, model.ErrInvalid}
	}
	return err
}
