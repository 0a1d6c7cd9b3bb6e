package conformance

import (
	"testing"

	"github.com/vxnet/vxnet/internal/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }
