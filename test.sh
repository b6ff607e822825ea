#!/bin/sh
# casecap's whole test suite: unit tests, lab (end-to-end) tests, short fuzz
# runs, then a check that the lab left nothing behind. Run it as root on a
# Debian machine: it installs the system packages the lab needs when they are
# missing. Not as root, lab tests skip and say why (under CI=true they fail).
#
#   ./test.sh                    # everything
#   FUZZTIME=30s ./test.sh       # longer fuzz runs
#   CASECAP_LAB_KEEP=1 ./test.sh # keep a failing test's lab up to debug it
set -eu
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

need=""
command -v ip >/dev/null 2>&1 || need="$need iproute2"
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
command -v tshark >/dev/null 2>&1 || need="$need tshark"
command -v tcpdump >/dev/null 2>&1 || need="$need tcpdump"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v busybox >/dev/null 2>&1 || need="$need busybox" # the lab's ESXi hosts' shell
command -v dash >/dev/null 2>&1 || need="$need dash"       # quoting is checked in dash and bash
command -v bash >/dev/null 2>&1 || need="$need bash"
if [ -n "$need" ]; then
	if [ "$(id -u)" -eq 0 ]; then
		echo "== installing:$need"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q
		apt-get install -y -q --no-install-recommends $need
	else
		echo "== missing:$need (run as root to install them; lab tests will skip)"
	fi
fi
command -v go >/dev/null 2>&1 || { echo "go is not installed (https://go.dev/dl/, go 1.26 or later)"; exit 1; }

echo "== gofmt, go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted"
	exit 1
fi
go vet ./...
go mod tidy -diff

echo "== release: the agents (go generate, static, linux/amd64 and arm64), then casecap for linux, darwin, windows x amd64, arm64 with them embedded (go run ./internal/release), checked against its SHA256SUMS; go vet for each, test binaries for macOS and Windows"
rel=$(mktemp -d)
go run ./internal/release -o "$rel"
(cd "$rel" && sha256sum -c --quiet SHA256SUMS)
v=$(git describe --tags --always --dirty)
[ "$("$rel/casecap-$v-linux-$(go env GOARCH)" --version)" = "casecap version $v" ] || { echo "the release binary does not say version $v"; exit 1; }
rm -rf "$rel"
for os in linux darwin windows; do
	for arch in amd64 arm64; do
		pkgs=$(GOOS=$os GOARCH=$arch go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' ./cmd/casecap | grep '^github.com/casecap/')
		GOOS=$os GOARCH=$arch go vet $pkgs # type-checks the tests too
	done
done
# Linked test binaries for the two laptop systems that are not this one:
# Apple silicon macOS and Windows on amd64 (the tests pass on linux below).
for p in darwin/arm64 windows/amd64; do
	pkgs=$(GOOS=${p%/*} GOARCH=${p#*/} go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' ./cmd/casecap | grep '^github.com/casecap/')
	tdir=$(mktemp -d)
	GOOS=${p%/*} GOARCH=${p#*/} go test -c -o "$tdir/" $pkgs >/dev/null
	rm -rf "$tdir"
done

echo "== go test"
go test -count=1 -timeout 20m ./...

echo "== go test -race: concurrent Close of an SSH connection"
go test -race -count=1 -run '^TestSSHCloseTwiceAtOnce$' ./hosts

echo "== load: casecap run on 100 lab hosts (fails on any failure or a peak RSS over 200 MiB)"
go test -run='^$' -bench='^BenchmarkHundredHosts$/^casecap$' -benchtime=1x ./bench

echo "== fuzz (${FUZZTIME:=10s} each)"
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r file; do
	dir=$(dirname "$file")
	for fn in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		echo "-- $dir $fn"
		# Go 1.26's fuzz coordinator can fail a target with a bare "context
		# deadline exceeded" at the -fuzztime boundary, having found nothing
		# (go.dev/issue/75804, fixed in Go 1.27). Only that case, with no
		# crasher written, gets another run, up to two more (on a busy
		# machine it came twice in a row); anything else fails.
		for try in 1 2 3; do
			before=$(ls "$dir/testdata/fuzz/$fn" 2>/dev/null | wc -l)
			if go test -run='^$' -fuzz="^$fn\$" -fuzztime="$FUZZTIME" "$dir" >/tmp/casecap-fuzz.log 2>&1; then
				break
			fi
			after=$(ls "$dir/testdata/fuzz/$fn" 2>/dev/null | wc -l)
			if [ "$try" -lt 3 ] && [ "$before" -eq "$after" ] &&
				grep -q '^    context deadline exceeded$' /tmp/casecap-fuzz.log &&
				! grep -q 'Failing input written' /tmp/casecap-fuzz.log; then
				echo "   Go fuzz coordinator deadline race (go.dev/issue/75804), no crasher: running again"
				continue
			fi
			cat /tmp/casecap-fuzz.log
			exit 1
		done
	done
done

echo "== nothing left behind"
left=$(ip -o link show 2>/dev/null | grep -E ': (ccbr[0-9]+|cc[0-9]+h[0-9]+)[:@]' || true)
dirs=$(ls -d "${CASECAP_LAB_DIR:-/var/lib/casecap-lab}"/[0-9]* 2>/dev/null || true)
procs=$(grep -l CASECAP_LAB_INIT /proc/[0-9]*/environ 2>/dev/null || true)
if [ -n "$left$dirs$procs" ]; then
	echo "the lab left links, directories or processes behind:"
	echo "$left$dirs$procs"
	exit 1
fi
echo "== all tests passed"
