// Package conformance holds the docker CLI conformance suite: the real
// docker command line (a Docker 28 client) driven against a vxnet daemon
// through a table of cases, each asserting the exit code, standard output
// and standard error Docker 28 gives for the same command. The suite
// prints every case with its verdict. Cases where vxnet answers
// differently from Docker on purpose say so, and docs/conformance.md
// gives the reasons.
//
// The package has only tests; run them as root:
//
//	go test -count=1 -run TestDockerConformance ./internal/conformance/
package conformance
