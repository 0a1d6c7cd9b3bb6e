package engine

import (
	"slices"
	"testing"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// Docker's rules for the command of a container from its request and its
// image: the request's entrypoint replaces the image's and drops the
// image's Cmd; [""] clears the entrypoint; user, working directory, stop
// signal default to the image's; labels merge.
func TestMergeImageConfig(t *testing.T) {
	img := ImageInfo{Entrypoint: []string{"/ep"}, Cmd: []string{"def"}, User: "u", WorkingDir: "/w", StopSignal: "SIGINT",
		Labels: map[string]string{"a": "img", "b": "img"}}
	for _, tc := range []struct {
		name       string
		ep, cmd    []string
		wantEp     []string
		wantCmd    []string
		wantLabels map[string]string
	}{
		{"image's both", nil, nil, []string{"/ep"}, []string{"def"}, nil},
		{"own cmd keeps the image's entrypoint", nil, []string{"x"}, []string{"/ep"}, []string{"x"}, nil},
		{"own entrypoint drops the image's cmd", []string{"sh"}, nil, []string{"sh"}, nil, nil},
		{"own entrypoint and cmd", []string{"sh"}, []string{"-c", "x"}, []string{"sh"}, []string{"-c", "x"}, nil},
		{"entrypoint cleared", []string{""}, []string{"echo"}, nil, []string{"echo"}, nil},
		{"entrypoint cleared, no cmd", []string{""}, nil, nil, nil, nil},
	} {
		req := api.ContainerCreate{Cmd: tc.cmd, Run: model.RunConfig{Entrypoint: tc.ep, Labels: map[string]string{"b": "own"}}}
		cmd, run := mergeImageConfig(req, img)
		if !slices.Equal(run.Entrypoint, tc.wantEp) || !slices.Equal(cmd, tc.wantCmd) {
			t.Errorf("%s: entrypoint %q cmd %q, want %q %q", tc.name, run.Entrypoint, cmd, tc.wantEp, tc.wantCmd)
		}
		if run.User != "u" || run.WorkingDir != "/w" || run.StopSignal != "SIGINT" || run.Labels["a"] != "img" || run.Labels["b"] != "own" {
			t.Errorf("%s: defaults from the image: %+v", tc.name, run)
		}
	}
	req := api.ContainerCreate{Run: model.RunConfig{User: "me", WorkingDir: "/mine", StopSignal: "SIGHUP"}}
	if _, run := mergeImageConfig(req, img); run.User != "me" || run.WorkingDir != "/mine" || run.StopSignal != "SIGHUP" {
		t.Errorf("the request's own values: %+v", run)
	}
}
