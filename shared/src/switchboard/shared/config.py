"""Configuration, read once from the environment at start-up (nothing deeper reads ``os.environ``).

The variables are the public contract in ARCHITECTURE.md; a few ``SWITCHBOARD_*``/``SESSION_*`` extras
tune internals. Secrets are wrapped in `Secret` so they never show in a repr, a log line or an error.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import msgspec

from switchboard.shared.errors import ConfigError
from switchboard.shared.webhooks import parse_secrets


class Secret:
    """A value that must not be printed: its repr and str are masked; `reveal()` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


class Variable(msgspec.Struct, frozen=True):
    """One environment variable of the contract: what `--help` and the docs' configuration table say."""

    name: str
    default: str
    meaning: str


VARIABLES = {
    v.name: v
    for v in (
        Variable("NATS_URL", "required (the CLI finds the `switchboard up` run from this folder)", "the NATS cluster"),
        Variable("OPENAI_API_KEY", "required (`up`/`demo`: unset runs the emulator)",
                 "bearer key for REST and the sideband"),
        Variable("OPENAI_WEBHOOK_SECRET", "required (`up`/`demo` with the emulator: generated)",
                 "whsec_… webhook secret, comma-separated for rotation"),
        Variable("OPENAI_BASE_URL", DEFAULT_OPENAI_BASE_URL, "OpenAI's REST base; the sideband URL is derived"),
        Variable("SWITCHBOARD_POLICY", "the built-in policy", "path of the routing policy (YAML)"),
        Variable("EMULATOR_PORT", "8100", "the emulator's HTTP port"),
        Variable("INGRESS_PORT", "8080", "the ingress's HTTP port (webhooks, health, metrics)"),
        Variable("INGRESS_HOST", "0.0.0.0", "the address the ingress listens on"),
        Variable("INGRESS_MAX_BODY_BYTES", "1048576", "largest webhook body read; larger ones get 413"),
        Variable("SESSION_MAX_CALLS", "100", "live calls per session worker at most"),
        Variable("SESSION_DRAIN_GRACE_S", "10", "on SIGTERM, how long calls run on before they are handed over"),
        Variable("SWITCHBOARD_WORKER", "<hostname>-<pid>", "this worker's name in session.* events"),
        Variable("HEALTH_PORT", "any free port, printed at start", "GET /healthz, /readyz, /metrics; off: none"),
        Variable("SWITCHBOARD_REFER_TIMEOUT_S", "30", "a call still up this long after a refer is suspect"),
        Variable("SWITCHBOARD_STREAM_REPLICAS", "1", "replicas of the CALLS stream and the KV buckets"),
        Variable("SWITCHBOARD_STREAM_MAX_AGE_S", "604800", "how long events are kept (and the projections' TTL)"),
        Variable("SWITCHBOARD_DUPLICATE_WINDOW_S", "120", "how long the stream remembers a message id"),
        Variable("SWITCHBOARD_LOG_FORMAT", "console", "console or json logs on stderr"),
        Variable("SWITCHBOARD_NATS_FAST_PATH", "on", "off: nats-py's public API only"),
        Variable("CONSOLE_PORT", "8090", "the console's HTTP port"),
        Variable("CONSOLE_HOST", "0.0.0.0", "the address the console listens on"),
        Variable("SWITCHBOARD_CONSOLE_TOKEN", "required with the token sign-in (`up`/`demo`: generated)",
                 "the console's sign-in token"),
        Variable("SWITCHBOARD_CONSOLE_AUTH", "token",
                 "token: sign in with the token; proxy: trust X-Auth-Request-Email from oauth2-proxy"),
        Variable("SWITCHBOARD_TRACE_URL", "none: no link",
                 "the console's link to a call's trace, {trace_id} filled in (Jaeger, Tempo, Grafana)"),
        Variable("LOG_LEVEL", "info", "debug, info, warning or error"),
    )
}  # fmt: skip
"""Every variable `load` reads (tests/unit/test_config.py holds it to `load` and to the docs' table)."""

