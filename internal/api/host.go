package api

import (
	"os"
	"runtime"
	"strings"
)

func goArch() string    { return runtime.GOARCH }
func goVersion() string { return runtime.Version() }
func numCPU() int       { return runtime.NumCPU() }

// kernelVersion reads the running kernel's release, "" if unknown.
func kernelVersion() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
