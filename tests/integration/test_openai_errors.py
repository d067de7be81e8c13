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
