#!/usr/bin/env bash
# scratch-postgres.sh runs a command against a scratch PostgreSQL cluster with the server's DEFAULT
# settings (autovacuum on, default memory), started for it and removed after it:
#
#   scratch-postgres.sh <command> [args...]
#
# The command finds the cluster's URL in OUTBOX_SCRATCH_PG_URL. `make bench-backlog` uses it: a backlog
# drain measured on a server whose settings were changed for CI (this project's machines run PostgreSQL
# with autovacuum off) says nothing about a production server. The installed server's binaries are used
# (PG_BINDIR, default: the newest /usr/lib/postgresql/*/bin); as root, the cluster runs as the postgres
# user (PostgreSQL refuses to run as root).
set -euo pipefail

if [ $# -eq 0 ]; then
	echo "usage: $0 <command> [args...]" >&2
	exit 2
fi
bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
	echo "$0: no PostgreSQL server binaries (initdb) found; set PG_BINDIR" >&2
	exit 1
fi
as_owner=()
if [ "$(id -u)" = 0 ]; then
	as_owner=(runuser -u postgres --)
fi
dir=$(mktemp -d -t outbox-scratch-pg.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
	"${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT
"${as_owner[@]}" "$bindir/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 ||
	{ cat "$dir/initdb.log" >&2; exit 1; }
"${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
	-o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null ||
	{ cat "$dir/server.log" >&2; exit 1; }
"${as_owner[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres test
export OUTBOX_SCRATCH_PG_URL="postgres://postgres@127.0.0.1:$port/test?sslmode=disable"
echo "scratch PostgreSQL ($("$bindir/postgres" --version), default settings) at $OUTBOX_SCRATCH_PG_URL" >&2
"$@"
