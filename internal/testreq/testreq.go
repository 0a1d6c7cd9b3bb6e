// Package testreq decides what a test does when something it needs is not
// there: root, a tool (etcd, the docker CLI, docker-registry), a binary.
//
// A developer's machine may lack some of them, so a test skips by default.
// CI must not: a skipped test there would pass a run in which the feature
// was never exercised. scripts/test.sh, run as root, sets
// VXNET_TEST_STRICT=1, and every missing prerequisite then fails the test
// with the reason.
package testreq

import (
	"fmt"
	"os"
	"testing"
)

// Strict reports whether missing prerequisites fail tests.
func Strict() bool { return os.Getenv("VXNET_TEST_STRICT") == "1" }

// Skip skips t (or fails it in a strict run), with args as t.Skip takes them.
func Skip(t testing.TB, args ...any) {
	t.Helper()
	msg := fmt.Sprint(args...)
	if Strict() {
		t.Fatalf("missing prerequisite in a strict run (VXNET_TEST_STRICT=1): %s", msg)
	}
	t.Skip(msg)
}

// Skipf is Skip with a format, as t.Skipf.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	Skip(t, fmt.Sprintf(format, args...))
}
