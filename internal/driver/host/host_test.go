package host

import (
	"context"
	"testing"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
)

func TestNoOps(t *testing.T) {
	ctx := context.Background()
	d := New()
	if d.Type() != "host" || d.Scope() != model.ScopeLocal {
		t.Fatalf("Type/Scope = %s/%s", d.Type(), d.Scope())
	}
	n := model.Network{ID: "h", Driver: Type}
	ep := model.Endpoint{ID: "e"}
	sb := model.Sandbox{HostNetwork: true}
	for i := 0; i < 2; i++ {
		if err := d.CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := d.Join(ctx, n, ep, driver.JoinInfo{Sandbox: sb}); err != nil {
			t.Fatal(err)
		}
		if err := d.Leave(ctx, n, ep, sb); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
}
