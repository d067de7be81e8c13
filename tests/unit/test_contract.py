"""The contract in the repo: docs/asyncapi.json is generated from the payload types and stays in step with them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from switchboard.controller import service as controller
from switchboard.projector.service import SUBSCRIPTION as PROJECTOR_SUBSCRIPTION
from switchboard.session import worker
from switchboard.shared import contract, events, schema

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.json"
CATALOGUE = ROOT / "docs" / "events.md"
STALE = f"docs/asyncapi.json is out of date with the payload types: run `.venv/bin/{contract.REGENERATE}`"
_BASE = "urn:switchboard:asyncapi"

SAMPLES: dict[str, tuple[str, Any]] = {
    "incoming": ("incoming", {
        "id": "evt_1", "type": "realtime.call.incoming", "object": "event", "created_at": 1767600000,
        "data": {"call_id": "rtc_1", "sip_headers": [{"name": "From", "value": "<sip:+14155550101@x>"}]},
        "webhook_id": "wh_1", "received_at": "2026-01-05T09:00:00.000Z",
    }),
    "webhook": ("webhook", {"id": "evt_2", "type": "realtime.call.ended", "data": {}, "webhook_id": "wh_2"}),
    "decided": ("decided", events.Decided(
        action="accept", rule="support-line", reason="matched support-line", agent="concierge",
        accept={"type": "realtime", "model": "gpt-realtime"}, greeting="Hello!", tool_timeouts_s={"lookup": 10.0},
        max_duration_s=14400.0,
    )),
    "accepted": ("accepted", events.UpstreamOutcome(
        http_status=409, latency_ms=3.1, agent="concierge", greeting="Hello!", confirmed_by="conflict",
        max_duration_s=14400.0,
    )),
    "rejected": ("rejected", events.UpstreamOutcome(http_status=200, latency_ms=2.0, status_code=486)),
    "referred": ("referred", events.UpstreamOutcome(http_status=200, latency_ms=2.0, target_uri="tel:+1415")),
    "hungup": ("hungup", events.UpstreamOutcome(http_status=200, latency_ms=2.0)),
    "failed": ("failed", events.Failed(stage="accept", message="gone", http_status=404, code="call_id_not_found")),
    "session.claimed": ("session.claimed", events.SessionLease(worker="worker-1", attempt=2)),
    "session.released": ("session.released", events.SessionLease(worker="worker-1", attempt=2, reason="drain")),
    "session.lost": ("session.lost", events.SessionLease(worker="worker-1", attempt=1, reason="lease_expired")),
    "rt.{server_event_type}": ("rt.response.done", msgspec.Raw(b'{"type":"response.done","event_id":"ev_1"}')),
    "tool.requested": ("tool.requested", events.ToolRequested(tool_call_id="tc_1", name="lookup", arguments="{}")),
    "tool.completed": ("tool.completed", events.ToolCompleted(
        tool_call_id="tc_1", name="lookup", output='{"error": "late"}', latency_ms=10000.0, error="late",
    )),
    "command.{verb}": ("command.say", events.CommandRecord(
        verb="say", command={"instructions": "Say goodbye."}, ok=True, served_by="worker-1",
    )),
    "refer.suspected_failed": ("refer.suspected_failed", {"target_uri": "tel:+1415", "waited_s": 30.2}),
    "ended": ("ended", events.Ended(reason="max_duration", duration_s=14400.0)),
}  # fmt: skip
"""A real event of each kind (data as its writer builds it)."""


def _document() -> dict[str, Any]:
    return json.loads(json.dumps(contract.asyncapi()))  # as JSON: tuples become lists, like the file's


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    node: Any = document
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and token in node, f"{ref} does not resolve (no {token!r})"
        node = node[token]
    return node


def _validator(document: dict[str, Any], kind: str) -> jsonschema.Draft7Validator:
    registry: Registry[Any] = Registry().with_resource(_BASE, Resource(contents=document, specification=DRAFT7))
    pointer = f"{_BASE}#/components/messages/{contract.ident(kind)}/payload"
    return jsonschema.Draft7Validator({"$ref": pointer}, registry=registry)


def _stored(kind: str) -> dict[str, Any]:
    subject_kind, data = SAMPLES[kind]
    writer = next(k.writers[0] for k in contract.KINDS if k.kind == kind)
    event = events.make_event("rtc_1", subject_kind, data, source=f"switchboard/{writer}", lease=2)
    return msgspec.json.decode(events.encode(event))  # type: ignore[no-any-return]


def test_committed_document_is_the_generated_one() -> None:
    """docs/asyncapi.json equals what the payload types generate today, byte for byte."""
    committed = DOCUMENT.read_text(encoding="utf-8")
    assert json.loads(committed) == _document(), STALE
    assert committed == contract.render(), STALE


def test_the_regenerate_command_prints_the_document_without_importing_nats() -> None:
    """``python -m switchboard.shared.contract`` writes the committed file, and the module pulls in no NATS client."""
    out = subprocess.run(
        [sys.executable, "-m", "switchboard.shared.contract"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    assert out == DOCUMENT.read_bytes(), STALE
    probe = (
        "import sys, switchboard.shared.contract; print(sorted(m for m in sys.modules if m.split('.')[0] == 'nats'))"
    )
    imported = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, check=True, text=True)
    assert imported.stdout.strip() == "[]"


def test_every_payload_kind_is_in_the_event_catalogue() -> None:
    """docs/events.md names the subject and the dataschema of every kind in the payload map."""
    catalogue = CATALOGUE.read_text(encoding="utf-8")
    kinds = contract.payload_types()
    assert set(schema.PAYLOAD_TYPES) <= set(kinds)
    for kind in kinds:
        assert f"`calls.{{call_id}}.{kind}`" in catalogue, f"docs/events.md does not list calls.{{call_id}}.{kind}"
        assert f"`{events.dataschema(kind)}`" in catalogue, f"docs/events.md lacks {kind}'s {events.dataschema(kind)}"


def test_every_ref_resolves() -> None:
    """Each ``$ref`` in the document, in schemas too, points at something the document holds."""
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    refs = _refs(document)
    assert refs
    for ref in refs:
        _resolve(document, ref)


def test_channels_operations_and_components_agree() -> None:
    """Operations use their channel's messages, replies theirs, and every address parameter is declared."""
    document = _document()
    assert document["asyncapi"] == "3.0.0" and document["info"]["title"] and document["info"]["version"]
    for cid, channel in document["channels"].items():
        address = channel.get("address")
        placeholders = set(re.findall(r"\{([a-z_]+)\}", address or ""))
        assert placeholders == set(channel.get("parameters", {})), cid
        for message in channel["messages"].values():
            assert message["$ref"].startswith("#/components/messages/"), cid
    for oid, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), oid
        cid = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert cid in document["channels"], oid
        assert all(m["$ref"].startswith(f"#/channels/{cid}/messages/") for m in operation["messages"]), oid
        if "reply" in operation:
            reply = operation["reply"]["channel"]["$ref"].removeprefix("#/channels/")
            assert all(m["$ref"].startswith(f"#/channels/{reply}/messages/") for m in operation["reply"]["messages"])
        assert {t["name"] for t in operation["tags"]} <= set(contract.SERVICES), oid
    for name, component in document["components"]["schemas"].items():
        jsonschema.Draft7Validator.check_schema(component)
        assert re.fullmatch(r"[\w.\-]+", name)


