"""``switchboard policy check|whatif|push`` as users run them, against a real nats-server."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import nats.js.errors
import pytest

from switchboard.cli.natsserver import NatsServer
from switchboard.controller.decider import decide
from switchboard.controller.policy import builtin_policy_text, facts_from_incoming, load_policy
from switchboard.controller.policy_source import POLICY_KEY, policy_bucket, policy_version
from switchboard.shared.bus import Bus
from switchboard.shared.events import IncomingCallData

EXAMPLES = Path(__file__).parents[2] / "examples" / "policies"

STRICTER = """\
version: 1
agents:
  concierge: {instructions: "x"}
rules:
  - name: blocked-callers
    when: {caller: {prefix: ["+1900", "+14155550666"]}}
    reject: {status_code: 603}
  - name: support-line
    when: {dialled: {prefix: "+1800"}}
    accept: {agent: concierge}
default:
  reject: busy
"""


class Result(msgspec.Struct):
    code: int
    out: str
    err: str


async def switchboard(*args: str, nats_url: str = "", env: dict[str, str] | None = None) -> Result:
    env = {**os.environ, "LOG_LEVEL": "warning", "NATS_URL": nats_url, **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchboard", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def record_call(bus: Bus, call_id: str, caller: str, dialled: str) -> None:
    """A call's incoming event, as the ingress stores it, and the built-in policy's decision, via bus.record."""
    headers = [{"name": "From", "value": f"sip:{caller}@carrier"}, {"name": "To", "value": f"sip:{dialled}@openai"}]
    webhook = {
        "object": "event", "id": f"evt_{call_id}", "type": "realtime.call.incoming", "created_at": 1,
        "data": {"call_id": call_id, "sip_headers": headers}, "webhook_id": f"wh_{call_id}", "received_at": "now",
    }  # fmt: skip
    await bus.record(call_id, "incoming", webhook)
    sip = msgspec.convert(webhook["data"], IncomingCallData).sip_headers
    decided = decide(load_policy(None), facts_from_incoming(call_id, sip), now=datetime.now(UTC), live={})
    await bus.record(call_id, "decided", decided)


async def test_check_accepts_a_valid_policy() -> None:
    """``policy check`` on a valid file prints its size and exits 0."""
    result = await switchboard("policy", "check", str(EXAMPLES / "reference.yaml"))
    assert (result.code, result.out) == (0, "ok: 7 rules, 2 agents\n")


async def test_check_warns_about_a_deprecated_model_and_exits_0(tmp_path: Path) -> None:
    """``policy check`` on a valid policy using gpt-realtime prints its replacement as a warning, exit 0."""
    old = tmp_path / "old.yaml"
    old.write_text(STRICTER.replace('{instructions: "x"}', '{instructions: "x", model: gpt-realtime}'))
    result = await switchboard("policy", "check", str(old))
    assert (result.code, result.out) == (0, "ok: 2 rules, 1 agents\n")
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith(f"warning: {old}:") and "use 'gpt-realtime-2'" in result.err


async def test_check_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    """``policy check`` on a bad file prints each problem with its line, rule and field, and exits 1."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(STRICTER.replace("status_code: 603", "status_code: 200").replace("agent: concierge", "agent: x"))
    result = await switchboard("policy", "check", str(bad))
    assert result.code == 1
    assert result.err.splitlines() == [
        f"{bad}:7 rules[0] (blocked-callers): reject.status_code: must be a SIP error status 400-699",
        f"{bad}:10 rules[1] (support-line): accept.agent: unknown agent 'x' (known: concierge)",
    ]


async def test_whatif_lists_the_decisions_that_change(tmp_path: Path, nats_server: NatsServer, bus: Bus) -> None:
    """``policy whatif`` re-decides logged calls under FILE, prints the changed ones and a count, and exits."""
    await record_call(bus, "rtc_same", "+14155550101", "+18005550100")  # accepted either way
    await record_call(bus, "rtc_blocked", "+14155550666", "+18005550100")  # now blocked
    await record_call(bus, "rtc_refer", "+14155550102", "+18005550199")  # referred before, accepted now
    await record_call(bus, "rtc_default", "+14155550103", "+14155550100")  # 480 before, 486 now
    stored = (await bus.js.stream_info("CALLS")).state.messages
    policy = tmp_path / "stricter.yaml"
    policy.write_text(STRICTER)
    result = await switchboard("policy", "whatif", str(policy), "--since", "1h", nats_url=nats_server.url)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split()[:4] == ["CALL", "TIME", "(UTC)", "FROM"]
    rows = {cells[0]: cells[4:] for cells in (re.split(r"\s{2,}", line) for line in lines[1:-1])}
    assert rows == {
        "rtc_blocked": ["accept concierge (support-line)", "reject 603 (blocked-callers)"],
        "rtc_refer": ["refer tel:+14155550123 (after-hours-desk)", "accept concierge (support-line)"],
        "rtc_default": ["reject 480 (default)", "reject 486 (default)"],
    }
    assert lines[-1].startswith(f"3 of 4 decisions change under {policy} (calls since ")
    assert (await bus.js.stream_info("CALLS")).state.messages == stored  # nothing written, nothing sent


