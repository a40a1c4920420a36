# images/node/pip-env.sh — sourced by the Dockerfile's RUN steps (POSIX sh), never shipped.
# Turns the PGBED_* build args (computed on the host by images/pip-build-args.py) into pip's
# PIP_* environment for this step only; empty args set nothing, so a build without args uses
# the base image's own defaults.
set -eu
[ -n "${PGBED_PIP_INDEX_URL:-}" ] && export PIP_INDEX_URL="$PGBED_PIP_INDEX_URL"
[ -n "${PGBED_PIP_EXTRA_INDEX_URL:-}" ] && export PIP_EXTRA_INDEX_URL="$PGBED_PIP_EXTRA_INDEX_URL"
[ -n "${PGBED_PIP_TRUSTED_HOST:-}" ] && export PIP_TRUSTED_HOST="$PGBED_PIP_TRUSTED_HOST"
[ -n "${PGBED_PIP_FIND_LINKS:-}" ] && export PIP_FIND_LINKS="$PGBED_PIP_FIND_LINKS"
[ -n "${PGBED_PIP_DEFAULT_TIMEOUT:-}" ] && export PIP_DEFAULT_TIMEOUT="$PGBED_PIP_DEFAULT_TIMEOUT"
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# CA bundle for pip: the image's system bundle (+ the host's extra CAs, for this step only).
_pgbed_bundle=""
for _f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
    if [ -f "$_f" ]; then _pgbed_bundle="$_f"; break; fi
done
if [ -n "${PGBED_EXTRA_CA_PEM:-}" ]; then
    PGBED_PIP_CA_TMP="$(mktemp /tmp/pgbed-pip-ca.XXXXXX)"
    { [ -z "$_pgbed_bundle" ] || cat "$_pgbed_bundle"; printf '%s\n' "$PGBED_EXTRA_CA_PEM"; } >"$PGBED_PIP_CA_TMP"
    export PIP_CERT="$PGBED_PIP_CA_TMP"
elif [ -n "$_pgbed_bundle" ]; then
    export PIP_CERT="$_pgbed_bundle"
fi
unset _f _pgbed_bundle
