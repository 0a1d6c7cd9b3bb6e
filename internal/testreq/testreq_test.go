package testreq

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestStrictFails runs a child test that meets a missing prerequisite, once
// lenient and once strict: the first skips, the second fails naming it.
func TestStrictFails(t *testing.T) {
	if os.Getenv("TESTREQ_CHILD") == "1" {
		Skipf(t, "needs %s", "the-missing-tool")
		return
	}
	for _, strict := range []string{"0", "1"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStrictFails$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTREQ_CHILD=1", "VXNET_TEST_STRICT="+strict)
		out, err := cmd.CombinedOutput()
		s := string(out)
		switch strict {
		case "0":
			if err != nil || !strings.Contains(s, "--- SKIP") || !strings.Contains(s, "needs the-missing-tool") {
				t.Fatalf("lenient run: err %v, output:\n%s", err, s)
			}
		case "1":
			if err == nil || !strings.Contains(s, "--- FAIL") || !strings.Contains(s, "missing prerequisite in a strict run") || !strings.Contains(s, "the-missing-tool") {
				t.Fatalf("strict run: err %v, output:\n%s", err, s)
			}
		}
	}
}
