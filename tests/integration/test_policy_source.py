"""Policy hot reload against a real nats-server: file changes, KV pushes, and refusing bad versions."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import nats.js.errors
import pytest
from structlog.testing import capture_logs

from switchboard.controller.policy import PolicyError
from switchboard.controller.policy_source import (
    POLICY_KEY,
    PolicySource,
    policy_bucket,
    policy_version,
    push_policy,
    reset_policy,
)
from switchboard.shared.bus import Bus
from tests.waiting import eventually

FAST = timedelta(milliseconds=50)
Start = Callable[..., Awaitable[PolicySource]]

A = """\
version: 1
agents: {a: {instructions: x}}
rules:
  - name: first
    when: {dialled: "+1555"}
    accept: {agent: a}
default: {reject: closed}
"""
B = A.replace("name: first", "name: second")
C = A.replace("name: first", "name: third")
BAD = A.replace("accept: {agent: a}", "accept: {agent: nobody}")


def write(path: Path, text: str) -> None:
    """Replace the file in one step, as editors and Kubernetes ConfigMaps do."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
async def sources() -> AsyncIterator[list[PolicySource]]:
    """Sources a test starts; all stopped afterwards."""
    started: list[PolicySource] = []
    yield started
    for source in started:
        await source.stop()


@pytest.fixture
def start(sources: list[PolicySource]) -> Start:
    async def start_source(path: Path | None, bus: Bus | None = None) -> PolicySource:
        source = PolicySource(path, bus=bus, poll_interval=FAST, replica="test")
        sources.append(source)
        await source.start()
        return source

    return start_source


def rule_names(source: PolicySource) -> list[str]:
    return [r.name for r in source.current.rules]


async def test_a_changed_file_is_reloaded(tmp_path: Path, start: Start) -> None:
    """Editing the policy file puts the new policy in force without a restart."""
    path = tmp_path / "policy.yaml"
    write(path, A)
    source = await start(path)
    write(path, B)
    await eventually(lambda: rule_names(source) == ["second"], timeout=5, what="file reloaded")
    assert source.version == policy_version(B)


async def test_an_invalid_file_change_is_refused_and_the_old_policy_stays(
    tmp_path: Path, bus: Bus, start: Start
) -> None:
    """A bad edit is refused: the old policy stays in force and calls._policy.reload_refused says why."""
    path = tmp_path / "policy.yaml"
    write(path, A)
    source = await start(path, bus)
    write(path, BAD)
    refused = await eventually(lambda: bus.last_event("_policy", "reload_refused"), timeout=5, what="refusal")
    assert rule_names(source) == ["first"] and source.version == policy_version(A)
    assert refused.data["kept"] == policy_version(A)
    assert refused.data["problems"] == [
        f"{path.resolve()}:6 rules[0] (first): accept.agent: unknown agent 'nobody' (known: a)"
    ]


async def test_a_refused_reload_is_logged_with_its_problems(tmp_path: Path, start: Start) -> None:
    """The controller's log says policy_reload_refused, naming the problems."""
    path = tmp_path / "policy.yaml"
    write(path, A)
    with capture_logs() as logs:
        await start(path)
        write(path, BAD)
        await eventually(lambda: any(e["event"] == "policy_reload_refused" for e in logs), timeout=5)
    refusal = next(e for e in logs if e["event"] == "policy_reload_refused")
    assert refusal["log_level"] == "warning"
    assert "unknown agent 'nobody'" in refusal["problems"][0]


async def test_a_good_reload_is_recorded_in_the_log(tmp_path: Path, bus: Bus, start: Start) -> None:
    """Each reload is recorded as calls._policy.reloaded with the new version."""
    path = tmp_path / "policy.yaml"
    write(path, A)
    await start(path, bus)
    write(path, B)
    reloaded = await eventually(lambda: bus.last_event("_policy", "reloaded"), timeout=5, what="reloaded event")
    assert reloaded.data["version"] == policy_version(B)
    assert reloaded.data["origin"] == str(path.resolve())


async def test_a_deleted_file_keeps_the_policy_in_force(tmp_path: Path, bus: Bus, start: Start) -> None:
    """Removing the file is refused like a bad edit; the last good policy keeps deciding."""
    path = tmp_path / "policy.yaml"
    write(path, A)
    source = await start(path, bus)
    path.unlink()
    refused = await eventually(lambda: bus.last_event("_policy", "reload_refused"), timeout=5, what="refusal")
    assert "cannot read" in refused.data["problems"][0]
    assert rule_names(source) == ["first"]


async def test_a_policy_pushed_to_the_kv_is_taken_by_running_sources(tmp_path: Path, bus: Bus, start: Start) -> None:
    """``policy push`` reaches every running controller through the KV key."""
    path = tmp_path / "policy.yaml"
    write(path, A)
    one = await start(path, bus)
    two = await start(path, bus)
    version, revision = await push_policy(bus, B, source="b.yaml")
    await eventually(lambda: rule_names(one) == rule_names(two) == ["second"], timeout=5, what="kv reload")
    assert one.version == version and one.origin == f"kv:switchboard_policy/current@{revision}"


