"""Docker fixtures for the chaos suite (pytest -n auto).

- The node image ``pgbed-node:test`` is built once per test run, whichever xdist worker gets
  there first (a file lock and a marker file in the run's shared temp dir), with docker-py's
  classic builder, ``pull=False``, from images/node/Dockerfile on top of the offline base image
  (images/base/build.sh), with the host's pip settings as build args (images/pip-build-args.py).
  The build happens after collection, so its minutes don't count against a test's timeout.
- The postgres image ``pgbed-postgres:test`` (images/postgres/Dockerfile: Debian's PostgreSQL 15
  and ext/pgbed_test, for ``DockerCluster(..., flavor="postgres")``) is built the same way, by
  the same code (``ImageSpec``), but only when a selected test asks for the ``postgres_image``
  fixture; the node image is built when some other Docker test is selected.
- testcontainers' Ryuk reaper cannot be pulled here: ``TESTCONTAINERS_RYUK_DISABLED=true``;
  every container gets the labels ``pgbed.run=<test run uid>`` and ``pgbed.worker=<worker id>``
  (fixture ``pgbed_labels``) and is removed by label when the worker and the run finish.
- Docker tests are skipped, with the reason in the header and in the skip message, only when no
  Docker engine can be reached. A missing base image or a failing build is an error.

Environment knobs: PGBED_NODE_IMAGE (tag to build, default pgbed-node:test),
PGBED_POSTGRES_IMAGE (default pgbed-postgres:test), PGBED_BASE_IMAGE (default
pgbed-base:bookworm), PGBED_SKIP_IMAGE_BUILD=1 (use the existing tags as they are).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_DOCKERFILE = "images/node/Dockerfile"
NODE_IMAGE = os.environ.get("PGBED_NODE_IMAGE", "pgbed-node:test")
POSTGRES_IMAGE = os.environ.get("PGBED_POSTGRES_IMAGE", "pgbed-postgres:test")
BASE_IMAGE = os.environ.get("PGBED_BASE_IMAGE", "pgbed-base:bookworm")
DEFAULT_BASE_IMAGE = "pgbed-base:bookworm"
LABEL_RUN = "pgbed.run"
LABEL_WORKER = "pgbed.worker"

_STATE_KEY = pytest.StashKey[dict[str, Any]]()


# --- identity ----------------------------------------------------------------------------------


def _worker_id(config: pytest.Config) -> str:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return str(workerinput["workerid"])
    return "master"


def _run_id(config: pytest.Config) -> str:
    """xdist's test run uid (the same in every worker and the controller), else our own."""
    state = _state(config)
    if "run_id" not in state:
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None and workerinput.get("testrunuid"):
            state["run_id"] = str(workerinput["testrunuid"])
        else:
            state["run_id"] = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
    return state["run_id"]


def _state(config: pytest.Config) -> dict[str, Any]:
    if _STATE_KEY not in config.stash:
        config.stash[_STATE_KEY] = {}
    return config.stash[_STATE_KEY]


# --- docker engine -----------------------------------------------------------------------------


def _docker(config: pytest.Config) -> tuple[Any, str | None]:
    """(client, None) or (None, reason the engine cannot be reached)."""
    state = _state(config)
    if "docker" not in state:
        import docker

        client = None
        try:
            client = docker.from_env(timeout=300)
            client.ping()
            state["docker"] = (client, None)
        except Exception as exc:
            state["docker"] = (None, f"no Docker engine reachable: {type(exc).__name__}: {exc}")
            if client is not None:
                client.close()
        if state["docker"][0] is None:
            # A failed connect leaves a socket (held by the exception's frames until now) for the
            # garbage collector; its ResourceWarning would become an error under
            # filterwarnings=error.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
    return state["docker"]


def pytest_report_header(config: pytest.Config) -> list[str]:
    client, reason = _docker(config)
    if client is None:
        return [f"docker: {reason} -- docker tests will be SKIPPED"]
    v = client.version()
    return [f"docker: engine {v.get('Version')} (API {v.get('ApiVersion')}), node image {NODE_IMAGE}, "
            f"postgres image {POSTGRES_IMAGE} (built only for tests that ask for it)"]  # fmt: skip


