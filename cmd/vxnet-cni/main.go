// Command vxnet-cni is the vxnet CNI plugin: install it as "vxnet" in the
// runtime's CNI plugin directory (e.g. /opt/cni/bin/vxnet). See
// internal/cniplugin.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/vxnet/vxnet/internal/cniplugin"
)

func main() {
	skel.PluginMainFuncs(cniplugin.Funcs(), cniplugin.Versions, "vxnet CNI plugin: attaches namespaces to vxnet networks")
}
