#!/usr/bin/env bash
# images/setup.sh — once per machine, before `docker compose up`.
#
#   1. builds the offline Debian base image pgbed-base:bookworm (images/base/build.sh; skipped when
#      the tag exists), which the node image and the offline Prometheus image start from;
#   2. finds out whether a container registry answers: `docker pull` of the Prometheus image
#      compose.yaml names, with a deadline (PGBED_OFFLINE=1 or 0 skips the probe);
#   3. online: nothing more — compose.yaml pulls prom/prometheus and grafana/grafana itself, and
#      a compose.override.yaml this script wrote earlier is removed;
#      offline: writes compose.override.yaml (read by compose v1 and v2 next to compose.yaml),
#      which builds Prometheus from Debian's package (images/prometheus/Dockerfile) and puts
#      Grafana — which cannot be built offline — in the `grafana` profile, so `docker compose up`
#      brings up everything else. (`docker compose --profile grafana up` would still try it.)
#
# Idempotent. Needs: docker (engine reachable), and for step 1 root and debootstrap.
set -euo pipefail

cd "$(dirname "$0")/.."
OVERRIDE=compose.override.yaml
MARK="# written by images/setup.sh"
PROM_IMAGE="$(sed -n 's/.*PGBED_PROMETHEUS_IMAGE:-\([^}]*\)}.*/\1/p' compose.yaml | head -n1)"

log() { printf '==> setup: %s\n' "$*" >&2; }

bash images/base/build.sh

offline="${PGBED_OFFLINE:-}"
if [ -z "$offline" ]; then
    log "is a registry reachable? (docker pull $PROM_IMAGE, at most 60 s)"
    if timeout 60 docker pull -q "$PROM_IMAGE" >/dev/null 2>&1; then
        offline=0
    else
        offline=1
    fi
fi

if [ "$offline" = 0 ]; then
    log "a registry answers: compose.yaml's images are pulled as they are"
    if [ -f "$OVERRIDE" ] && head -n1 "$OVERRIDE" | grep -qF "$MARK"; then
        rm -f "$OVERRIDE"
        log "removed the offline $OVERRIDE"
    fi
    exit 0
fi

if [ -f "$OVERRIDE" ] && ! head -n1 "$OVERRIDE" | grep -qF "$MARK"; then
    echo "ERROR: $OVERRIDE exists and was not written by images/setup.sh; not touching it" >&2
    exit 1
fi
cat >"$OVERRIDE" <<EOF
$MARK (no container registry reachable): remove it, or run
# PGBED_OFFLINE=0 images/setup.sh, where one is.
services:
  prometheus:
    image: pgbed-prometheus:latest
    pull_policy: build
    build:
      context: .
      dockerfile: images/prometheus/Dockerfile
      args:
        - BASE_IMAGE=\${PGBED_BASE_IMAGE:-pgbed-base:bookworm}
  grafana:
    profiles: ["grafana"]
EOF
log "no registry: wrote $OVERRIDE (Prometheus from Debian's package, Grafana only with --profile grafana)"