# --- the images, each once per run ---------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """An image the suite builds once per run: `key` names it in the marker file, the config
    stash and the ``pgbed.image`` label (which the prune of its earlier, now untagged builds
    goes by)."""

    key: str
    tag: str
    dockerfile: str
    pip_args: bool  # the host's pip settings as build args (only images that pip install need them)


NODE = ImageSpec("node", NODE_IMAGE, NODE_DOCKERFILE, pip_args=True)
POSTGRES = ImageSpec("postgres", POSTGRES_IMAGE, "images/postgres/Dockerfile", pip_args=False)


def _pip_build_args() -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "images" / "pip-build-args.py"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return json.loads(out)


def _build_image(client: Any, spec: ImageSpec) -> str:
    import docker

    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        if BASE_IMAGE == DEFAULT_BASE_IMAGE:
            raise RuntimeError(
                f"base image {BASE_IMAGE} is missing: build it with `images/base/build.sh` "
                "(or set PGBED_BASE_IMAGE to a local image)"
            ) from None
        raise RuntimeError(f"base image {BASE_IMAGE} (PGBED_BASE_IMAGE) is not present locally") from None

    buildargs = {"BASE_IMAGE": BASE_IMAGE, **(_pip_build_args() if spec.pip_args else {})}
    t0 = time.monotonic()
    log_lines: list[str] = []
    try:
        image, logs = client.images.build(
            path=str(ROOT),
            dockerfile=spec.dockerfile,
            buildargs=buildargs,
            pull=False,
            tag=spec.tag,
            rm=True,
            forcerm=True,
            labels={"pgbed.image": spec.key},
        )
        for chunk in logs:
            if "stream" in chunk:
                log_lines.append(chunk["stream"].rstrip("\n"))
    except docker.errors.BuildError as exc:
        for chunk in exc.build_log:
            text = chunk.get("stream") or chunk.get("error") or ""
            log_lines.append(str(text).rstrip("\n"))
        tail = "\n".join(line for line in log_lines if line)[-6000:]
        raise RuntimeError(f"building {spec.tag} from {spec.dockerfile} failed: {exc}\n{tail}") from None
    sys.stderr.write(f"\n[pgbed] built {spec.tag} ({image.short_id}) in {time.monotonic() - t0:.0f} s\n")
    try:  # earlier builds of the tag, now untagged (images still used by a container are kept)
        client.images.prune(filters={"dangling": True, "label": f"pgbed.image={spec.key}"})
    except docker.errors.APIError:
        pass
    return image.id


def _ensure_image(config: pytest.Config, basetemp_parent: Path, spec: ImageSpec) -> None:
    """Build the image once per run across workers; record the outcome in the config stash
    (``images[key]`` = tag, or ``image_errors[key]`` = (skip|fail, message))."""
    state = _state(config)
    images: dict[str, str] = state.setdefault("images", {})
    errors: dict[str, tuple[str, str]] = state.setdefault("image_errors", {})
    if spec.key in images or spec.key in errors:
        return
    client, reason = _docker(config)
    if client is None:
        errors[spec.key] = ("skip", str(reason))
        return
    if os.environ.get("PGBED_SKIP_IMAGE_BUILD") == "1":
        images[spec.key] = spec.tag
        return
    from filelock import FileLock

    marker = basetemp_parent / f"pgbed-{spec.key}-image-{_run_id(config)}.json"
    try:
        with FileLock(str(marker) + ".lock", timeout=1800):
            if marker.is_file():
                data = json.loads(marker.read_text())
                if "error" in data:
                    raise RuntimeError(data["error"])
                images[spec.key] = data["tag"]
                return
            try:
                image_id = _build_image(client, spec)
            except Exception as exc:
                marker.write_text(json.dumps({"error": str(exc)}))
                raise
            marker.write_text(json.dumps({"tag": spec.tag, "id": image_id}))
            images[spec.key] = spec.tag
    except Exception as exc:
        errors[spec.key] = ("fail", str(exc))


def _image_for_test(config: pytest.Config, basetemp_parent: Path, spec: ImageSpec) -> str:
    """The built image's tag, or skip (no engine) / fail (the build failed) the asking test."""
    _ensure_image(config, basetemp_parent, spec)
    state = _state(config)
    if spec.key in state["image_errors"]:
        kind, message = state["image_errors"][spec.key]
        if kind == "skip":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    return str(state["images"][spec.key])


