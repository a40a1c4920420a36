#!/bin/sh
# images/node/entrypoint.sh — the node container's entrypoint (run by tini as PID 1's child).
#
# - With a command that is not an option (e.g. `bash`, `pgbed status -D ...`): runs it.
# - Otherwise, on the first start (no $PGDATA/PG_VERSION) it makes the data directory:
#     * with PGBED_CLONE_FROM=<host>: clones that server with `pgbed basebackup` (options in
#       PGBED_BASEBACKUP_ARGS, e.g. `-R` for a standby; application_name PGBED_NODE_NAME),
#       waiting up to PGBED_CLONE_TIMEOUT seconds (default 120) for it to accept connections;
#     * without: `pgbed initdb` (WAL segment size PGBED_WAL_SEGSIZE_MB, default 16) and lets the
#       container network in with trust (`host all all all trust` and `host replication all all
#       trust` in pg_hba.conf — test beds only);
#   then appends PGBED_BASE_CONF and PGBED_CONF (postgresql.conf lines) and PGBED_AUTO_CONF
#   (postgresql.auto.conf lines). Later starts keep the data directory as it is: a node's role
#   (primary, or standby through standby.signal) is in its data directory, so a restarted
#   container keeps the role a campaign gave it, and settings changed since (a failover
#   rewrites synchronous_standby_names and primary_conninfo) are not reset.
# - Finally it replaces itself with the postmaster in the foreground:
#   `exec pgbed start -D $PGDATA -c listen_addresses=* "$@"`, so extra `-c name=value` arguments
#   go to the postmaster (they outrank the configuration files, so a campaign cannot change
#   them: use PGBED_CONF for anything a failover may rewrite) and the postmaster is tini's direct
#   child (SIGTERM smart, SIGINT fast, SIGQUIT immediate). With PGBED_INIT_ONLY=1 it exits 0
#   after making the data directory instead.
# - Started as root (e.g. `--user 0`), it hands $PGDATA to user pgbed and drops to it.
#
# Used both by compose.yaml's services and by orchestrator/dockernode.py's containers.
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

say() { echo "pgbed-entrypoint: $*" >&2; }

clone() {
    src="$PGBED_CLONE_FROM"
    limit="${PGBED_CLONE_TIMEOUT:-120}"
    waited=0
    until pg_isready -q -h "$src" -p 5432 -U postgres -d postgres; do
        if [ "$waited" -ge "$limit" ]; then
            say "$src:5432 did not accept connections within $limit s; last pg_isready said:"
            pg_isready -h "$src" -p 5432 -U postgres -d postgres >&2 || true
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "cloning $PGDATA from $src:5432"
    # shellcheck disable=SC2086  # PGBED_BASEBACKUP_ARGS is a list of options
    if ! pgbed basebackup -h "$src" -p 5432 -U postgres -D "$PGDATA" \
            --application-name "${PGBED_NODE_NAME:-$(hostname)}" ${PGBED_BASEBACKUP_ARGS:-}; then
        # a half-made clone would make every later start refuse the directory
        say "base backup from $src failed; emptying $PGDATA so that the next start clones again"
        find "$PGDATA" -mindepth 1 -delete
        exit 1
    fi
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -n "$(ls -A "$PGDATA" 2>/dev/null)" ]; then
        say "$PGDATA is not empty but has no PG_VERSION; refusing to initdb over it"
        ls -la "$PGDATA" >&2
        exit 1
    fi
    if [ -n "${PGBED_CLONE_FROM:-}" ]; then
        clone
    else
        say "initializing $PGDATA"
        pgbed initdb -D "$PGDATA" --wal-segsize "${PGBED_WAL_SEGSIZE_MB:-16}"
        printf '%s\n' '' \
            '# added by the pgbed container entrypoint: trust the container network (test bed only)' \
            'host    all             all             all                     trust' \
            'host    replication     all             all                     trust' >>"$PGDATA/pg_hba.conf"
    fi
    for conf in "${PGBED_BASE_CONF:-}" "${PGBED_CONF:-}"; do
        if [ -n "$conf" ]; then
            printf '\n# added by the pgbed container entrypoint at the first start\n%s\n' "$conf" >>"$PGDATA/postgresql.conf"
        fi
    done
    if [ -n "${PGBED_AUTO_CONF:-}" ]; then
        printf '%s\n' "$PGBED_AUTO_CONF" >>"$PGDATA/postgresql.auto.conf"
    fi
fi

if [ "${PGBED_INIT_ONLY:-}" = 1 ]; then  # a re-clone helper (orchestrator/composecluster.py) stops here
    exit 0
fi
exec pgbed start -D "$PGDATA" -c 'listen_addresses=*' "$@"