async def test_an_invalid_policy_in_the_kv_is_refused(tmp_path: Path, bus: Bus, start: Start) -> None:
    """A bad value written to the KV behind the CLI's back is refused; the old policy stays."""
    path = tmp_path / "policy.yaml"
    write(path, A)
    source = await start(path, bus)
    kv = await policy_bucket(bus)
    await kv.put(POLICY_KEY, BAD.encode())
    refused = await eventually(lambda: bus.last_event("_policy", "reload_refused"), timeout=5, what="refusal")
    assert refused.data["origin"].startswith("kv:switchboard_policy/current@")
    assert rule_names(source) == ["first"]


async def test_at_start_a_pushed_policy_wins_over_the_file(tmp_path: Path, bus: Bus, start: Start) -> None:
    """A controller that starts after a push runs the pushed policy, like the replicas already running."""
    path = tmp_path / "policy.yaml"
    write(path, A)
    await push_policy(bus, B, source="b.yaml")
    source = await start(path, bus)
    assert rule_names(source) == ["second"]


async def test_after_start_the_latest_change_wins(tmp_path: Path, bus: Bus, start: Start) -> None:
    """A file edit after a push replaces the pushed policy, and a later push replaces the edit."""
    path = tmp_path / "policy.yaml"
    write(path, A)
    source = await start(path, bus)
    await push_policy(bus, B, source="b.yaml")
    await eventually(lambda: rule_names(source) == ["second"], timeout=5, what="push taken")
    write(path, C)
    await eventually(lambda: rule_names(source) == ["third"], timeout=5, what="file taken")
    await push_policy(bus, A, source="a.yaml")
    await eventually(lambda: rule_names(source) == ["first"], timeout=5, what="second push taken")


async def test_an_invalid_file_at_start_is_refused(tmp_path: Path, start: Start) -> None:
    """A controller does not start on an invalid policy: PolicyError names the line and field."""
    path = tmp_path / "policy.yaml"
    write(path, BAD)
    with pytest.raises(PolicyError, match=r"policy.yaml:6 rules\[0\] \(first\): accept.agent"):
        await start(path)


async def test_push_refuses_an_invalid_policy_and_stores_nothing(bus: Bus) -> None:
    """An invalid policy never reaches the KV key."""
    with pytest.raises(PolicyError):
        await push_policy(bus, BAD, source="bad.yaml")
    kv = await policy_bucket(bus)
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await kv.get(POLICY_KEY)


async def test_without_a_path_the_built_in_policy_is_in_force(start: Start) -> None:
    """No SWITCHBOARD_POLICY: the built-in example policy decides."""
    source = await start(None)
    assert rule_names(source) == ["blocked-callers", "after-hours-desk", "support-line"]
    assert source.origin == "built-in"


def test_the_file_is_polled_every_second_by_default() -> None:
    """Without a poll interval given, the file is looked at once a second."""
    assert PolicySource(None).poll_interval == timedelta(seconds=1)


async def test_a_reset_puts_running_sources_back_on_their_file(tmp_path: Path, bus: Bus, start: Start) -> None:
    """``policy reset`` (deleting the pushed policy) sends every running controller back to its own file."""
    path = tmp_path / "policy.yaml"
    write(path, A)
    source = await start(path, bus)
    await push_policy(bus, B, source="b.yaml")
    await eventually(lambda: rule_names(source) == ["second"], timeout=5, what="push taken")
    await reset_policy(bus)
    await eventually(lambda: rule_names(source) == ["first"], timeout=5, what="back on the file")
    assert source.origin == str(path.resolve()) and source.version == policy_version(A)


async def test_a_pushed_policy_overriding_the_file_at_start_is_warned_about(
    tmp_path: Path, bus: Bus, start: Start
) -> None:
    """A controller starting with a file while a pushed policy is in force says so once, naming both."""
    path = tmp_path / "policy.yaml"
    write(path, A)
    await push_policy(bus, B, source="b.yaml")
    with capture_logs() as logs:
        await start(path, bus)
    warned = [e for e in logs if e["event"] == "policy_pushed_overrides_file"]
    assert len(warned) == 1
    assert warned[0]["file"] == str(path.resolve()) and warned[0]["version"] == policy_version(B)


async def test_a_policy_on_a_deprecated_model_loads_with_a_logged_warning(tmp_path: Path, start: Start) -> None:
    """The controller runs a policy whose agent uses gpt-realtime, and logs the warning `policy check` gives."""
    path = tmp_path / "policy.yaml"
    write(path, A.replace("{instructions: x}", "{instructions: x, model: gpt-realtime}"))
    with capture_logs() as logs:
        source = await start(path)
    assert source.current.agents["a"].model == "gpt-realtime"
    warned = [e for e in logs if e["event"] == "policy_warning"]
    assert [(e["log_level"], e["origin"]) for e in warned] == [("warning", str(path))]
    assert "'gpt-realtime' is deprecated" in warned[0]["warning"]