async def test_whatif_on_an_empty_log_reports_nothing_to_compare(
    tmp_path: Path, nats_server: NatsServer, bus: Bus
) -> None:
    """With no calls in the window, ``policy whatif`` says 0 of 0 and exits at once."""
    policy = tmp_path / "stricter.yaml"
    policy.write_text(STRICTER)
    result = await switchboard("policy", "whatif", str(policy), nats_url=nats_server.url)
    assert result.code == 0, result.err
    assert result.out.startswith(f"0 of 0 decisions change under {policy}")


async def test_whatif_refuses_an_invalid_policy_before_reading_the_log(tmp_path: Path) -> None:
    """An invalid FILE exits 1 with its problems; no NATS is needed to find that out."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(STRICTER.replace("reject: busy", "reject: loudly"))
    result = await switchboard("policy", "whatif", str(bad))
    assert result.code == 1
    assert result.err.startswith(f"{bad}:12 default: reject: unknown name 'loudly'")


async def test_push_stores_a_valid_policy_in_the_kv(tmp_path: Path, nats_server: NatsServer, bus: Bus) -> None:
    """``policy push`` validates FILE and stores it where every controller watches."""
    policy = tmp_path / "stricter.yaml"
    policy.write_text(STRICTER)
    result = await switchboard("policy", "push", str(policy), nats_url=nats_server.url)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        f"pushed {policy} (version {policy_version(STRICTER)}) to switchboard_policy/current revision 1",
        "it overrides every controller's SWITCHBOARD_POLICY file (and the built-in policy), across restarts, "
        "until `switchboard policy reset`",
    ]
    entry = await (await policy_bucket(bus)).get(POLICY_KEY)
    assert entry.value.decode() == STRICTER


async def test_push_refuses_an_invalid_policy(tmp_path: Path, nats_server: NatsServer, bus: Bus) -> None:
    """An invalid FILE is not pushed: exit 1, the problems on stderr, the KV key untouched."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(STRICTER.replace("accept: {agent: concierge}", "accept: {agent: concierge}\n    bogus: 1"))
    result = await switchboard("policy", "push", str(bad), nats_url=nats_server.url)
    assert result.code == 1 and "bogus" in result.err
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await (await policy_bucket(bus)).get(POLICY_KEY)


async def test_show_prints_the_pushed_policy_and_where_it_came_from(
    tmp_path: Path, nats_server: NatsServer, bus: Bus
) -> None:
    """``policy show`` after a push prints the pushed YAML, headed by comments naming the KV key and version."""
    policy = tmp_path / "stricter.yaml"
    policy.write_text(STRICTER)
    assert (await switchboard("policy", "push", str(policy), nats_url=nats_server.url)).code == 0
    result = await switchboard("policy", "show", nats_url=nats_server.url)
    assert result.code == 0, result.err
    head, rest = result.out.split("\n", 2)[:2], result.out.split("\n", 2)[2]
    assert head == [
        f"# in force: the policy pushed to switchboard_policy/current (revision 1), version {policy_version(STRICTER)}",
        "# it overrides every controller's SWITCHBOARD_POLICY file; `switchboard policy reset` goes back to that",
    ]
    assert rest == STRICTER


async def test_show_without_a_push_prints_the_file_the_environment_names(
    tmp_path: Path, nats_server: NatsServer, bus: Bus
) -> None:
    """``policy show`` with nothing pushed prints SWITCHBOARD_POLICY's file and its version."""
    policy = tmp_path / "stricter.yaml"
    policy.write_text(STRICTER)
    result = await switchboard("policy", "show", nats_url=nats_server.url, env={"SWITCHBOARD_POLICY": str(policy)})
    assert result.code == 0, result.err
    assert result.out == f"# in force: {policy}, version {policy_version(STRICTER)} (no policy is pushed)\n{STRICTER}"


async def test_reset_removes_the_pushed_policy(tmp_path: Path, nats_server: NatsServer, bus: Bus) -> None:
    """``policy reset`` deletes the pushed policy and says what controllers run now; a second one has nothing to do."""
    policy = tmp_path / "stricter.yaml"
    policy.write_text(STRICTER)
    assert (await switchboard("policy", "push", str(policy), nats_url=nats_server.url)).code == 0
    builtin = policy_version(builtin_policy_text())
    first = await switchboard("policy", "reset", nats_url=nats_server.url)
    assert (first.code, first.out) == (
        0,
        f"reset: removed the pushed policy (version {policy_version(STRICTER)}, revision 1); "
        f"controllers go back to the built-in policy (version {builtin})\n",
    )
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await (await policy_bucket(bus)).get(POLICY_KEY)
    second = await switchboard("policy", "reset", nats_url=nats_server.url)
    assert (
        second.out
        == f"nothing to reset: no policy is pushed; controllers run the built-in policy (version {builtin})\n"
    )
