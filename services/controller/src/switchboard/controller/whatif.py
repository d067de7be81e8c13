"""What if a policy had been in force: re-decide past calls from the log and list the decisions that change.

Pure: it takes the log's events (``incoming``, ``decided`` and ``ended``, in stream order) and a policy,
and returns a `Report`; `switchboard policy whatif` reads the events and prints `render(report)`. Nothing
is sent to OpenAI and nothing is written to the log.

Each call is re-decided as the controller would have decided it with the new policy in force: at the
instant it came in (the ``incoming`` event's time, so opening hours apply as they did then), and with the
live calls per rule that policy would have had at that moment. Those counts are simulated in log order: a
call the new policy accepts occupies its rule (as `occupies` says) until the log shows it ``ended``; a
call it turns away occupies nothing. A call the new policy accepts that was turned away at the time
counts only until its recorded end (at once, for a rejected call), since how long it would have lasted is
unknown. Calls that came in before the events read are not counted (the command reads from an hour
before ``--since``, re-deciding those calls only to rebuild the counts). A decision *changes* when its
action, rule, agent, status code, target or ``capacity_full`` differs; a changed agent configuration
under the same agent name is not a change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec

from switchboard.controller.decider import decide, occupies
from switchboard.controller.policy import CallFacts, Policy, facts_from_incoming
from switchboard.shared.events import INCOMING_SURFACES, CloudEvent, Decided, IncomingCallData, payload

KINDS = ("incoming", "decided", "ended")
"""The event kinds a what-if reads."""


class Row(msgspec.Struct, frozen=True, kw_only=True):
    """One call whose decision differs under the new policy."""

    call_id: str
    time: datetime
    caller: str
    dialled: str
    before: Decided
    after: Decided


class Report(msgspec.Struct, kw_only=True):
    since: datetime
    compared: int = 0
    """Calls since `since` with a recorded decision, all re-decided."""
    changed: list[Row] = []
    undecided: int = 0
    """Calls since `since` that came in but have no recorded decision (not compared)."""
    unreadable: int = 0
    """Events that could not be read as what their kind says (skipped)."""


class _Redecided(msgspec.Struct, kw_only=True):
    facts: CallFacts
    time: datetime
    decided: Decided


def _time(event: CloudEvent) -> datetime:
    when = datetime.fromisoformat(event.time)
    return when if when.utcoffset() is not None else when.replace(tzinfo=UTC)


def _key(d: Decided) -> tuple[object, ...]:
    return (d.action, d.rule, d.agent, d.status_code, d.target_uri, d.capacity_full)


def redecide(policy: Policy, log: Iterable[CloudEvent], *, since: datetime) -> Report:
    """Re-decide under `policy` every call in `log` that came in at or after `since`."""
    report = Report(since=since)
    live: Counter[str] = Counter()
    holding: dict[str, str] = {}  # call id → the rule whose capacity it uses, under `policy`, until it ends
    after: dict[str, _Redecided] = {}
    before: dict[str, Decided] = {}
    for event in log:
        call_id = event.call_id
        try:
            if event.kind == "incoming" and call_id not in after:
                when = _time(event)
                data = event.data.get("data", {}) if isinstance(event.data, dict) else {}
                kind = event.data.get("type") if isinstance(event.data, dict) else None
                surface = INCOMING_SURFACES.get(str(kind), "realtime")
                facts = facts_from_incoming(call_id, msgspec.convert(data, IncomingCallData).sip_headers, surface)
                decided = decide(policy, facts, now=when, live=live)
                after[call_id] = _Redecided(facts=facts, time=when, decided=decided)
                if (rule := occupies(decided)) is not None:
                    live[rule] += 1
                    holding[call_id] = rule
            elif event.kind == "decided" and call_id not in before:
                before[call_id] = payload(event, Decided)
            elif event.kind == "ended" and call_id in holding:
                live[holding.pop(call_id)] -= 1
        except (msgspec.ValidationError, ValueError, TypeError):
            report.unreadable += 1
    for call_id, call in after.items():
        if call.time < since:
            continue  # read only to rebuild the live counts
        original = before.get(call_id)
        if original is None:
            report.undecided += 1
            continue
        report.compared += 1
        if _key(call.decided) != _key(original):
            row = Row(
                call_id=call_id,
                time=call.time,
                caller=call.facts.caller,
                dialled=call.facts.dialled,
                before=original,
                after=call.decided,
            )
            report.changed.append(row)
    return report


def describe(d: Decided) -> str:
    """A decision in a few words: ``accept concierge (support-line)``, ``reject 486 (sales, full)``."""
    if d.action == "accept":
        what = f"accept {d.agent}"
    elif d.action == "reject":
        what = f"reject {d.status_code}"
    else:
        what = f"refer {d.target_uri}"
    return f"{what} ({d.rule}{', full' if d.capacity_full else ''})"


def render(report: Report, *, policy_name: str) -> str:
    """The changed decisions as a table, then a line counting them."""
    lines: list[str] = []
    if report.changed:
        header = ("CALL", "TIME (UTC)", "FROM", "TO", "BEFORE", "AFTER")
        rows = [
            (
                r.call_id,
                r.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                r.caller,
                r.dialled,
                describe(r.before),
                describe(r.after),
            )
            for r in report.changed
        ]
        widths = [max(len(str(cells[i])) for cells in (header, *rows)) for i in range(len(header))]
        for cells in (header, *rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    since = report.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    lines.append(
        f"{len(report.changed)} of {report.compared} decisions change under {policy_name} (calls since {since} UTC)"
    )
    if report.undecided:
        lines.append(f"{report.undecided} calls without a recorded decision were not compared")
    if report.unreadable:
        lines.append(f"{report.unreadable} unreadable events were skipped")
    return "\n".join(lines)
