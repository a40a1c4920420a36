#!/usr/bin/env python3
"""Compute the Docker build args that let pip inside an image build reach the package index the
way pip on this host does.

Nothing about the network is written in the repository: this reads the host's pip settings at
run time (`pip config list`, which covers /etc/pip.conf, the user and site files and the PIP_*
environment) and turns the ones that mean something inside a container into build args:

| host setting               | build arg                   | note                                     |
|----------------------------|-----------------------------|------------------------------------------|
| index-url                  | PGBED_PIP_INDEX_URL         |                                          |
| extra-index-url            | PGBED_PIP_EXTRA_INDEX_URL   |                                          |
| trusted-host               | PGBED_PIP_TRUSTED_HOST      |                                          |
| find-links (URLs only)     | PGBED_PIP_FIND_LINKS        | a host directory does not exist in there |
| default-timeout / timeout  | PGBED_PIP_DEFAULT_TIMEOUT   |                                          |
| cert (a CA bundle file)    | PGBED_EXTRA_CA_PEM          | see below                                |

Certificates: when the host's pip trusts a CA bundle, the PEM text of the CAs that a stock image
would lack goes into PGBED_EXTRA_CA_PEM — the host's locally added CAs
(/usr/local/share/ca-certificates, Debian's place for them) when the bundle is the system one,
otherwise the whole bundle file. The Dockerfile appends it to the image's CA bundle for the pip
steps only. (The base image made by images/base/build.sh already trusts the host's local CAs, so
compose builds work without these args; the args matter for other bases.)

Usage:
  images/pip-build-args.py            # JSON object {name: value}
  images/pip-build-args.py --env      # `export NAME='value'` lines, for eval in a shell;
                                      # then `docker build --build-arg NAME ...` or compose's
                                      # `args: [NAME]` take the value from the environment
  images/pip-build-args.py --names    # the names only, one per line
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

NAMES = (
    "PGBED_PIP_INDEX_URL",
    "PGBED_PIP_EXTRA_INDEX_URL",
    "PGBED_PIP_TRUSTED_HOST",
    "PGBED_PIP_FIND_LINKS",
    "PGBED_PIP_DEFAULT_TIMEOUT",
    "PGBED_EXTRA_CA_PEM",
)

SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt",)
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
MAX_PEM_BYTES = 512 * 1024

_LINE = re.compile(r"^(?P<section>[^.]*)\.(?P<key>[A-Za-z0-9_-]+)=(?P<value>.*)$")


def pip_config(python: str | None = None) -> dict[str, str]:
    """The host's effective pip settings: env beats install section beats global section."""
    python = python or os.environ.get("PGBED_HOST_PYTHON") or sys.executable
    try:
        out = subprocess.run(
            [python, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    rank = {":env:": 0, "install": 1, "global": 2}
    best: dict[str, tuple[int, str]] = {}
    for line in out.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        section, key, value = m["section"], m["key"], m["value"]
        if section not in rank:
            continue
        try:
            value = " ".join(shlex.split(value))  # pip prints repr-ish quoting
        except ValueError:
            value = value.strip("'\"")
        r = rank[section]
        if key not in best or r < best[key][0]:
            best[key] = (r, value)
    # The environment itself is the authority for PIP_* (pip config list shows it too, but
    # only for the pip it ran; a PIP_* set for this process wins either way).
    cfg = {k: v for k, (_, v) in best.items()}
    for env_key, value in os.environ.items():
        if env_key.startswith("PIP_") and value:
            cfg[env_key[4:].lower().replace("_", "-")] = value
    return cfg


def _is_url(s: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", s))


def _local_ca_pem() -> str:
    if not LOCAL_CA_DIR.is_dir():
        return ""
    parts = []
    for p in sorted(LOCAL_CA_DIR.rglob("*.crt")):
        try:
            text = p.read_text()
        except OSError:
            continue
        if "BEGIN CERTIFICATE" in text:
            parts.append(text.strip() + "\n")
    return "".join(parts)


def _ca_pem(cert: str | None) -> str:
    if not cert:
        return ""
    path = Path(cert)
    try:
        resolved = str(path.resolve())
    except OSError:
        return ""
    if resolved in SYSTEM_BUNDLES or cert in SYSTEM_BUNDLES:
        return _local_ca_pem()
    try:
        if path.is_file() and path.stat().st_size <= MAX_PEM_BYTES:
            text = path.read_text()
            return text if "BEGIN CERTIFICATE" in text else ""
    except OSError:
        pass
    return ""


def build_args(python: str | None = None) -> dict[str, str]:
    """Build args (only those with a value) for the node image and any other project image."""
    cfg = pip_config(python)
    args: dict[str, str] = {}
    if cfg.get("index-url"):
        args["PGBED_PIP_INDEX_URL"] = cfg["index-url"]
    if cfg.get("extra-index-url"):
        args["PGBED_PIP_EXTRA_INDEX_URL"] = cfg["extra-index-url"]
    if cfg.get("trusted-host"):
        args["PGBED_PIP_TRUSTED_HOST"] = cfg["trusted-host"]
    links = [x for x in cfg.get("find-links", "").split() if _is_url(x)]
    if links:
        args["PGBED_PIP_FIND_LINKS"] = " ".join(links)
    timeout = cfg.get("default-timeout") or cfg.get("timeout")
    if timeout:
        args["PGBED_PIP_DEFAULT_TIMEOUT"] = timeout
    pem = _ca_pem(cfg.get("cert") or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE"))
    if pem:
        args["PGBED_EXTRA_CA_PEM"] = pem
    return args


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "--json"
    if mode in ("-h", "--help"):
        print(__doc__)
        return 0
    if mode == "--names":
        print("\n".join(NAMES))
        return 0
    args = build_args()
    if mode == "--json":
        json.dump(args, sys.stdout, indent=2)
        print()
    elif mode == "--env":
        for k, v in args.items():
            print(f"export {k}={shlex.quote(v)}")
    else:
        print(f"unknown mode {mode!r}; use --json, --env or --names", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
