"""The readable timeline of `tail`, `replay` and `demo`: which events it shows and what each line says."""

from __future__ import annotations

from typing import Any

import msgspec

from switchboard.cli.render import LiveTurns, clock, render, shown, summary
from switchboard.shared import events
from switchboard.shared.events import CloudEvent

CALL = "rtc_render0123456789"


def event(kind: str, data: Any, *, call_id: str = CALL, time: str = "2026-12-03T09:00:31.250Z") -> CloudEvent:
    made = events.make_event(call_id, kind, data, source="switchboard/test")
    return msgspec.structs.replace(made, time=time)


def text(kind: str, data: Any, *, call_id: str = CALL) -> str:
    return summary(event(kind, data, call_id=call_id))[1]


def test_the_readable_view_keeps_switchboards_events_and_the_conversation() -> None:
    """By default a timeline shows decisions, commands, tools and transcripts, not the realtime chatter."""
    kept = ["incoming", "decided", "command.hangup", "tool.completed", "rt.response.output_audio_transcript.done"]
    hidden = [
        "rt.response.content_part.added",
        "rt.response.output_item.done",
        "rt.response.function_call_arguments.done",
    ]
    assert [shown(event(k, {}), every=False, deltas=False) for k in kept] == [True] * len(kept)
    assert [shown(event(k, {}), every=False, deltas=False) for k in hidden] == [False] * len(hidden)


def test_every_shows_all_events_but_deltas_need_their_own_flag() -> None:
    """`--all` shows every event except streaming fragments, which only `--deltas` adds."""
    assert shown(event("rt.response.content_part.added", {}), every=True, deltas=False)
    assert not shown(event("rt.response.output_audio_transcript.delta", {}), every=True, deltas=False)
    assert shown(event("rt.response.output_audio_transcript.delta", {}), every=True, deltas=True)


def test_a_failed_command_shows_its_error_and_a_served_one_ok() -> None:
    """`command.*` lines say what was asked, ok or the error, and who served it, coloured by outcome."""
    ok = {"verb": "refer", "command": {"target_uri": "tel:+14155550123"}, "ok": True, "served_by": "controller"}
    failed = {"verb": "say", "command": {"instructions": "Say goodbye"}, "ok": False, "error": "call not held"}
    assert summary(event("command.refer", ok)) == ("accepted", "refer to tel:+14155550123 ok (by controller)")
    assert summary(event("command.say", failed)) == ("failed", 'say "Say goodbye" failed: call not held')


def test_tool_lines_show_the_arguments_then_the_output_and_latency() -> None:
    """`tool.requested` shows the call with its arguments; `tool.completed` the output and how long it took."""
    requested = {"tool_call_id": "t1", "name": "lookup_order", "arguments": '{"order": "A1"}'}
    completed = {"tool_call_id": "t1", "name": "lookup_order", "output": '{"status": "shipped"}', "latency_ms": 4.2}
    assert text("tool.requested", requested) == 'agent calls lookup_order({"order": "A1"})'
    assert text("tool.completed", completed) == 'lookup_order answered in 4.2 ms: {"status": "shipped"}'


def test_a_failed_tool_is_shown_as_failed_with_its_error() -> None:
    """A tool that failed is coloured as a failure and names the error the model was told."""
    completed = {"tool_call_id": "t1", "name": "lookup_order", "output": "", "latency_ms": 2000.0,
                 "error": "no tools.lookup_order service answered"}  # fmt: skip
    assert summary(event("tool.completed", completed)) == (
        "failed", "lookup_order failed in 2000.0 ms: no tools.lookup_order service answered"
    )  # fmt: skip


def test_policy_events_say_which_policy_is_in_force_or_why_one_was_refused() -> None:
    """`_policy` events show the version in force, or the refused one's problems and the version kept."""
    reloaded = {"origin": "kv", "version": "abc123", "rules": 4, "agents": 2, "replica": "controller-1"}
    refused = {"origin": "kv", "version": "def456", "problems": ["rules[0]: unknown agent 'x'"], "kept": "abc123",
               "replica": "controller-1"}  # fmt: skip
    assert text("reloaded", reloaded, call_id="_policy") == (
        "policy abc123 in force on controller-1: 4 rules, 2 agents, from kv"
    )
    assert summary(event("reload_refused", refused, call_id="_policy")) == (
        "failed", "policy def456 from kv refused on controller-1, abc123 kept: rules[0]: unknown agent 'x'"
    )  # fmt: skip


def test_times_are_shown_in_utc_with_their_zone() -> None:
    """Every line's time says it is UTC; an offset timestamp is converted."""
    assert clock("2026-12-03T09:00:31.250Z") == "09:00:31.250Z"
    assert clock("2026-12-03T10:00:31.250+01:00") == "09:00:31.250Z"
    assert render(event("ended", {"reason": "hangup", "duration_s": 5.0}), colour=False).startswith("09:00:31.250Z  ")


def test_live_fragments_become_one_line_per_turn() -> None:
    """Live's transcript fragments are held and shown as one caller or agent line per turn."""
    turns = LiveTurns()
    fragments = [("output", "Hello,"), ("output", " how can I help?"), ("input", "My order"), ("input", " is late.")]
    kind = "rt.session.{}_transcript.delta"
    fed = [
        e for side, delta in fragments for e in turns.feed(event(kind.format(side), {"delta": delta}, call_id="live_1"))
    ]
    ended = turns.feed(event("ended", {"reason": "caller_hangup", "duration_s": 3.0}, call_id="live_1"))
    shown_lines = [summary(e)[1] for e in [*fed, *ended]]
    assert shown_lines == [
        'agent: "Hello, how can I help?"',
        'caller: "My order is late."',
        "call ended (caller_hangup) after 3.0 s",
    ]
    assert turns.flush() == []
