"""The environment the manifests give each service is the one the code reads: nothing unknown, nothing missing."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from switchboard.shared import config
from tests.deploy.manifests import SERVICES, TARGETS, manifests

# What each service refuses to start without (the `Settings.require_*` calls in its constructor).
REQUIRED = {
    "ingress": {"NATS_URL", "OPENAI_WEBHOOK_SECRET"},
    "controller": {"NATS_URL", "OPENAI_API_KEY"},
    "session": {"NATS_URL", "OPENAI_API_KEY"},
}


class _RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every variable asked of it."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_the_code_reads() -> set[str]:
    env = _RecordingEnv()
    config.load(env)
    return env.asked


def test_the_code_reads_the_documented_core_variables() -> None:
    """The recording environment sees what `config.load()` reads (a sanity check of the recorder itself)."""
    assert {"NATS_URL", "OPENAI_API_KEY", "OPENAI_WEBHOOK_SECRET", "SESSION_MAX_CALLS"} <= variables_the_code_reads()


@pytest.mark.parametrize("target", TARGETS)
def test_manifests_set_only_variables_the_code_reads(target: str) -> None:
    """Every variable a manifest sets is one `config.load()` reads: no typo, no leftover, no dead setting."""
    m = manifests(target)
    known = variables_the_code_reads()
    unknown = {service: sorted(set(m.env(service)) - known) for service in SERVICES}
    assert not any(unknown.values()), f"{target}: variables the code never reads: {unknown}"


@pytest.mark.parametrize("target", TARGETS)
def test_each_service_gets_the_variables_it_requires(target: str) -> None:
    """Each service's container sets the variables that service cannot start without."""
    m = manifests(target)
    missing = {service: sorted(REQUIRED[service] - set(m.env(service))) for service in SERVICES}
    assert not any(missing.values()), f"{target}: missing required variables: {missing}"


@pytest.mark.parametrize("target", TARGETS)
def test_configured_values_load(target: str) -> None:
    """The plain (non-secret) values the manifests set are ones `config.load()` accepts."""
    m = manifests(target)
    for service in SERVICES:
        plain = {name: entry["value"] for name, entry in m.env(service).items() if "value" in entry}
        settings = config.load(plain)
        assert settings.log_format == plain.get("SWITCHBOARD_LOG_FORMAT", settings.log_format)
