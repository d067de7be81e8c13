"""Signing in to the console: the token URL once, an HttpOnly SameSite=Strict cookie, and nothing shown without it."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from switchboard.cli.local import LocalSystem
from switchboard.cli.main import _banner
from tests.console.conftest import TOKEN, console_url, emulator
from tests.e2e.conftest import attached_call


async def test_without_signing_in_no_page_or_stream_shows_a_call(
    system: LocalSystem, anonymous: aiohttp.ClientSession
) -> None:
    """Not signed in: the pages answer 401 with the sign-in form, the streams and actions 401; no call id shows."""
    call_id = await attached_call(emulator(system))
    base = console_url(system)
    for path in ("/", "/calls", f"/calls/{call_id}", "/events?after=0", f"/calls/{call_id}/events?after=0"):
        async with anonymous.get(base + path) as r:
            body = await r.text()
            assert r.status == 401, path
            assert call_id not in body, path
    async with anonymous.get(base + "/") as r:
        assert "Sign in" in await r.text()
    async with anonymous.post(f"{base}/calls/{call_id}/hangup", headers={"Origin": base}) as r:
        assert r.status == 401


async def test_the_token_url_sets_an_httponly_strict_cookie_and_leaves_the_token_out_of_the_address(
    system: LocalSystem, anonymous: aiohttp.ClientSession
) -> None:
    """`/?token=<token>` answers 303 to `/` with an HttpOnly, SameSite=Strict cookie; `/` then shows live calls."""
    base = console_url(system)
    async with anonymous.get(f"{base}/?token={TOKEN}", allow_redirects=False) as r:
        assert r.status == 303
        assert r.headers["Location"] == "/"
        cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    async with anonymous.get(base + "/") as r:
        assert r.status == 200
        assert "Live calls" in await r.text()


async def test_a_wrong_token_is_refused_with_the_sign_in_form(
    system: LocalSystem, anonymous: aiohttp.ClientSession
) -> None:
    """A token that is not the console's: 401, the form says so, and no cookie is set."""
    async with anonymous.get(f"{console_url(system)}/?token=not-it", allow_redirects=False) as r:
        assert r.status == 401
        assert "not the console" in await r.text()
        assert "Set-Cookie" not in r.headers


async def test_a_cookie_altered_by_hand_signs_nobody_in(system: LocalSystem, anonymous: aiohttp.ClientSession) -> None:
    """A session cookie naming another operator than the one it was made for is refused."""
    base = console_url(system)
    anonymous.cookie_jar.update_cookies({"switchboard_console": "Ym9i.0000"})
    async with anonymous.get(base + "/") as r:
        assert r.status == 401


async def test_the_banner_of_up_prints_the_consoles_url_with_its_token(system: LocalSystem, tmp_path: Path) -> None:
    """`switchboard up` prints `Console at http://127.0.0.1:PORT/?token=…`, the URL that signs in."""
    assert system.settings.nats_url is not None
    lines = _banner(system, tmp_path, system.settings.nats_url)
    assert f"  Console at {console_url(system)}/?token={TOKEN} (open it once to sign in)" in lines