def test_every_kind_has_a_channel_a_writer_and_a_sample() -> None:
    """The payload map, the writers and the samples list the same kinds; each is sent by every writer."""
    document = _document()
    kinds = contract.payload_types()
    assert len({k.kind for k in contract.KINDS}) == len(contract.KINDS)
    assert {k.kind for k in contract.KINDS} == set(kinds) == set(SAMPLES)
    for kind in contract.KINDS:
        cid = contract.ident(kind.kind)
        assert document["channels"][cid]["address"] == f"calls.{{call_id}}.{kind.kind}"
        for writer in kind.writers:
            assert document["operations"][f"{writer}_send_{cid}"]["action"] == "send"


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_an_event_as_written_fits_its_message(kind: str) -> None:
    """A real envelope of each kind, built by `events.make_event`, validates against its message's payload."""
    _validator(_document(), kind).validate(_stored(kind))


def test_a_payload_that_breaks_its_type_does_not_fit() -> None:
    """An impossible ``decided`` action, a wrong writer or a missing field is refused by the schema."""
    validator = _validator(_document(), "decided")
    good = _stored("decided")
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "data": {**good["data"], "action": "sideways"}})
    assert not validator.is_valid({**good, "source": "switchboard/session"})
    assert not validator.is_valid({**good, "data": {"action": "reject", "rule": "r"}})


def test_durable_consumers_are_named_as_the_services_name_them() -> None:
    """The consumers the document names are the ones the controller, session workers and projector bind."""
    named = {r.durable for r in contract.READERS if r.durable is not None}
    assert named == {controller.CONSUMER, controller.ENDED_CONSUMER, controller.REFERS_CONSUMER, worker.CONSUMER}
    assert PROJECTOR_SUBSCRIPTION == "projector"
