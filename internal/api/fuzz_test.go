package api

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vxnet/vxnet/internal/model"
)

// Decoding a network create request never panics; it either fails with
// ErrInvalid or yields a named request whose subnets are all valid.
func FuzzDecodeNetworkCreate(f *testing.F) {
	for _, s := range []string{
		`{"Name":"n","Driver":"bridge","IPAM":{"Driver":"default","Config":[{"Subnet":"192.0.2.0/24","IPRange":"192.0.2.0/25","Gateway":"192.0.2.1","AuxiliaryAddresses":{"r":"192.0.2.2"}}]},"Options":{"a":"b"},"Labels":{"k":"v"}}`,
		`{"Name":""}`, `{"Name":"x","EnableIPv6":true}`, `{"Name":"x","IPAM":{"Config":[{}]}}`,
		`{"Name":"x","IPAM":{"Config":[{"Subnet":"300.0.0.0/8"}]}}`, `[]`, `null`, ``, `{"Name":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeNetworkCreate(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			if statusOf(err) != 400 {
				t.Fatalf("status %d", statusOf(err))
			}
			return
		}
		if req.Name == "" {
			t.Fatal("accepted an empty name")
		}
		for _, c := range req.IPAM {
			if !c.Subnet.IsValid() {
				t.Fatal("accepted an invalid subnet")
			}
		}
	})
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{{"1.40", "1.51", true}, {"1.9", "1.10", true}, {"1.51", "1.51", false}, {"2.0", "1.99", false}} {
		if got := versionLess(tc.a, tc.b); got != tc.less {
			t.Errorf("versionLess(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{model.ErrInvalid, 400}, {model.ErrForbidden, 403}, {model.ErrNotFound, 404},
		{model.ErrConflict, 409}, {model.ErrUnavailable, 503}, {errors.New("x"), 500},
		{apiErr(model.ErrNotFound, "No such container: x"), 404},
	} {
		if got := statusOf(tc.err); got != tc.code {
			t.Errorf("statusOf(%v) = %d, want %d", tc.err, got, tc.code)
		}
	}
}
