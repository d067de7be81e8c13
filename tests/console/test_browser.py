"""The console in a real headless browser (the system's chromium, driven by Playwright): sign in with the
token, watch a call appear and its transcript grow, hang it up, and find the operator in the log.

Skipped, saying so, when no chromium is installed (`apt-get install chromium`; `.ci/run` installs it).
With SWITCHBOARD_SCREENSHOTS=DIR set, each page is also saved as DIR/console-<page>.png (docs/ holds them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Locator, Page, async_playwright, expect

from switchboard.cli.local import LocalSystem
from switchboard.cli.natsserver import NatsServer
from switchboard.shared.bus import Bus
from switchboard.shared.config import Secret
from tests.console.conftest import TOKEN, console_url, emulator
from tests.fixtures.system import running
from tests.reading import stored
from tests.waiting import eventually

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = os.environ.get("SWITCHBOARD_SCREENSHOTS")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed: apt-get install chromium runs these"),
    pytest.mark.slow,
    pytest.mark.timeout(120),
]


@pytest.fixture
async def talking_system(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[LocalSystem]:
    """Everything local, callers at a third of real pace, so a call talks for a while."""
    async with running(nats_server, tmp_path, workers=1, pace=0.3, console_port=0,
                       console_token=Secret(TOKEN)) as local:  # fmt: skip
        yield local


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    assert CHROMIUM is not None
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            tab = await context.new_page()
            tab.set_default_timeout(20_000)
            yield tab
        finally:
            await browser.close()


async def _screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"console-{name}.png"), full_page=True)


async def test_an_operator_watches_a_call_live_and_hangs_it_up(
    talking_system: LocalSystem, page: Page, bus: Bus
) -> None:
    """Token sign-in, the call's row goes live, its transcript grows, Hang up ends it, the log names alice."""
    system = talking_system
    base = console_url(system)
    earlier = [emulator(system).place_call(f"+1415555020{i}", "+18005550100", script="silent") for i in range(4)]
    hub = system.console.hub  # type: ignore[union-attr]
    await eventually(lambda: all(c in hub.board.records and hub.board.records[c].ended_at for c in earlier),
                     timeout=30, what="the earlier calls ended")  # fmt: skip
    await page.goto(f"{base}/?token={TOKEN}&name=alice")
    assert page.url == f"{base}/"
    await expect(page.get_by_role("heading", name="Live calls")).to_be_visible()
    await expect(page.locator("#operator")).to_have_text("alice")

    call_id = emulator(system).place_call("+14155550101", "+18005550100", script="chatter")
    row = page.locator(f"#call-{call_id}")
    await expect(row.locator("td.state")).to_have_text("live")
    await expect(row).to_contain_text("+14155550101")
    await expect(row).to_contain_text("worker-1")
    first = await row.locator("td.duration").inner_text()
    await expect(row.locator("td.duration")).not_to_have_text(first)  # the duration ticks
    await _screenshot(page, "live")

    await row.get_by_role("link").click()
    await expect(page).to_have_url(f"{base}/calls/{call_id}")
    turns = page.locator("#transcript .turn")
    await expect(turns.first).to_be_visible()
    seen = await turns.count()
    await eventually(lambda: _more(turns, seen), timeout=20, what="the transcript grew")
    await expect(page.locator("#timeline")).to_contain_text("claimed")

    await page.get_by_role("button", name="Hang up").click()
    await expect(page.locator("#outcome")).to_contain_text("ok: hung up")
    await expect(page.locator("#phase")).to_have_text("ended")
    await expect(page.locator("#end-reason")).to_have_text("hangup")
    await expect(page.locator("#timeline")).to_contain_text("command: hangup")
    await _screenshot(page, "call")

    hangups = await stored(bus, call_id, "command.hangup")
    assert [(e.data["ok"], e.data["operator"]) for e in hangups] == [(True, "alice")]

    await page.get_by_role("link", name="Recent calls").click()
    await expect(page.locator("#recent")).to_contain_text(call_id[:16])
    await expect(page.locator("#recent")).to_contain_text("hangup")
    await _screenshot(page, "recent")


async def _more(turns: Locator, than: int) -> bool:
    return await turns.count() > than


async def test_without_the_token_the_browser_sees_only_the_sign_in_form(
    talking_system: LocalSystem, page: Page
) -> None:
    """A browser that never had the token: the sign-in form, no table of calls."""
    emulator(talking_system).place_call("+14155550101", "+18005550100", script="hold")
    await page.goto(console_url(talking_system) + "/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await page.locator("table").count() == 0
    await _screenshot(page, "signin")
