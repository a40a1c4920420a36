#!/usr/bin/env bash
# images/install-compose-shim.sh — make `docker compose ...` run Debian's docker-compose (v1).
#
# Debian bookworm has no compose v2 plugin, only docker-compose 1.29 (Python). The docker CLI
# runs a plugin `docker-compose` from its cli-plugins directory for `docker compose`; this
# installs a tiny shell plugin there that answers the CLI's `docker-cli-plugin-metadata` query,
# drops the leading `compose` word and execs docker-compose. compose.yaml stays in the subset
# both versions accept.
#
# Usage: images/install-compose-shim.sh [--force] [--dir DIR]
#   default DIR: /usr/local/lib/docker/cli-plugins as root (a system plugin directory the CLI
#   searches), else ${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins.
# Idempotent: does nothing when `docker compose version` already works (a real v2, or the shim),
# unless --force.
set -euo pipefail

FORCE=0
DIR=""
while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --dir) DIR="${2:?--dir needs a value}"; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "ERROR: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '==> compose-shim: %s\n' "$*" >&2; }

command -v docker >/dev/null || { echo "ERROR: docker CLI not found" >&2; exit 1; }
if [ "$FORCE" -eq 0 ] && docker compose version >/dev/null 2>&1; then
    log "docker compose already works: $(docker compose version 2>&1 | head -n1)"
    exit 0
fi
V1="$(command -v docker-compose || true)"
[ -n "$V1" ] || { echo "ERROR: docker-compose (v1) not found; apt-get install docker-compose" >&2; exit 1; }

if [ -z "$DIR" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        DIR=/usr/local/lib/docker/cli-plugins
    else
        DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
    fi
fi
mkdir -p "$DIR"
tmp="$(mktemp "$DIR/.docker-compose.XXXXXX")"
cat >"$tmp" <<EOF
#!/bin/sh
# docker CLI plugin shim (installed by pgbed images/install-compose-shim.sh): runs compose v1.
if [ "\$1" = docker-cli-plugin-metadata ]; then
  echo '{"SchemaVersion":"0.1.0","Vendor":"pgbed","Version":"1.29-shim","ShortDescription":"Docker Compose (v1 via docker-compose)"}'; exit 0
fi
[ "\$1" = compose ] && shift
exec "$V1" "\$@"
EOF
chmod 0755 "$tmp"
mv -f "$tmp" "$DIR/docker-compose"
if docker compose version >/dev/null 2>&1; then
    log "installed $DIR/docker-compose -> $V1 ($(docker compose version 2>&1 | head -n1))"
else
    echo "ERROR: installed $DIR/docker-compose but 'docker compose version' still fails:" >&2
    docker compose version >&2 || true
    exit 1
fi
