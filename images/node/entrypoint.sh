#!/bin/sh
# images/node/entrypoint.sh — the node container's entrypoint (run by tini as PID 1's child).
#
# - With a command that is not an option (e.g. `bash`, `pgbed status -D ...`): runs it.
# - Otherwise: makes the data directory on first start (`pgbed initdb` when $PGDATA has no
#   PG_VERSION), lets the container network in with trust (`host all all all trust` and
#   `host replication all all trust` in pg_hba.conf — test beds only), then replaces itself with
#   the postmaster in the foreground: `exec pgbed start -D $PGDATA -c listen_addresses=* "$@"`,
#   so extra `-c name=value` arguments given to the container go to the postmaster and the
#   postmaster is tini's direct child (SIGTERM smart, SIGINT fast, SIGQUIT immediate).
# - Started as root (e.g. `--user 0`), it hands $PGDATA to user pgbed and drops to it.
set -eu

PGDATA="${PGDATA:-/var/lib/pgbed/data}"
export PGDATA

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown -R pgbed:pgbed "$PGDATA"
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=pgbed --regid=pgbed --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -n "$(ls -A "$PGDATA" 2>/dev/null)" ]; then
        echo "pgbed-entrypoint: $PGDATA is not empty but has no PG_VERSION; refusing to initdb over it" >&2
        ls -la "$PGDATA" >&2
        exit 1
    fi
    echo "pgbed-entrypoint: initializing $PGDATA" >&2
    pgbed initdb -D "$PGDATA"
    hba="$PGDATA/pg_hba.conf"
    {
        echo
        echo "# added by the pgbed container entrypoint: trust the container network (test bed only)"
        echo "host    all             all             all                     trust"
        echo "host    replication     all             all                     trust"
    } >>"$hba"
fi

exec pgbed start -D "$PGDATA" -c 'listen_addresses=*' "$@"
