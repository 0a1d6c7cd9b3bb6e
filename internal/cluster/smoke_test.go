package cluster

import (
	"path/filepath"
	"testing"
)

func TestSmokeSingleMember(t *testing.T) {
	p := freePorts(t, 2)
	o := baseOpts(t, "n1")
	o.DataDir = filepath.Join(t.TempDir(), "etcd")
	o.Init = true
	o.ClientPort, o.PeerPort = p[0], p[1]
	c := open(t, o)
	ctx := ctxT(t)
	n, err := c.CreateNetwork(ctx, testNet("a"))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(n.VNI)
	ns, err := c.Nodes(ctx)
	t.Log(ns, err)
}
