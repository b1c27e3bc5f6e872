#!/usr/bin/env bash
# offline.sh MODE MODULE_DIR...: run a go command in each module alone
# (GOWORK=off), resolving the sibling modules through the local module proxy
# that `modproxy build` wrote, as a user's build resolves published versions.
# The Makefile sets the environment (see its MODPROXY_ENV): GOPROXY with the
# local proxy first, GOMODCACHE a cache private to the checkout (its
# outboxkit entries are purged first: the proxy serves the working tree under
# one version, which changes with every edit), GONOSUMDB for the outboxkit
# modules (their hashes are in no checksum database before a release).
#
# The committed go.sum files hold no line for github.com/outboxkit/outboxkit
# modules: their hashes exist only once released (docs/releasing.md). So each
# command runs on a copy of go.mod and go.sum (-modfile), never on the files.
#
# Modes:
#   build       go build ./...
#   tidy-check  go mod tidy on the copy; fail when go.mod, or go.sum without
#               outboxkit lines, differs from the committed one
#   tidy        go mod tidy, written back without the outboxkit go.sum lines
set -euo pipefail
mode=$1; shift
: "${MODPROXY_CACHE:?run through make}"
if [ -d "$MODPROXY_CACHE" ]; then
	rm -rf "$MODPROXY_CACHE/github.com/outboxkit" "$MODPROXY_CACHE/cache/download/github.com/outboxkit"
fi
status=0
for m in "$@"; do
	tmp=$(mktemp -d)
	cp "$m/go.mod" "$tmp/go.mod"
	if [ -f "$m/go.sum" ]; then cp "$m/go.sum" "$tmp/go.sum"; else : >"$tmp/go.sum"; fi
	case $mode in
	build)
		(cd "$m" && go build -mod=mod -modfile="$tmp/go.mod" ./...) || status=1
		;;
	tidy-check | tidy)
		if ! (cd "$m" && go mod tidy -modfile="$tmp/go.mod"); then
			status=1
		else
			grep -v '^github.com/outboxkit/outboxkit/' "$tmp/go.sum" >"$tmp/go.sum.clean" || true
			if [ "$mode" = tidy ]; then
				cp "$tmp/go.mod" "$m/go.mod"
				if [ -s "$tmp/go.sum.clean" ] || [ -f "$m/go.sum" ]; then cp "$tmp/go.sum.clean" "$m/go.sum"; fi
			else
				if ! diff -u "$m/go.mod" "$tmp/go.mod"; then
					echo "$m/go.mod is not tidy: run make tidy" >&2
					status=1
				fi
				# A release commit may hold the published hashes of siblings (docs/releasing.md): compare without them.
				if [ -f "$m/go.sum" ]; then grep -v '^github.com/outboxkit/outboxkit/' "$m/go.sum" >"$tmp/committed.sum" || true; else : >"$tmp/committed.sum"; fi
				if ! diff -u "$tmp/committed.sum" "$tmp/go.sum.clean"; then
					echo "$m/go.sum is not tidy: run make tidy" >&2
					status=1
				fi
			fi
		fi
		;;
	*)
		echo "offline.sh: unknown mode $mode (build, tidy-check, tidy)" >&2
		exit 2
		;;
	esac
	rm -rf "$tmp"
done
exit $status
