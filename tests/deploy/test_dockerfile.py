"""The image's posture, read from the Dockerfile (no image is built here): multi-stage, slim, non-root."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from tests.deploy.manifests import REPO, TARGETS, manifests, pod_specs

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


def _last(stage: Stage, keyword: str) -> str:
    found = [rest for kw, rest in stage.instructions if kw == keyword]
    assert found, f"no {keyword} in the final stage"
    return found[-1]


def test_image_is_multi_stage_on_a_slim_python() -> None:
    """A builder stage makes the wheels; the final stage starts again from the slim Python image."""
    stages = _stages()
    assert len(stages) >= 2
    final = stages[-1]
    assert final.base in ("${PYTHON_IMAGE}", "python:3.11-slim-bookworm")
    assert "python:3.11-slim" in (REPO / "Dockerfile").read_text()
    assert any(kw == "COPY" and rest.startswith("--from=") for kw, rest in final.instructions)


def test_final_stage_installs_no_build_tools() -> None:
    """Nothing in the final stage installs a compiler, make or git; it installs no packages at all."""
    final = _stages()[-1]
    for keyword, rest in final.instructions:
        if keyword == "RUN":
            assert not BUILD_TOOLS.search(rest), rest
            assert "apt-get install" not in rest and "pip install" not in rest, rest


def test_final_stage_runs_as_a_non_root_user() -> None:
    """The final stage switches to a numeric, non-zero user and group (so runAsNonRoot can verify it)."""
    user = _last(_stages()[-1], "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0


@pytest.mark.parametrize("target", TARGETS)
def test_manifests_run_as_the_image_user(target: str) -> None:
    """The pods' runAsUser/runAsGroup are the image's USER, so files the image owns stay readable."""
    uid, _, gid = _last(_stages()[-1], "USER").partition(":")
    for name, spec in pod_specs(manifests(target)):
        pod = spec["securityContext"]
        assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid)), name


def test_entrypoint_is_the_switchboard_command() -> None:
    """ENTRYPOINT is the `switchboard` command, so a Deployment's args pick the service."""
    assert _last(_stages()[-1], "ENTRYPOINT") == '["switchboard"]'


def test_dockerignore_keeps_out_local_state_but_not_the_sources() -> None:
    """The build context leaves out .git, the virtualenv and tests, and keeps what the wheel is built from."""
    ignored = {
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    }
    assert {".git", ".venv", "tests"} <= ignored
    copied = [rest.split()[:-1] for kw, rest in _stages()[0].instructions if kw == "COPY"]
    for sources in copied:
        for source in sources:
            assert source not in ignored and (REPO / source).exists(), source
