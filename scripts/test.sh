#!/usr/bin/env bash
# Runs vxnet's tests: static checks, unit tests with -race, then the
# kernel tests as root (each in namespaces it makes and removes).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
	bash scripts/setup.sh
	# setup.sh installed every prerequisite, so a test that finds one
	# missing fails instead of skipping (internal/testreq).
	export VXNET_TEST_STRICT=${VXNET_TEST_STRICT:-1}
fi
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
echo "== gofmt / go vet"
test -z "$(gofmt -l cmd internal)" || { gofmt -l cmd internal; exit 1; }
go vet ./...
echo "== build"
go build -o bin/vxnet ./cmd/vxnet
export VXNET_BIN=$PWD/bin/vxnet
echo "== tests"
# -p 1: kernel tests of different packages must not run at once, so each
# package's leak check sees only its own objects.
go test -race -p 1 -count=1 -timeout 25m "$@" ./...
