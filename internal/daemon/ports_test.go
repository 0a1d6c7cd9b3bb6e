package daemon

import (
	"slices"
	"testing"

	"github.com/vxnet/vxnet/internal/model"
)

// An image's ExposedPorts (OCI form) become the ports -P publishes.
func TestImageExposedPorts(t *testing.T) {
	got := exposedPorts(map[string]struct{}{"80/tcp": {}, "53/udp": {}, "8080": {}, "9/sctp": {}, "x/tcp": {}, "70000/tcp": {}, "1/icmp": {}})
	slices.SortFunc(got, func(a, b model.Port) int { return int(a.Num) - int(b.Num) })
	want := []model.Port{{Num: 9, Proto: "sctp"}, {Num: 53, Proto: "udp"}, {Num: 80, Proto: "tcp"}, {Num: 8080, Proto: "tcp"}}
	if !slices.Equal(got, want) {
		t.Errorf("exposedPorts = %v, want %v", got, want)
	}
}
