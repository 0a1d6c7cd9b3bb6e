// Package e2e holds vxnet's end-to-end tests: real daemons in network
// namespaces built by internal/harness, driven through the vxnet CLI, with
// behaviour checked by traffic (a ping that must pass or fail, a source
// address seen by an "outside" host) rather than by inspecting rules.
//
// They need root; without it every test skips with the reason. A suite
// leak check (harness.Main) fails the run if any namespace, mount, runc
// container or process is left behind.
package e2e