def _images_wanted(items: list[pytest.Item]) -> list[ImageSpec]:
    """The images the selected tests need: postgres for tests that ask for ``postgres_image``,
    node for every other Docker test (some take ``node_image`` through getfixturevalue, which
    fixturenames does not show)."""
    docker_items = [item for item in items if item.get_closest_marker("docker") is not None]
    wanted = []
    if any("postgres_image" not in getattr(item, "fixturenames", ()) for item in docker_items):
        wanted.append(NODE)
    if any("postgres_image" in getattr(item, "fixturenames", ()) for item in items):
        wanted.append(POSTGRES)
    return wanted


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if config.option.collectonly or getattr(config.option, "setuponly", False):
        return
    if getattr(config, "workerinput", None) is None and config.pluginmanager.hasplugin("dsession"):
        return  # xdist controller: the workers build
    tmp_factory = config._tmp_path_factory  # type: ignore[attr-defined]
    for spec in _images_wanted(session.items):
        _ensure_image(config, tmp_factory.getbasetemp().parent, spec)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client(pytestconfig: pytest.Config) -> Any:
    client, reason = _docker(pytestconfig)
    if client is None:
        print(f"\n[pgbed] SKIP docker tests: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return client


@pytest.fixture(scope="session")
def pgbed_run_id(pytestconfig: pytest.Config) -> str:
    return _run_id(pytestconfig)


@pytest.fixture(scope="session")
def pgbed_labels(pytestconfig: pytest.Config) -> dict[str, str]:
    """Labels to put on every container, network and volume a test makes."""
    return {LABEL_RUN: _run_id(pytestconfig), LABEL_WORKER: _worker_id(pytestconfig)}


@pytest.fixture(scope="session")
def node_image(pytestconfig: pytest.Config, docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Tag of the node image built for this run (built after collection; see module doc)."""
    return _image_for_test(pytestconfig, tmp_path_factory.getbasetemp().parent, NODE)


@pytest.fixture(scope="session")
def postgres_image(pytestconfig: pytest.Config, docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Tag of the PostgreSQL 15 image built for this run, for ``flavor="postgres"`` (built
    after collection, only when a selected test asks for it; see module doc)."""
    return _image_for_test(pytestconfig, tmp_path_factory.getbasetemp().parent, POSTGRES)


# --- cleanup by label --------------------------------------------------------------------------


def _cleanup(config: pytest.Config, worker: str | None) -> None:
    state = _state(config)
    if "docker" not in state:
        return  # never touched docker
    client, _ = state["docker"]
    if client is None:
        return
    filters = [f"{LABEL_RUN}={_run_id(config)}"]
    if worker is not None:
        filters.append(f"{LABEL_WORKER}={worker}")
    try:
        for c in client.containers.list(all=True, filters={"label": filters}):
            try:
                c.remove(force=True, v=True)
            except Exception as exc:
                print(f"[pgbed] could not remove container {c.short_id}: {exc}", file=sys.stderr)
        client.networks.prune(filters={"label": filters})
        client.volumes.prune(filters={"label": filters})
    except Exception as exc:
        print(f"[pgbed] cleanup by label {filters} failed: {exc}", file=sys.stderr)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Each worker removes what it labelled; a run without xdist removes the whole run's.

    (This conftest is not an initial conftest, so an xdist controller never loads it: the
    workers' own cleanups cover everything, since every container carries its worker label.)
    """
    config = session.config
    if getattr(config, "workerinput", None) is not None:
        _cleanup(config, _worker_id(config))
    else:
        _cleanup(config, None)


# --- node fixtures -----------------------------------------------------------------------------

READY = "database system is ready to accept connections"


@pytest.fixture
def node_container(node_image: str, pgbed_labels: dict[str, str]) -> Iterator[Any]:
    """A fresh node container (random host port for 5432), ready to accept connections."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    container = (
        DockerContainer(node_image)
        .with_exposed_ports(5432)
        .with_kwargs(labels=dict(pgbed_labels))
        .waiting_for(LogMessageWaitStrategy(READY).with_startup_timeout(60).with_poll_interval(0.2))
    )
    with container:
        yield container


@pytest.fixture(params=[pytest.param("local"), pytest.param("docker", marks=pytest.mark.docker),
                        pytest.param("postgres", marks=pytest.mark.differential)])  # fmt: skip
def scenario_backend(request: pytest.FixtureRequest) -> str:
    """local: a pgbed node as local processes; docker: a pgbed node container; postgres: a real
    PostgreSQL 15 node as local processes (skipped where PostgreSQL 15 is not installed)."""
    return str(request.param)


@pytest.fixture
def scenario_node(scenario_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The node of a backend-agnostic scenario, on the backend the parameter names."""
    from tests.chaos.nodes import DockerScenarioNode, LocalScenarioNode

    if scenario_backend == "docker":
        yield DockerScenarioNode(request.getfixturevalue("node_container"))
        return
    from orchestrator.localnode import LocalNode
    from orchestrator.pgflavor import PostgresNode, postgres_available

    if scenario_backend == "postgres":
        missing = postgres_available()
        if missing:
            pytest.skip(f"no PostgreSQL 15 here: {missing}")
    cls = PostgresNode if scenario_backend == "postgres" else LocalNode
    node = cls(tmp_path, "scenario").init()
    node.start()
    try:
        yield LocalScenarioNode(node, backend=scenario_backend)
    finally:
        node.teardown()
