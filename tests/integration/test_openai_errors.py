"""OpenAI errors name their subject: the URL asked and the status answered, or why nothing was answered."""

from __future__ import annotations

import pytest

from switchboard.cli.natsserver import free_port
from switchboard.emulator.server import Emulator
from switchboard.shared.config import Secret
from switchboard.shared.errors import UpstreamError
from switchboard.shared.openai import CallsClient, RetryPolicy, Sideband


async def test_an_unreachable_openai_is_named_by_the_url_asked() -> None:
    """Nothing listening at OPENAI_BASE_URL: the error says which POST failed and why."""
    base = f"http://127.0.0.1:{free_port()}/v1"
    calls = CallsClient(base, Secret("sk-test"), retry=RetryPolicy(attempts=1))
    try:
        with pytest.raises(UpstreamError) as failed:
            await calls.accept("rtc_x", {"type": "realtime"})
    finally:
        await calls.aclose()
    assert f"OpenAI accept failed: POST {base}/realtime/calls/rtc_x/accept: " in str(failed.value)
    assert "sk-test" not in str(failed.value)


async def test_an_openai_refusal_names_the_status_and_the_url(wired_emulator: Emulator) -> None:
    """A 404 from OpenAI reads ``OpenAI answered 404 to POST <url>: <its message>``, with its code kept."""
    calls = CallsClient(wired_emulator.base_url, Secret(wired_emulator.config.api_key), retry=RetryPolicy(attempts=1))
    try:
        with pytest.raises(UpstreamError) as refused:
            await calls.hangup("rtc_nobody")
    finally:
        await calls.aclose()
    assert str(refused.value).startswith(
        f"OpenAI answered 404 to POST {wired_emulator.base_url}/realtime/calls/rtc_nobody/hangup"
    )
    assert refused.value.status == 404


async def test_a_sideband_that_cannot_connect_names_its_url() -> None:
    """No server for the sideband: the error names the wss/ws URL it tried."""
    base = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(
        UpstreamError, match=r"sideband connect to ws://127\.0\.0\.1:\d+/v1/realtime\?call_id=rtc_x failed"
    ):
        await Sideband.open(base, "rtc_x", Secret("sk-test"))


async def _check(base_url: str, key: str) -> str | None:
    calls = CallsClient(base_url, Secret(key))
    try:
        return await calls.check()
    finally:
        await calls.aclose()


async def test_the_start_up_check_passes_on_a_working_openai(wired_emulator: Emulator) -> None:
    """The right base URL and key: the start-up check finds nothing to say."""
    assert await _check(wired_emulator.base_url, wired_emulator.config.api_key) is None


async def test_the_start_up_check_names_an_unreachable_base_url() -> None:
    """Nothing listening at OPENAI_BASE_URL: the check says it cannot reach the URL it asked."""
    base = f"http://127.0.0.1:{free_port()}/v1"
    problem = await _check(base, "sk-test")
    assert problem is not None and problem.startswith(f"cannot reach OpenAI: GET {base}/models: ConnectError")


async def test_the_start_up_check_names_a_refused_key(wired_emulator: Emulator) -> None:
    """A wrong OPENAI_API_KEY: the check says OpenAI refused it (and never shows the key)."""
    problem = await _check(wired_emulator.base_url, "sk-wrong")
    assert problem == f"OpenAI refused OPENAI_API_KEY: GET {wired_emulator.base_url}/models answered 401"


async def test_the_start_up_check_names_a_base_url_that_is_not_the_api(wired_emulator: Emulator) -> None:
    """A base URL without ``/v1``: the check asks whether it is OpenAI's API."""
    base = wired_emulator.base_url.removesuffix("/v1")
    problem = await _check(base, wired_emulator.config.api_key)
    assert problem == f"GET {base}/models answered 404: is OPENAI_BASE_URL OpenAI's API (it ends in /v1)?"
