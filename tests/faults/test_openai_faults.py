"""OpenAI slow to answer an accept, or failing it: bounded attempts, and each call accepted or failed, never both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from switchboard.shared.openai import RetryPolicy
from tests.faults._harness import (
    DIALLED,
    Rig,
    Tally,
    accept_attempts,
    accepts_ok,
    event_time,
    explain,
    greetings,
    hang_up_and_wait,
    per_call,
    read_log,
    settle,
)
from tests.faults.report import Row

ATTEMPTS = RetryPolicy().attempts
"""The most accept requests one decision may make (the REST client's bounded retries)."""


async def accept_under_faults(rig: Rig, row: Row, cases: dict[str, tuple[dict[str, Any] | None, str]]) -> None:
    """Place one call per case with its accept fault armed; each must end up with the expected outcome."""
    await rig.start_nats()
    emulator = await rig.start_emulator()
    await rig.up(controllers=1, workers=1)
    call_ids: dict[str, str] = {}
    for i, (name, (fault, _)) in enumerate(cases.items()):
        call_id = emulator.place_call(f"+1415555{i:04d}", DIALLED, script="hold")
        if fault is not None:  # armed before the webhook is even sent
            emulator.faults.add("accept", call_id=call_id, **fault)
        call_ids[name] = call_id

    async def all_settled() -> bool:
        outcomes = (await per_call(rig.bus, "accepted")) + (await per_call(rig.bus, "failed"))
        return all(outcomes[c] for c in call_ids.values())

    settled = await settle(all_settled, timeout=40, what="every call accepted or failed")
    accepted = [c for c in call_ids.values() if emulator.calls[c].state == "accepted"]
    await settle(lambda: all(greetings(emulator.calls[c]) for c in accepted), timeout=10)
    ended = await hang_up_and_wait(rig, list(call_ids.values()))

    log = await read_log(rig.bus)
    tally = Tally()
    for name, (_, expected) in cases.items():
        call_id = call_ids[name]
        record = emulator.calls[call_id]
        n_accepted, n_failed = log.count(call_id, "accepted"), log.count(call_id, "failed")
        attempts = len(accept_attempts(record))
        tally.once(call_id, "decided", log.count(call_id, "decided"))
        if n_accepted and n_failed:
            tally.double(call_id, f"{name}: both accepted and failed")
        elif not (n_accepted or n_failed):
            tally.lose(call_id, f"{name}: neither accepted nor failed")
        outcome = "accepted" if n_accepted else "failed" if n_failed else "nothing"
        if outcome != expected:
            tally.wrongly(call_id, f"{name}: {outcome}, expected {expected}")
        if attempts > ATTEMPTS:
            tally.wrongly(call_id, f"{name}: {attempts} accept requests, more than {ATTEMPTS}")
        if n_failed and accepts_ok(record):
            tally.double(call_id, f"{name}: recorded failed, but OpenAI answered an accept 200")
        if n_accepted:
            tally.once(call_id, f"{name}: accept answered 200", len(accepts_ok(record)))
            tally.once(call_id, f"{name}: accepted event", n_accepted)
            tally.once(call_id, f"{name}: greeting", greetings(record))
        tally.once(call_id, f"{name}: ended", log.count(call_id, "ended"))
    settled_after = [
        event_time(outcome[0]) - event_time(incoming[0])
        for c in call_ids.values()
        if (incoming := log.of(c, "incoming")) and (outcome := log.of(c, "accepted") or log.of(c, "failed"))
    ]
    row.recovery_s = round(max(settled_after), 2) if len(settled_after) == len(call_ids) else None
    row.lost, row.doubled = len(tally.lost), len(tally.doubled)
    row.note = ", ".join(f"{name}: {len(accept_attempts(emulator.calls[c]))} tries" for name, c in call_ids.items())
    assert tally.ok, explain(tally, log, rig, extra=f"all settled: {settled}, ended: {ended}")


async def test_a_slow_or_failing_openai_leaves_every_call_accepted_or_failed_never_both(
    rig: Rig, fault_row: Callable[..., Row]
) -> None:
    """Accept 8 s slow, 5xx twice, 5xx always: waited for, retried, given up after bounded attempts."""
    cases: dict[str, tuple[dict[str, Any] | None, str]] = {
        "slow 8 s": ({"delay_s": 8.0}, "accepted"),
        "503 twice": ({"status": 503, "times": 2}, "accepted"),
        "500 always": ({"status": 500, "times": 50}, "failed"),
        "healthy": (None, "accepted"),
    }
    row = fault_row("OpenAI accept slow (8 s) / 5xx", calls=len(cases))
    await accept_under_faults(rig, row, cases)


@pytest.mark.fault_full
@pytest.mark.timeout(120)
async def test_an_accept_that_timed_out_but_went_through_is_recorded_accepted(
    rig: Rig, fault_row: Callable[..., Row]
) -> None:
    """OpenAI answers accepts only after the client gave up (12 s): the 409 that follows confirms the accept."""
    cases: dict[str, tuple[dict[str, Any] | None, str]] = {
        "12 s, twice": ({"delay_s": 12.0, "times": 2}, "accepted"),
        "healthy": (None, "accepted"),
    }
    row = fault_row("OpenAI accept slower than the client timeout", calls=len(cases))
    await accept_under_faults(rig, row, cases)
