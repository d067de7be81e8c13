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
    "projector": {"NATS_URL"},
    "console": {"NATS_URL"},  # behind oauth2-proxy (SWITCHBOARD_CONSOLE_AUTH=proxy): no token
}
# The secrets each service is given, and no more: the projector talks to NATS only.
SECRETS = {
    "ingress": {"NATS_URL", "OPENAI_WEBHOOK_SECRET"},
    "controller": {"NATS_URL", "OPENAI_API_KEY"},
    "session": {"NATS_URL", "OPENAI_API_KEY"},
    "projector": {"NATS_URL"},
    "console": {"NATS_URL"},  # behind oauth2-proxy (SWITCHBOARD_CONSOLE_AUTH=proxy): no token
}
# The settings every service must share: the stream's (which the services create idempotently, and whose
# replicas and retention the projector also gives the KV buckets it creates) and the log format.
SHARED = ("SWITCHBOARD_STREAM_REPLICAS", "SWITCHBOARD_STREAM_MAX_AGE_S", "SWITCHBOARD_DUPLICATE_WINDOW_S",
          "SWITCHBOARD_LOG_FORMAT")  # fmt: skip


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


@pytest.mark.parametrize("target", TARGETS)
def test_each_service_gets_only_its_own_secrets(target: str) -> None:
    """Each service gets exactly its secrets (from Secrets), its NATS URL under its own key: no OpenAI key
    where none is needed (the projector), no other service's NATS user."""
    m = manifests(target)
    for service in SERVICES:
        env = m.env(service)
        from_secrets = {name for name, entry in env.items() if "secretKeyRef" in entry.get("valueFrom", {})}
        assert from_secrets == SECRETS[service], service
        ref = env["NATS_URL"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("switchboard-nats", f"{service}-url"), service


@pytest.mark.parametrize("target", TARGETS)
def test_every_service_shares_the_stream_settings(target: str) -> None:
    """The stream settings and log format are the same for every service (one ConfigMap), so whichever
    service creates the stream or a KV bucket first creates it the same way."""
    m = manifests(target)
    for name in SHARED:
        values = {service: m.env(service)[name]["value"] for service in SERVICES}
        assert len(set(values.values())) == 1, f"{target}: {name} differs: {values}"
