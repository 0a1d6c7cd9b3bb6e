package conformance

import (
	"archive/tar"
	"bytes"
)

// greetTar is a tar holding "greet" ("hi\n"), for docker cp - CTR:DIR.
var greetTar = func() string {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "greet", Mode: 0o644, Size: 3})
	tw.Write([]byte("hi\n"))
	tw.Close()
	return b.String()
}()

// Volumes (local driver), anonymous volumes with --rm, and docker cp
// through stdin and stdout.
var dataGroups = []Group{{
	Name: "volumes",
	Cases: []Case{
		{Name: "create", Args: []string{"volume", "create", "cv1"}, Out: Line("cv1")},
		{Name: "ls filter name", Args: []string{"volume", "ls", "-q", "--filter", "name=cv1"}, Out: Line("cv1")},
		{Name: "inspect driver", Args: []string{"volume", "inspect", "-f", "{{.Driver}} {{.Scope}}", "cv1"}, Out: Line("local local")},
		{Name: "write through a container", Args: []string{"run", "--rm", "-v", "cv1:/d", "busybox", "sh", "-c", "echo kept > /d/f"}},
		{Name: "read through another", Args: []string{"run", "--rm", "-v", "cv1:/d:ro", "busybox", "cat", "/d/f"}, Out: Line("kept")},
		{Name: "read-only", Args: []string{"run", "--rm", "-v", "cv1:/d:ro", "busybox", "touch", "/d/g"}, Code: 1,
			Err: Line("touch: /d/g: Read-only file system")},
		{Name: "holder", Args: []string{"run", "-d", "--name", "vc", "-v", "cv1:/d", "busybox", "sleep", "1d"}, Out: Re(id64), Save: "vc"},
		{Name: "inspect mounts", Args: []string{"inspect", "-f", "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}", "vc"}, Out: Line("volume cv1 /d true")},
		{Name: "rm in use", Args: []string{"volume", "rm", "cv1"}, Code: 1, Err: daemonErr("remove cv1: volume is in use - [${vc}]")},
		{Name: "rm holder", Args: []string{"rm", "-f", "vc"}, Out: Line("vc")},
		{Name: "rm", Args: []string{"volume", "rm", "cv1"}, Out: Line("cv1")},
		{Name: "inspect missing", Args: []string{"volume", "inspect", "cv1"}, Code: 1, Out: Any(), Err: Has("no such volume")},
		{Name: "anonymous with --rm", Args: []string{"run", "--rm", "-v", "/anon", "busybox", "sh", "-c", "echo x > /anon/x"}},
		{Name: "none left", Args: []string{"volume", "ls", "-q"}},
		{Name: "bind option refused", Args: []string{"run", "--rm", "-v", "/tmp:/t:z", "busybox", "true"}, Code: 125,
			Err: runErr(`vxnet does not support the SELinux bind option "z" (/tmp:/t:z)`)},
	},
	Cleanup: [][]string{{"rm", "-f", "vc"}, {"volume", "rm", "-f", "cv1"}},
}, {
	Name:  "cp",
	Setup: [][]string{{"run", "-d", "--name", "cpc", "busybox", "sleep", "1d"}},
	Cases: []Case{
		{Name: "tar from stdin", Args: []string{"cp", "-", "cpc:/tmp"}, Stdin: greetTar},
		{Name: "copied in", Args: []string{"exec", "cpc", "cat", "/tmp/greet"}, Out: Line("hi")},
		{Name: "tar to stdout", Args: []string{"cp", "cpc:/tmp/greet", "-"}, Out: Has("greet", "hi\n")},
		{Name: "missing path", Args: []string{"cp", "cpc:/nosuch", "-"}, Code: 1, Err: Has("Could not find the file /nosuch in container cpc")},
		{Name: "into a file", Args: []string{"cp", "-", "cpc:/tmp/greet"}, Stdin: greetTar, Code: 1, Err: Line(`destination "cpc:/tmp/greet" must be a directory`)},
	},
	Cleanup: [][]string{{"rm", "-f", "cpc"}},
}}
