package api

import (
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// allCreateFields lists every leaf field name the create check can report.
func allCreateFields() map[string]bool {
	all := map[string]bool{}
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
				walk(prefix, sf.Type)
				continue
			}
			name := sf.Name
			if tag, _, _ := strings.Cut(sf.Tag.Get("json"), ","); tag != "" && tag != "-" {
				name = tag
			}
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && !isLeafStruct(ft) {
				walk(prefix+"."+name, ft)
				continue
			}
			all[prefix+"."+name] = true
		}
	}
	walk("Config", reflect.TypeOf(container.Config{}))
	walk("HostConfig", reflect.TypeOf(container.HostConfig{}))
	walk("NetworkingConfig.EndpointsConfig", reflect.TypeOf(network.EndpointSettings{}))
	return all
}

// The tables name real fields (a typo would silently refuse or accept).
func TestCreateFieldTablesNameRealFields(t *testing.T) {
	all := allCreateFields()
	for f := range supportedCreateFields {
		if !all[f] {
			t.Errorf("supportedCreateFields: %s is no field of the create request", f)
		}
	}
	for f := range pendingCreateFields {
		if !all[f] {
			t.Errorf("pendingCreateFields: %s is no field of the create request", f)
		}
		if supportedCreateFields[f] {
			t.Errorf("%s is both supported and pending", f)
		}
	}
	for f := range defaultCreateValues {
		if !all[f] {
			t.Errorf("defaultCreateValues: %s is no field of the create request", f)
		}
	}
}

func TestCreateFieldsRefused(t *testing.T) {
	one := int64(1)
	minus := int64(-1)
	no := false
	cases := []struct {
		req  container.CreateRequest
		want string // "" accepted
	}{
		{container.CreateRequest{Config: &container.Config{Image: "busybox", Cmd: []string{"true"}, Labels: map[string]string{}}}, ""},
		{container.CreateRequest{Config: &container.Config{Image: "busybox"}, HostConfig: &container.HostConfig{
			RestartPolicy: container.RestartPolicy{Name: "no"}, Resources: container.Resources{MemorySwappiness: &minus, OomKillDisable: &no},
			LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{}}}}, ""},
		{container.CreateRequest{Config: &container.Config{Image: "busybox"}, HostConfig: &container.HostConfig{UsernsMode: "host"}}, "vxnet does not support HostConfig.UsernsMode"},
		{container.CreateRequest{Config: &container.Config{Image: "busybox"}, HostConfig: &container.HostConfig{
			Resources: container.Resources{DeviceCgroupRules: []string{"c 1:3 rwm"}}}}, "vxnet does not support HostConfig.DeviceCgroupRules"},
		{container.CreateRequest{Config: &container.Config{Image: "busybox"}, HostConfig: &container.HostConfig{
			Resources: container.Resources{BlkioWeight: uint16(one)}}}, "vxnet does not support HostConfig.BlkioWeight"},
		{container.CreateRequest{Config: &container.Config{Image: "busybox"}, HostConfig: &container.HostConfig{
			LogConfig: container.LogConfig{Config: map[string]string{"max-size": "1m"}}}}, "vxnet does not support HostConfig.LogConfig.Config"},
		{container.CreateRequest{Config: &container.Config{Image: "busybox", Healthcheck: &container.HealthConfig{Test: []string{"NONE"}}}},
			"vxnet does not support Config.Healthcheck"},
		{container.CreateRequest{Config: &container.Config{Image: "busybox"}, NetworkingConfig: &network.NetworkingConfig{
			EndpointsConfig: map[string]*network.EndpointSettings{"n": {DriverOpts: map[string]string{"a": "b"}}}}},
			"vxnet does not support the endpoint driver option a"},
		{container.CreateRequest{Config: &container.Config{Image: "busybox"}, NetworkingConfig: &network.NetworkingConfig{
			EndpointsConfig: map[string]*network.EndpointSettings{"n": {IPAMConfig: &network.EndpointIPAMConfig{LinkLocalIPs: nil}, Aliases: []string{"a"}}}}}, ""},
	}
	for i, c := range cases {
		_, err := containerCreateRequest("", c.req)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("case %d: refused: %v", i, err)
		case c.want != "" && (err == nil || err.Error() != c.want || statusOf(err) != 400):
			t.Errorf("case %d: err %v, want 400 %q", i, err, c.want)
		}
	}
}