_LOGGING = ("SWITCHBOARD_LOG_FORMAT", "LOG_LEVEL")
_STREAM = ("SWITCHBOARD_STREAM_REPLICAS", "SWITCHBOARD_STREAM_MAX_AGE_S", "SWITCHBOARD_NATS_FAST_PATH")
READS = {
    "ingress": ("NATS_URL", "OPENAI_WEBHOOK_SECRET", "INGRESS_PORT", "INGRESS_HOST", "INGRESS_MAX_BODY_BYTES",
                *_STREAM, "SWITCHBOARD_DUPLICATE_WINDOW_S", *_LOGGING),
    "controller": ("NATS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "SWITCHBOARD_POLICY", "HEALTH_PORT",
                   "SWITCHBOARD_REFER_TIMEOUT_S", *_STREAM, *_LOGGING),
    "session": ("NATS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "SWITCHBOARD_WORKER", "SESSION_MAX_CALLS",
                "SESSION_DRAIN_GRACE_S", "HEALTH_PORT", *_STREAM, *_LOGGING),
    "projector": ("NATS_URL", "HEALTH_PORT", *_STREAM, *_LOGGING),
    "console": ("NATS_URL", "CONSOLE_PORT", "CONSOLE_HOST", "SWITCHBOARD_CONSOLE_TOKEN", "SWITCHBOARD_CONSOLE_AUTH",
                "SWITCHBOARD_TRACE_URL", *_STREAM, *_LOGGING),
    "emulator": ("EMULATOR_PORT", "INGRESS_PORT", "OPENAI_API_KEY", "OPENAI_WEBHOOK_SECRET", *_LOGGING),
    "local": tuple(VARIABLES),  # up and demo run everything
    "log": ("NATS_URL", "SWITCHBOARD_STREAM_MAX_AGE_S", "SWITCHBOARD_NATS_FAST_PATH", *_LOGGING),
    "call": ("EMULATOR_PORT",),
    "policy": ("NATS_URL", "SWITCHBOARD_POLICY", *_LOGGING),
}  # fmt: skip
"""Which variables each service (and each kind of CLI command) reads: its `--help` lists them."""


