//go:build vxnet_bench_plaintext

package cluster

// Compiled only with -tags vxnet_bench_plaintext, by the benchmark that
// measures TLS side by side with plaintext (internal/e2e, TestBenchTLS):
// the embedded etcd's client and peer links are plain HTTP and etcd
// authentication stays off. No flag or environment variable reaches this;
// a normal build cannot run in plaintext.
func init() { benchPlaintext = true }
