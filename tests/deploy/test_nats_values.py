"""The NATS Helm values: a three-server JetStream cluster on volumes, lame-duck shutdown, per-service users."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import NATS_DEV_VALUES, NATS_VALUES, SERVICES, manifests

ENV_REFERENCE = re.compile(r"^<< \$([A-Z][A-Z0-9_]*) >>$")


def _values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(NATS_VALUES.read_text())
    return loaded


def _users() -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = _values()["config"]["merge"]["accounts"]["SWITCHBOARD"]["users"]
    return users


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match.group(1))


def test_nats_runs_three_servers_with_jetstream_on_volumes() -> None:
    """Three clustered servers, JetStream on a persistent volume each, no memory store."""
    config = _values()["config"]
    assert config["cluster"]["enabled"] is True and config["cluster"]["replicas"] == 3
    jetstream = config["jetstream"]
    assert jetstream["enabled"] is True and jetstream["memoryStore"]["enabled"] is False
    assert jetstream["fileStore"]["enabled"] is True and jetstream["fileStore"]["pvc"]["enabled"] is True
    assert re.fullmatch(r"\d+Gi", jetstream["fileStore"]["pvc"]["size"])
    assert _values()["podDisruptionBudget"]["enabled"] is True


def test_lame_duck_finishes_within_the_termination_grace() -> None:
    """A stopping server's lame-duck period (grace + duration) ends before Kubernetes would kill it."""
    values = _values()
    merge = values["config"]["merge"]
    lame_duck_s = _seconds(merge["lame_duck_grace_period"]) + _seconds(merge["lame_duck_duration"])
    assert values["podTemplate"]["merge"]["spec"]["terminationGracePeriodSeconds"] > lame_duck_s


@pytest.mark.parametrize(
    ("overlay", "values_files"), [("prod", [NATS_VALUES]), ("dev", [NATS_VALUES, NATS_DEV_VALUES])]
)
def test_stream_replicas_match_the_nats_servers(overlay: str, values_files: list[Any]) -> None:
    """Prod keeps the CALLS stream on three servers (R3) of a three-server cluster; dev on its single server."""
    replicas = int(manifests(overlay).env("ingress")["SWITCHBOARD_STREAM_REPLICAS"]["value"])
    cluster: dict[str, Any] = {}
    for path in values_files:
        cluster.update(yaml.safe_load(path.read_text())["config"]["cluster"])
    servers = cluster["replicas"] if cluster["enabled"] else 1
    assert replicas == servers == (3 if overlay == "prod" else 1)


def test_passwords_are_environment_references_filled_from_a_secret() -> None:
    """No password is written in the values: each is `<< $VAR >>`, and VAR comes from a Secret."""
    env = _values()["container"]["env"]
    for user in _users():
        match = ENV_REFERENCE.match(user["password"])
        assert match, f"{user['user']}: password must be an environment reference"
        assert "secretKeyRef" in env[match.group(1)]["valueFrom"], user["user"]


def test_each_service_has_its_own_user_with_allow_lists() -> None:
    """Every service (and other apps) has its own user whose publish and subscribe rights are allow-lists."""
    users = {u["user"]: u for u in _users()}
    assert set(users) == {*SERVICES, "apps"}
    for name, user in users.items():
        permissions = user["permissions"]
        assert permissions["publish"]["allow"] and permissions["subscribe"]["allow"], name
        assert ">" not in permissions["publish"]["allow"] and "calls.>" not in permissions["publish"]["allow"], name