def environment_help(reader: str) -> str:
    """The `--help` epilog listing the variables `reader` (a key of `READS`) reads, with their defaults."""
    names = READS[reader]
    width = max(len(n) for n in names)
    lines = []
    for n in names:
        v = VARIABLES[n]
        default = v.default if v.default.startswith("required") else f"default {v.default}"
        lines.append(f"  {n:<{width}}  {v.meaning}; {default}")
    return "environment:\n" + "\n".join(lines)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a service needs to know about its surroundings."""

    nats_url: str | None = None
    openai_api_key: Secret | None = None
    webhook_secrets: tuple[Secret, ...] = ()
    openai_base_url: str = DEFAULT_OPENAI_BASE_URL
    policy_path: str | None = None
    emulator_port: int = 8100
    ingress_port: int = 8080
    ingress_host: str = "0.0.0.0"
    ingress_max_body_bytes: int = 1024 * 1024
    stream_replicas: int = 1
    stream_max_age_s: float = 7 * 24 * 3600.0
    duplicate_window_s: float = 120.0
    health_port: int | None = 0
    """The side door's port: 0 for any free one, None for none."""
    refer_timeout_s: float = 30.0
    session_max_calls: int = 100
    session_drain_grace_s: float = 10.0
    worker_name: str = ""
    log_format: str = "console"
    log_level: str = "info"
    nats_fast_path: bool = True
    console_port: int = 8090
    console_host: str = "0.0.0.0"
    console_token: Secret | None = None
    console_auth: str = "token"
    """``token`` (sign in with `console_token`) or ``proxy`` (behind oauth2-proxy: X-Auth-Request-Email)."""
    trace_url: str | None = None
    """The console's link to a call's trace: a URL with ``{trace_id}`` (e.g. Jaeger's ``…/trace/{trace_id}``)."""

    def require_nats_url(self) -> str:
        if not self.nats_url:
            raise ConfigError(
                "NATS_URL is not set: export NATS_URL=nats://HOST:4222 (the switchboard command also finds "
                "a `switchboard up` running from this folder)"
            )
        return self.nats_url

    def require_api_key(self) -> Secret:
        if self.openai_api_key is None:
            raise ConfigError("OPENAI_API_KEY is required")
        return self.openai_api_key

    def require_webhook_secrets(self) -> tuple[Secret, ...]:
        if not self.webhook_secrets:
            raise ConfigError("OPENAI_WEBHOOK_SECRET is required (whsec_…, comma-separated for rotation)")
        return self.webhook_secrets


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float | None = None) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {value}")
    if minimum is None and value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _health_port(env: Mapping[str, str]) -> int | None:
    raw = (env.get("HEALTH_PORT") or "").strip().lower()
    if raw == "off":
        return None
    port = _int(env, "HEALTH_PORT", 0)
    if raw and port == 0:
        return None  # HEALTH_PORT=0 has always meant off
    if port > 65535:
        raise ConfigError(f"HEALTH_PORT must be a port (1-65535) or 'off', got {port}")
    return port


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"{name} must be 'on' or 'off', got {raw!r}")


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Build `Settings` from an environment mapping (default: the process environment)."""
    env = os.environ if env is None else env
    key = env.get("OPENAI_API_KEY") or None
    base_url = (env.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"OPENAI_BASE_URL must be an http(s) URL, got {base_url!r}")
    log_format = env.get("SWITCHBOARD_LOG_FORMAT", "console")
    if log_format not in ("console", "json"):
        raise ConfigError(f"SWITCHBOARD_LOG_FORMAT must be 'console' or 'json', got {log_format!r}")
    return Settings(
        nats_url=env.get("NATS_URL") or None,
        openai_api_key=Secret(key) if key else None,
        webhook_secrets=tuple(Secret(s) for s in parse_secrets(env.get("OPENAI_WEBHOOK_SECRET", ""))),
        openai_base_url=base_url,
        policy_path=env.get("SWITCHBOARD_POLICY") or None,
        emulator_port=_int(env, "EMULATOR_PORT", 8100),
        ingress_port=_int(env, "INGRESS_PORT", 8080),
        ingress_host=env.get("INGRESS_HOST", "0.0.0.0"),
        ingress_max_body_bytes=_int(env, "INGRESS_MAX_BODY_BYTES", 1024 * 1024, minimum=1),
        stream_replicas=_int(env, "SWITCHBOARD_STREAM_REPLICAS", 1, minimum=1),
        stream_max_age_s=_float(env, "SWITCHBOARD_STREAM_MAX_AGE_S", 7 * 24 * 3600.0),
        duplicate_window_s=_float(env, "SWITCHBOARD_DUPLICATE_WINDOW_S", 120.0),
        health_port=_health_port(env),
        refer_timeout_s=_float(env, "SWITCHBOARD_REFER_TIMEOUT_S", 30.0),
        session_max_calls=_int(env, "SESSION_MAX_CALLS", 100, minimum=1),
        session_drain_grace_s=_float(env, "SESSION_DRAIN_GRACE_S", 10.0, minimum=0.0),
        worker_name=env.get("SWITCHBOARD_WORKER") or f"{socket.gethostname()}-{os.getpid()}",
        log_format=log_format,
        log_level=env.get("LOG_LEVEL", "info").lower(),
        nats_fast_path=_switch(env, "SWITCHBOARD_NATS_FAST_PATH", True),
        console_port=_int(env, "CONSOLE_PORT", 8090),
        console_host=env.get("CONSOLE_HOST", "0.0.0.0"),
        console_token=Secret(token) if (token := env.get("SWITCHBOARD_CONSOLE_TOKEN")) else None,
        console_auth=_console_auth(env),
        trace_url=_trace_url(env),
    )


def _trace_url(env: Mapping[str, str]) -> str | None:
    template = env.get("SWITCHBOARD_TRACE_URL") or None
    if template is not None and "{trace_id}" not in template:
        raise ConfigError(f"SWITCHBOARD_TRACE_URL must contain {{trace_id}}, got {template!r}")
    return template


def _console_auth(env: Mapping[str, str]) -> str:
    raw = (env.get("SWITCHBOARD_CONSOLE_AUTH") or "token").strip().lower()
    if raw not in ("token", "proxy"):
        raise ConfigError(f"SWITCHBOARD_CONSOLE_AUTH must be 'token' or 'proxy', got {raw!r}")
    return raw
