#!/usr/bin/env bash
# install-check.sh: the published-user path (docs/releasing.md#install-check), run by make install-check.
# In a new GOPATH and module cache, with the local module proxy first in GOPROXY and the machine's proxy
# after it: go install the CLIs at RELEASE_VERSION, then replay the walkthrough that `modproxy doc`
# extracted from the Markdown in a scratch module. The Makefile sets MODPROXY, MODPROXY_DIR,
# RELEASE_VERSION, MODULE_PREFIX, REAL_GOPROXY, GOFLAGS_BASE and SKIPLOG.
#
# GOFLAGS=-trimpath keeps compiled packages reusable from Go's build cache although every run has a new
# module cache (without it the paths differ and everything recompiles, minutes on 2 cores); the install
# command itself is the user's.
set -euo pipefail
start=$(date +%s)
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
docs=(docs/getting-started.md docs/codegen.md)
"$MODPROXY" doc -out "$tmp/walkthrough.sh" "${docs[@]}"

export GOWORK=off GOPATH="$tmp/gopath" GOMODCACHE="$tmp/gopath/pkg/mod" GOBIN="$tmp/gopath/bin"
export PATH="$GOBIN:$PATH" GOPROXY="file://$MODPROXY_DIR,$REAL_GOPROXY" GONOSUMDB="$MODULE_PREFIX"
export GOFLAGS="$GOFLAGS_BASE -modcacherw -trimpath"
for c in cmd/outbox cmd/outboxgen conformance/cmd/outbox-conformance; do
	echo "== go install $MODULE_PREFIX/$c@$RELEASE_VERSION"
	(cd "$tmp" && go install "$MODULE_PREFIX/$c@$RELEASE_VERSION")
done
outbox --version >/dev/null 2>&1 || outbox --help >/dev/null

# The walkthrough uses the README's local PostgreSQL (docs/getting-started.md, step 2).
require=${OUTBOX_TEST_REQUIRE:-}
if ! timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5432' 2>/dev/null; then
	reason="postgres unreachable at 127.0.0.1:5432"
	if [ "$require" = all ] || [[ ",$require," == *,postgres,* ]]; then
		echo "install-check: $reason (OUTBOX_TEST_REQUIRE=$require)" >&2
		exit 1
	fi
	echo "== install-check: installs passed; ${docs[*]} skipped: $reason"
	if [ -n "${SKIPLOG:-}" ]; then printf 'install-check\t%s\tMakefile\n' "$reason" >>"$SKIPLOG"; fi
	exit 0
fi
mkdir "$tmp/scratch"
echo "== ${docs[*]} in a scratch module"
(cd "$tmp/scratch" && bash "$tmp/walkthrough.sh")
echo "== install-check passed in $(($(date +%s) - start)) s"
