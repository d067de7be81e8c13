"""Which proxy the OpenAI REST client uses: the one the environment names, as httpx would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from switchboard.shared.openai import http_proxy


@pytest.fixture(autouse=True)
def fresh_lookup() -> Iterator[None]:
    http_proxy.cache_clear()
    yield
    http_proxy.cache_clear()


def test_https_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY names the proxy for an https API."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert http_proxy("https", "api.openai.com") == "http://proxy.internal:3128"


def test_no_proxy_hosts_are_reached_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host listed in NO_PROXY is not sent through the proxy."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    assert http_proxy("https", "api.openai.com") is None


def test_without_proxy_settings_requests_go_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variables: no proxy."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert http_proxy("https", "api.openai.com") is None


def test_all_proxy_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """ALL_PROXY applies when no proxy is named for the scheme."""
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", "http://proxy.internal:3128")
    assert http_proxy("https", "api.openai.com") == "http://proxy.internal:3128"
