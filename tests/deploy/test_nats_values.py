"""The NATS Helm values: a three-server JetStream cluster on volumes, lame-duck shutdown, per-service users."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from switchboard.controller.service import CONSUMER as CONTROLLER_CONSUMER
from switchboard.controller.service import ENDED_CONSUMER as CONTROLLER_ENDED_CONSUMER
from switchboard.controller.service import REFERS_CONSUMER as CONTROLLER_REFERS_CONSUMER
from switchboard.projector.service import SUBSCRIPTION as PROJECTOR_CONSUMER
from switchboard.session.worker import CONSUMER as SESSION_CONSUMER
from switchboard.shared.events import STREAM
from switchboard.shared.projections import PROJECTIONS
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


# The durable consumers on CALLS, by the service (user) whose code names them.
CONSUMERS = {
    "controller": (CONTROLLER_CONSUMER, CONTROLLER_ENDED_CONSUMER, CONTROLLER_REFERS_CONSUMER),
    "session": (SESSION_CONSUMER,),
    "projector": (PROJECTOR_CONSUMER,),
}


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, `>` one or more at the end."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or (token != "*" and token != tokens[i]):
            return False
    return len(wanted) == len(tokens)


def _may_publish(user: dict[str, Any], subject: str) -> bool:
    publish = user["permissions"]["publish"]
    allowed = any(_matches(p, subject) for p in publish["allow"])
    return allowed and not any(_matches(p, subject) for p in publish.get("deny", []))


def _consumer_subjects(consumer: str) -> dict[str, str]:
    return {
        "pull": f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{consumer}",
        "ack": f"$JS.ACK.{STREAM}.{consumer}.1.2.3.1700000000000000000.0",
        "create": f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.{consumer}",
        "create by name": f"$JS.API.CONSUMER.CREATE.{STREAM}.{consumer}",
        "create with filter": f"$JS.API.CONSUMER.CREATE.{STREAM}.{consumer}.calls.*.incoming",
        "delete": f"$JS.API.CONSUMER.DELETE.{STREAM}.{consumer}",
    }


def test_no_user_can_take_another_services_consumer() -> None:
    """Each service may create, pull from and acknowledge its own durable consumers; no other user may
    create, pull from, acknowledge or delete them (the apps and projector users' wildcards deny them)."""
    users = {u["user"]: u for u in _users()}
    problems = []
    for owner, consumers in CONSUMERS.items():
        for consumer in consumers:
            subjects = _consumer_subjects(consumer)
            for action in ("pull", "ack", "create"):
                if not _may_publish(users[owner], subjects[action]):
                    problems.append(f"{owner} may not {action} its own consumer {consumer}")
            for name, user in users.items():
                if name == owner:
                    continue
                problems += [f"{name} may {a} {owner}'s consumer {consumer}" for a, subject in subjects.items()
                             if _may_publish(user, subject)]  # fmt: skip
    assert not problems, "\n".join(problems)


def test_only_the_projector_writes_the_projections_and_apps_reads_them() -> None:
    """The projections' buckets: the projector creates, writes and purges them; apps only reads them, the
    console only call_state and call_records; the other services cannot touch them."""
    users = {u["user"]: u for u in _users()}
    for projection in PROJECTIONS:
        bucket, stream = projection.name, f"KV_{projection.name}"
        writes = [f"$KV.{bucket}.rtc_1", f"$JS.API.STREAM.CREATE.{stream}", f"$JS.API.STREAM.PURGE.{stream}"]
        reads = [f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.STREAM.MSG.GET.{stream}",
                 f"$JS.API.DIRECT.GET.{stream}.$KV.{bucket}.rtc_1"]  # fmt: skip
        for name, user in users.items():
            may_write = name == "projector"
            # The console starts from the call state and records (it folds transcripts from the log).
            may_read = name in ("projector", "apps") or (name == "console" and bucket != "transcripts")
            assert all(_may_publish(user, s) == may_write for s in writes), (name, bucket)
            assert all(_may_publish(user, s) == may_read for s in reads), (name, bucket)
