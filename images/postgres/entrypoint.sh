#!/bin/sh
# images/postgres/entrypoint.sh — the postgres-flavour container's entrypoint (run by tini as
# PID 1's child): images/node/entrypoint.sh's environment contract, with PostgreSQL 15's own
# programs in place of pgbed's.
#
# - With a command that is not an option (e.g. `bash`, `psql ...`): runs it.
# - Otherwise, on the first start (no $PGDATA/PG_VERSION) it makes the data directory:
#     * with PGBED_CLONE_FROM=<host>: clones that server with `pg_basebackup -X stream -c fast`
#       (options in PGBED_BASEBACKUP_ARGS, e.g. `-R` for a standby; application_name
#       PGBED_NODE_NAME, which -R writes into primary_conninfo), waiting up to
#       PGBED_CLONE_TIMEOUT seconds (default 120) for it to accept connections;
#     * without: `initdb -U postgres -A trust` (WAL segment size PGBED_WAL_SEGSIZE_MB, default
#       16) and lets the container network in with trust (`host all all all trust` and `host
#       replication all all trust` in pg_hba.conf — test beds only);
#   then appends PGBED_BASE_CONF and PGBED_CONF (postgresql.conf lines) and PGBED_AUTO_CONF
#   (postgresql.auto.conf lines), leaving out pgbed-only settings (names starting `pgbed.`, such
#   as pgbed.metrics_port: PostgreSQL would take them as meaningless placeholders). Later starts
#   keep the data directory as it is (a node's role is in it, see the node entrypoint).
# - Finally it replaces itself with the postmaster in the foreground:
#   `exec postgres -D $PGDATA -c listen_addresses=* "$@"`, so extra `-c name=value` arguments go
#   to the postmaster and the postmaster is tini's direct child (SIGTERM smart, SIGINT fast,
#   SIGQUIT immediate), as in the node image. With PGBED_INIT_ONLY=1 it exits 0 after making the
#   data directory instead.
# - Started as root (e.g. `--user 0`), it hands $PGDATA to user postgres and drops to it
#   (PostgreSQL refuses to run as root).
#
# initdb and pg_basebackup run with --no-sync, as orchestrator/pgflavor.py's local nodes do:
# a container's data directory does not outlive a host crash that fsync would guard against.
# Used by orchestrator/dockernode.py's containers of the postgres flavour.
set -eu

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGDATA

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown -R postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

say() { echo "pgbed-entrypoint: $*" >&2; }

# Configuration lines without pgbed-only settings (each dropped one is said, so a setting that
# silently does nothing on this flavour is at least in the log).
postgres_lines() {
    printf '%s\n' "$1" | while IFS= read -r line; do
        case "${line#"${line%%[![:space:]]*}"}" in  # the line without its leading blanks
            pgbed.*) say "not for PostgreSQL, left out: $line" ;;
            *) printf '%s\n' "$line" ;;
        esac
    done
}

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
    if ! pg_basebackup -h "$src" -p 5432 -U postgres -D "$PGDATA" -X stream -c fast --no-sync \
            -d "application_name=${PGBED_NODE_NAME:-$(hostname)}" ${PGBED_BASEBACKUP_ARGS:-}; then
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
        initdb -D "$PGDATA" -U postgres -A trust --no-sync --wal-segsize "${PGBED_WAL_SEGSIZE_MB:-16}"
        printf '%s\n' '' \
            '# added by the pgbed container entrypoint: trust the container network (test bed only)' \
            'host    all             all             all                     trust' \
            'host    replication     all             all                     trust' >>"$PGDATA/pg_hba.conf"
    fi
    for conf in "${PGBED_BASE_CONF:-}" "${PGBED_CONF:-}"; do
        if [ -n "$conf" ]; then
            printf '\n# added by the pgbed container entrypoint at the first start\n%s\n' \
                "$(postgres_lines "$conf")" >>"$PGDATA/postgresql.conf"
        fi
    done
    if [ -n "${PGBED_AUTO_CONF:-}" ]; then
        postgres_lines "$PGBED_AUTO_CONF" >>"$PGDATA/postgresql.auto.conf"
    fi
fi

if [ "${PGBED_INIT_ONLY:-}" = 1 ]; then  # a re-clone helper (orchestrator/composecluster.py) stops here
    exit 0
fi
exec postgres -D "$PGDATA" -c 'listen_addresses=*' "$@"
