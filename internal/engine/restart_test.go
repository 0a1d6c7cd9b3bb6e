package engine

import (
	"testing"

	"github.com/vxnet/vxnet/internal/model"
)

// Docker's restart manager decisions.
func TestPolicyRestarts(t *testing.T) {
	for _, tc := range []struct {
		p      model.RestartPolicy
		code   int
		manual bool
		count  int
		want   bool
	}{
		{model.RestartPolicy{}, 1, false, 0, false},
		{model.RestartPolicy{Name: model.RestartNo}, 1, false, 0, false},
		{model.RestartPolicy{Name: model.RestartAlways}, 0, false, 7, true},
		{model.RestartPolicy{Name: model.RestartAlways}, 0, true, 0, true}, // at daemon start
		{model.RestartPolicy{Name: model.RestartUnlessStopped}, 0, false, 0, true},
		{model.RestartPolicy{Name: model.RestartUnlessStopped}, 137, true, 0, false},
		{model.RestartPolicy{Name: model.RestartOnFailure}, 0, false, 0, false},
		{model.RestartPolicy{Name: model.RestartOnFailure}, 3, false, 100, true},
		{model.RestartPolicy{Name: model.RestartOnFailure, MaximumRetryCount: 2}, 3, false, 1, true},
		{model.RestartPolicy{Name: model.RestartOnFailure, MaximumRetryCount: 2}, 3, false, 2, false},
	} {
		if got := policyRestarts(tc.p, tc.code, tc.manual, tc.count); got != tc.want {
			t.Errorf("%+v exit %d manual %v count %d: %v, want %v", tc.p, tc.code, tc.manual, tc.count, got, tc.want)
		}
	}
}
