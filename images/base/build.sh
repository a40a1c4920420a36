#!/usr/bin/env bash
# images/base/build.sh — build the local base image pgbed-base:bookworm without any registry.
#
# Where this project is built and tested no container registry is reachable, so `FROM debian`
# or `FROM python` cannot be pulled. This script makes the base image from Debian packages:
#
#   1. debootstrap --variant=minbase bookworm into a temporary directory, from the SAME Debian
#      mirror the host's apt uses (read at run time from /etc/apt/sources.list.d/*.sources or
#      /etc/apt/sources.list — no mirror host is written in this repository), with
#      python3, python3-venv, python3-pip, tini, procps, iproute2, iptables,
#      postgresql-client-15 (psql, pg_isready) and ca-certificates;
#   2. copies the host's Debian apt sources into the image, so `apt-get` inside builds and
#      containers uses the host's mirror too;
#   3. copies the host's locally trusted CA certificates (/usr/local/share/ca-certificates) into
#      the image and runs update-ca-certificates, so TLS from inside a container (pip) trusts
#      what the host trusts (e.g. an egress proxy's CA);
#   4. `tar -C dir -c . | docker import -c 'ENV LANG=C.UTF-8' ... - pgbed-base:bookworm`.
#
# Idempotent: does nothing when the tag already exists, unless --force is given.
# Every Dockerfile of the project starts with `ARG BASE_IMAGE=pgbed-base:bookworm`, so where a
# registry is reachable `--build-arg BASE_IMAGE=python:3.11-slim-bookworm` skips this script.
#
# Usage: images/base/build.sh [--force] [--tag NAME:TAG] [--mirror URL] [--suite bookworm]
# Needs: root, debootstrap, docker (engine reachable). Takes about 2 minutes.
set -euo pipefail

TAG="pgbed-base:bookworm"
SUITE="bookworm"
MIRROR=""
FORCE=0

log() { printf '==> base: %s\n' "$*" >&2; }
die() { printf 'ERROR: base: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --tag) TAG="${2:?--tag needs a value}"; shift ;;
        --mirror) MIRROR="${2:?--mirror needs a value}"; shift ;;
        --suite) SUITE="${2:?--suite needs a value}"; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
    shift
done

PACKAGES="python3,python3-venv,python3-pip,tini,procps,iproute2,iptables,postgresql-client-15,ca-certificates"

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap needs it)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
command -v docker >/dev/null || die "docker CLI is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine reachable (docker info failed)"

if docker image inspect "$TAG" >/dev/null 2>&1 && [ "$FORCE" -eq 0 ]; then
    log "image $TAG already exists, nothing to do (use --force to rebuild)"
    exit 0
fi

# --- the host's Debian mirror -------------------------------------------------------------
# Prints the first URI of the first apt source that serves "$SUITE" itself (not -security,
# -updates). deb822 (*.sources) first, then one-line sources.list format.
host_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() {
                if (uris != "" && enabled && (" " suites " ") ~ (" " suite " ")) { print uris; found = 1; exit }
                uris = ""; suites = ""; enabled = 1
            }
            BEGIN { enabled = 1 }
            /^[[:space:]]*$/ { flush(); next }
            /^[[:space:]]*#/ { next }
            tolower($1) == "uris:" { uris = $2 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            tolower($1) == "enabled:" { enabled = (tolower($2) != "no") }
            END { if (!found) flush() }
        ' "$f" | head -n1
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f"
    done
}

MIRROR_FROM="--mirror"
if [ -z "$MIRROR" ]; then
    MIRROR="$(host_mirror | head -n1)"
    MIRROR_FROM="the host's apt sources"
    [ -n "$MIRROR" ] || die "could not find a Debian '$SUITE' source in the host's apt configuration; pass --mirror URL"
fi
log "tag $TAG, suite $SUITE, mirror $MIRROR (from $MIRROR_FROM)"

WORK="$(mktemp -d /var/tmp/pgbed-base.XXXXXX)"
ROOTFS="$WORK/rootfs"
cleanup() {
    local rc=$?
    # debootstrap unmounts what it mounted; be safe before deleting anything.
    for m in proc sys dev/pts dev; do
        mountpoint -q "$ROOTFS/$m" 2>/dev/null && umount -l "$ROOTFS/$m" || true
    done
    rm -rf --one-file-system "$WORK"
    [ $rc -eq 0 ] || printf 'ERROR: base: build failed (exit %s); temp dir removed\n' "$rc" >&2
}
trap cleanup EXIT

log "debootstrap --variant=minbase $SUITE (a few minutes) ..."
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -n 40 "$WORK/debootstrap.log" >&2
    [ -f "$ROOTFS/debootstrap/debootstrap.log" ] && tail -n 40 "$ROOTFS/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
fi
log "debootstrap done ($(du -sh --one-file-system "$ROOTFS" | cut -f1))"

# --- apt sources: the host's Debian sources, verbatim -----------------------------------
rm -f "$ROOTFS/etc/apt/sources.list"
copied=0
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    install -m 0644 /etc/apt/sources.list.d/debian.sources "$ROOTFS/etc/apt/sources.list.d/debian.sources"
    copied=1
elif [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list; then
    install -m 0644 /etc/apt/sources.list "$ROOTFS/etc/apt/sources.list"
    copied=1
fi
if [ "$copied" -eq 0 ]; then
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$ROOTFS/etc/apt/sources.list"
fi
log "apt sources in the image: $(grep -h -E '^(URIs:|deb )' "$ROOTFS"/etc/apt/sources.list "$ROOTFS"/etc/apt/sources.list.d/* 2>/dev/null | tr '\n' ' ')"

# --- locally trusted CAs of the host ------------------------------------------------------
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null \
    || compgen -G "/usr/local/share/ca-certificates/*/*.crt" >/dev/null; then
    cp -a /usr/local/share/ca-certificates/. "$ROOTFS/usr/local/share/ca-certificates/"
    chroot "$ROOTFS" update-ca-certificates >"$WORK/update-ca.log" 2>&1 \
        || { cat "$WORK/update-ca.log" >&2; die "update-ca-certificates failed in the image"; }
    log "added the host's local CA certificates: $(cd /usr/local/share/ca-certificates && find . -name '*.crt' | tr '\n' ' ')"
fi

# --- slim down -------------------------------------------------------------------------------
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/*.log \
    "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/* "$ROOTFS"/debootstrap
# Images do not carry a host identity.
: >"$ROOTFS/etc/hostname"
rm -f "$ROOTFS/etc/machine-id" "$ROOTFS/var/lib/dbus/machine-id"
# Containers get /etc/resolv.conf and /etc/hosts from the engine.
: >"$ROOTFS/etc/resolv.conf"

for bin in python3 pip3 tini ps pgrep ip iptables psql pg_isready update-ca-certificates; do
    chroot "$ROOTFS" sh -c "command -v $bin" >/dev/null || die "the image lacks $bin"
done

log "docker import -> $TAG ..."
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    -c 'ENV LANG=C.UTF-8' \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/bash"]' \
    -c "LABEL org.opencontainers.image.title=pgbed-base org.opencontainers.image.description=\"Debian $SUITE minbase built by images/base/build.sh\"" \
    -m "pgbed base: debootstrap --variant=minbase $SUITE" \
    - "$TAG" >/dev/null
docker image inspect "$TAG" --format '==> base: built {{.RepoTags}} {{.Id}} size={{.Size}}' >&2
docker run --rm "$TAG" sh -c 'python3 --version && psql --version && tini --version' >&2 \
    || die "smoke test of $TAG failed"
log "done"
