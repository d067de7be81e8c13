"""The public contract on NATS as an AsyncAPI 3.0 document, generated from the event types. Pure module.

`asyncapi()` describes every subject Switchboard writes or serves: the ``calls.{call_id}.<kind>``
channels of stream ``CALLS`` (each message a CloudEvents 1.0 envelope whose ``data`` is the kind's
payload, as JSON Schema made by msgspec from the payload Structs), the ``cmd.{call_id}.{verb}``
commands and the ``tools.{name}`` requests, with the service that writes, serves or reads each. The
payload of a kind is the one readers convert it to (`schema.PAYLOAD_TYPES`), or for kinds they keep as
JSON, the Struct in `EXTRA_PAYLOAD_TYPES`. The committed document is regenerated with::

    python -m switchboard.shared.contract > docs/asyncapi.json

and ``tests/unit/test_contract.py`` fails when the file and the types disagree. The prose contract is
docs/architecture.md, the event catalogue docs/events.md.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, NamedTuple

import msgspec

from switchboard.shared import events, schema

ASYNCAPI_VERSION = "3.0.0"
CONTRACT_VERSION = "1.0.0"
"""The version of this contract (``info.version``): bump it with any change that is not only an addition."""
REGENERATE = "python -m switchboard.shared.contract > docs/asyncapi.json"
"""The command that rewrites the committed document."""


# --- shapes the code writes as plain JSON objects ---------------------------------------------------


class ReferSuspectedFailed(msgspec.Struct, frozen=True, kw_only=True):
    """``refer.suspected_failed``: the call was still up SWITCHBOARD_REFER_TIMEOUT_S after OpenAI's 200 to a refer."""

    target_uri: str | None
    waited_s: float


class RealtimeServerEvent(msgspec.Struct, frozen=True, kw_only=True):
    """``rt.<type>``: an OpenAI Realtime server event exactly as received on the sideband (every field OpenAI's)."""

    type: str
    event_id: str | None = None


class ToolRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The request on ``tools.<name>`` when the model calls function ``name``; asked again with the same
    ``tool_call_id`` if the worker that asked died before answering the model."""

    call_id: str
    name: str
    arguments: str
    tool_call_id: str


class ToolReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The reply to ``tools.<name>``: ``output`` (a string goes to the model as it is, anything else as JSON),
    or ``error``. A reply that is not a JSON object is taken as the output."""

    output: Any = None
    error: str | None = None


class SayCommand(msgspec.Struct, frozen=True, kw_only=True):
    """``cmd.<call_id>.say``: have the agent speak (a ``response.create`` with these instructions)."""

    instructions: str


class SendCommand(msgspec.Struct, frozen=True, kw_only=True):
    """``cmd.<call_id>.send``: any Realtime client event, sent on the sideband as it is."""

    type: str


class HangupCommand(msgspec.Struct, frozen=True, kw_only=True):
    """``cmd.<call_id>.hangup``: end the call (an empty body is taken as ``{}``)."""


class ReferCommand(msgspec.Struct, frozen=True, kw_only=True):
    """``cmd.<call_id>.refer``: transfer the call (``tel:``, ``sip:`` or ``sips:``)."""

    target_uri: str


class CommandReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The reply to every command."""

    ok: bool
    error: str | None = None


EXTRA_PAYLOAD_TYPES: dict[str, type[msgspec.Struct]] = {
    "webhook": schema.IncomingCall,
    "refer.suspected_failed": ReferSuspectedFailed,
    "tool.requested": events.ToolRequested,
    "tool.completed": events.ToolCompleted,
    "command.{verb}": events.CommandRecord,
    "rt.{server_event_type}": RealtimeServerEvent,
}
"""Payloads of the kinds `schema.PAYLOAD_TYPES` leaves as JSON (``{name}`` stands for a subject token)."""


def payload_types() -> dict[str, type[msgspec.Struct]]:
    """Every subject kind of the log and its payload Struct."""
    return {**schema.PAYLOAD_TYPES, **EXTRA_PAYLOAD_TYPES}


# --- who writes and reads what ---------------------------------------------------------------------


class Kind(NamedTuple):
    kind: str
    writers: tuple[str, ...]
    summary: str
    msg_id: str
    """The ``Nats-Msg-Id`` it is stored with (JetStream drops a repeat within the duplicate window)."""


KINDS: tuple[Kind, ...] = (
    Kind("incoming", ("ingress",), "OpenAI's `realtime.call.incoming` or `live.transport.incoming` webhook as "
         "received, plus `webhook_id` and `received_at`.", "the `webhook-id` header"),
    Kind("webhook", ("ingress",), "Any other validly signed OpenAI webhook, as received (on "
         "`calls._unrouted.webhook` when it names no call).", "the `webhook-id` header"),
    Kind("decided", ("controller",), "The routing decision, stored once per call cluster-wide (published with "
         "`Nats-Expected-Last-Subject-Sequence: 0`).", "`<call_id>:decided`"),
    Kind("accepted", ("controller",), "OpenAI's answer to the accept; `confirmed_by: conflict` when a resumed "
         "accept met 409 `call_already_handled`.", "`<call_id>:accepted`"),
    Kind("rejected", ("controller",), "OpenAI's answer to the reject.", "`<call_id>:rejected`"),
    Kind("referred", ("controller",), "OpenAI's answer to a refer (a refer decision or a `refer` command).",
         "`<call_id>:referred` (a command's: `<call_id>:referred:<uuid>`)"),
    Kind("hungup", ("controller",), "OpenAI's answer to a `hangup` command.", "`<call_id>:hungup:<uuid>`"),
    Kind("failed", ("controller", "session"), "OpenAI refused the decision's request (controller) or the "
         "sideband (session).", "`<call_id>:failed` (the sideband's: `<call_id>:failed:sideband`)"),
    Kind("session.claimed", ("session",), "A worker holds the call under lease `attempt`.",
         "`<call_id>:claimed:<attempt>`"),
    Kind("session.released", ("session",), "A worker let the call go (`reason`: `ended` or `drain`).",
         "`<call_id>:released:<attempt>`"),
    Kind("session.lost", ("session",), "Recorded by the next holder for a lease whose holder stopped renewing it "
         "(`reason`: `lease_expired`).", "`<call_id>:lost:<attempt>`"),
    Kind("rt.{server_event_type}", ("session",), "A server event relayed from the sideband exactly as received "
         "(either surface; never Live's reflected audio).", "`<call_id>:<event_id>`"),
    Kind("tool.requested", ("session",), "The model called a function; the worker asks `tools.<name>`.",
         "`<call_id>:tool:<tool_call_id>:req`"),
    Kind("tool.completed", ("session",), "What went back to the model for a function call.",
         "`<call_id>:tool:<tool_call_id>:done`"),
    Kind("command.{verb}", ("session", "controller"), "A command served and its outcome (`say`, `send` by the "
         "worker holding the call; `hangup`, `refer` by a controller replica).", "`<call_id>:cmd:<uuid>`"),
    Kind("refer.suspected_failed", ("controller",), "The call had not ended SWITCHBOARD_REFER_TIMEOUT_S after a "
         "`referred`.", "`<call_id>:refer_suspected:<referred event id>`"),
    Kind("ended", ("controller", "session"), "The call is over: `reason` and `duration_s` (controller: rejected, "
         "referred and failed calls; session: calls it held).", "`<call_id>:ended`"),
)  # fmt: skip
"""Every kind of the log, in the order a call's events come, with the services that write it."""


class Reader(NamedTuple):
    service: str
    kind: str
    how: str
    durable: str | None = None
    """The JetStream durable consumer it reads through (None: a core NATS subscription)."""


READERS: tuple[Reader, ...] = (
    Reader("controller", "incoming", "Decides each call once; acknowledged after OpenAI's answer is recorded (ack "
           "wait 3 s with in-progress heartbeats, at most 20 deliveries).", "controller"),
    Reader("controller", "ended", "Stops counting the call against its rule's capacity.", "controller-ended"),
    Reader("controller", "referred", "Refer watch: handed back with a delay until SWITCHBOARD_REFER_TIMEOUT_S after "
           "the event, then flags a call not ended with `refer.suspected_failed`.", "controller-refers"),
    Reader("session", "accepted", "Claims the call: the delivery, held with in-progress heartbeats (ack wait 1.5 s), "
           "is the lease's liveness.", "session"),
    Reader("session", "session.claimed", "A claim with a newer `attempt` of a call this worker holds stops it at "
           "once."),
    Reader("session", "command.{verb}", "The holder waits (up to 5 s) for the outcome of the `hangup`/`refer` "
           "commands it saw before naming the end reason."),
)  # fmt: skip
"""Who reads which kinds (the projector, not listed, reads every kind through the durable ``projector``)."""

SERVICES: dict[str, str] = {
    "ingress": "Verifies OpenAI's signed webhooks and stores them on the log.",
    "controller": "Decides each call under the routing policy, answers OpenAI, serves hangup/refer.",
    "session": "Session workers: hold each accepted call's sideband, relay its events, run tools, serve say/send.",
    "projector": "Folds the log into the KV projections call_state, call_records and transcripts.",
}

_PARAMETERS: dict[str, dict[str, Any]] = {
    "call_id": {"description": "OpenAI's call id (`rtc_…`); always one safe subject token, ^[A-Za-z0-9_-]{1,128}$. "
                "`_policy` carries the controller's policy events, `_unrouted` webhooks that name no call.",
                "examples": ["rtc_5f3a0c2e"]},
    "server_event_type": {"description": "The Realtime server event's `type`, e.g. `response.done` (several "
                          "subject tokens); a type that is not a safe token is relayed as `rt.unknown`.",
                          "examples": ["session.created", "response.done"]},
    "verb": {"description": "The command: `say` and `send` (served by the worker holding the call), `hangup` and "
             "`refer` (served by a controller replica). Any other verb is answered by the holder with "
             "`{\"ok\": false, \"error\": \"unknown command '<verb>'\"}` and not recorded.",
             "examples": ["say", "hangup"]},
    "name": {"description": "The function name the model called (one subject token).", "examples": ["lookup_order"]},
}  # fmt: skip

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_TOKENS = r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*"


def ident(kind: str) -> str:
    """The channel and message id of a kind: ``session.claimed`` → ``session_claimed``, ``rt.{…}`` → ``rt``."""
    return re.sub(r"\.?\{[a-z_]+\}", "", kind).replace(".", "_")


def _text_schema(text: str) -> dict[str, Any]:
    """``const`` for a fixed text, a ``pattern`` when it has ``{placeholders}`` (each any subject tokens)."""
    if not _PLACEHOLDER.search(text):
        return {"const": text}
    parts = _PLACEHOLDER.split(text)[::2]  # the fixed text between the placeholders
    return {"type": "string", "pattern": "^" + _TOKENS.join(re.escape(p) for p in parts) + "$"}


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path)}


def _parameters(address: str) -> dict[str, Any]:
    return {name: _ref("components", "parameters", name) for name in _PLACEHOLDER.findall(address)}


def _msg_id_header(description: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"Nats-Msg-Id": {"type": "string", "description": description}}}


_COMMANDS: dict[str, type[msgspec.Struct]] = {
    "say": SayCommand,
    "send": SendCommand,
    "hangup": HangupCommand,
    "refer": ReferCommand,
}
_COMMAND_SERVERS = {"say": "session", "send": "session", "hangup": "controller", "refer": "controller"}


def _schemas() -> tuple[dict[str, dict[str, Any]], dict[type[msgspec.Struct], dict[str, Any]]]:
    """(components.schemas, each Struct's ``$ref``) for the envelope, every payload and the request/replies."""
    types: list[type[msgspec.Struct]] = [events.CloudEvent]
    wanted: list[type[msgspec.Struct]] = [*payload_types().values(), ToolRequest, ToolReply, CommandReply]
    for struct in [*wanted, *_COMMANDS.values()]:
        if struct not in types:
            types.append(struct)
    refs, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    return components, dict(zip(types, refs, strict=True))


def _log_message(kind: Kind, payload: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
    type_ = events.event_type(kind.kind)
    dataschema = events.dataschema(kind.kind)
    return {
        "name": kind.kind,
        "title": f"calls.{{call_id}}.{kind.kind}",
        "summary": kind.summary,
        "description": f"CloudEvents type `{type_}`, dataschema `{dataschema}`. Stored on stream `{events.STREAM}` "
        f"with `Nats-Msg-Id` {kind.msg_id}.",
        "contentType": "application/json",
        "headers": _msg_id_header(kind.msg_id),
        "payload": {
            "allOf": [
                envelope,
                {
                    "type": "object",
                    "properties": {
                        "specversion": {"const": events.SPEC_VERSION},
                        "type": _text_schema(type_),
                        "source": {"enum": sorted(f"switchboard/{w}" for w in kind.writers)},
                        "datacontenttype": {"const": "application/json"},
                        "dataschema": _text_schema(dataschema),
                        "data": payload,
                    },
                },
            ]
        },
    }


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of Switchboard's subjects, built from the payload Structs."""
    components, refs = _schemas()
    payloads = payload_types()
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    tags = {service: [{"name": service}] for service in SERVICES}

    for kind in KINDS:
        cid = ident(kind.kind)
        address = f"{events.SUBJECT_ROOT}.{{call_id}}.{kind.kind}"
        messages[cid] = _log_message(kind, refs[payloads[kind.kind]], refs[events.CloudEvent])
        channels[cid] = {
            "address": address,
            "title": address,
            "summary": kind.summary,
            "parameters": _parameters(address),
            "messages": {cid: _ref("components", "messages", cid)},
        }
        for writer in kind.writers:
            operations[f"{writer}_send_{cid}"] = {
                "action": "send",
                "channel": _ref("channels", cid),
                "messages": [_ref("channels", cid, "messages", cid)],
                "summary": f"{writer} records `{kind.kind}`.",
                "tags": tags[writer],
            }
    for reader in READERS:
        cid = ident(reader.kind)
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": _ref("channels", cid),
            "messages": [_ref("channels", cid, "messages", cid)],
            "summary": reader.how,
            "description": f"Through the JetStream durable consumer `{reader.durable}` of stream {events.STREAM}."
            if reader.durable
            else "Through a core NATS subscription (live only, not replayed).",
            "tags": tags[reader.service],
        }
        if reader.durable:
            operation["x-jetstream-durable"] = reader.durable
        operations[f"{reader.service}_receive_{cid}"] = operation

    # Commands: NATS request/reply on cmd.{call_id}.{verb}; the reply goes to the request's inbox.
    cmd_address = "cmd.{call_id}.{verb}"
    channels["cmd"] = {
        "address": cmd_address,
        "title": cmd_address,
        "summary": "Commands to a live call (NATS request/reply); each one served is recorded as `command.<verb>`.",
        "parameters": _parameters(cmd_address),
        "messages": {f"cmd_{verb}": _ref("components", "messages", f"cmd_{verb}") for verb in _COMMANDS},
    }
    channels["cmd_reply"] = {
        "address": None,
        "summary": "The command request's reply inbox.",
        "messages": {"cmd_reply": _ref("components", "messages", "cmd_reply")},
    }
    for verb, struct in _COMMANDS.items():
        messages[f"cmd_{verb}"] = {
            "name": f"cmd.{verb}",
            "title": f"cmd.{{call_id}}.{verb}",
            "summary": (struct.__doc__ or "").strip(),
            "contentType": "application/json",
            "payload": refs[struct],
        }
    messages["cmd_reply"] = {
        "name": "cmd.reply",
        "summary": '`{"ok": true}` or `{"ok": false, "error": "…"}`.',
        "contentType": "application/json",
        "payload": refs[CommandReply],
    }
    for server in ("session", "controller"):
        verbs = [verb for verb, served_by in _COMMAND_SERVERS.items() if served_by == server]
        served: dict[str, Any] = {
            "action": "receive",
            "channel": _ref("channels", "cmd"),
            "messages": [_ref("channels", "cmd", "messages", f"cmd_{verb}") for verb in verbs],
            "reply": {"channel": _ref("channels", "cmd_reply"), "messages": [_ref("channels", "cmd_reply", "messages",
                                                                                    "cmd_reply")]},
            "tags": tags[server],
        }  # fmt: skip
        if server == "session":
            served["summary"] = ("The worker holding the call answers say and send (and any unknown verb, with an "
                                 "error); no holder: NATS no responders at once.")  # fmt: skip
        else:
            served["summary"] = "One controller replica (queue group `controller`) answers hangup and refer at OpenAI."
            served["bindings"] = {"nats": {"queue": "controller", "bindingVersion": "0.1.0"}}
        operations[f"{server}_receive_cmd"] = served

    # Tools: the worker holding the call requests tools.{name}; any service may serve it.
    tools_address = "tools.{name}"
    channels["tools"] = {
        "address": tools_address,
        "title": tools_address,
        "summary": "Function calls of the model, served by tool services (NATS request/reply).",
        "parameters": _parameters(tools_address),
        "messages": {"tools_request": _ref("components", "messages", "tools_request")},
    }
    channels["tools_reply"] = {
        "address": None,
        "summary": "The tool request's reply inbox.",
        "messages": {"tools_reply": _ref("components", "messages", "tools_reply")},
    }
    messages["tools_request"] = {
        "name": "tools.request",
        "title": tools_address,
        "summary": (ToolRequest.__doc__ or "").strip(),
        "contentType": "application/json",
        "payload": refs[ToolRequest],
    }
    messages["tools_reply"] = {
        "name": "tools.reply",
        "summary": (ToolReply.__doc__ or "").strip(),
        "contentType": "application/json",
        "payload": refs[ToolReply],
    }
    operations["session_send_tools"] = {
        "action": "send",
        "channel": _ref("channels", "tools"),
        "messages": [_ref("channels", "tools", "messages", "tools_request")],
        "reply": {"channel": _ref("channels", "tools_reply"), "messages": [_ref("channels", "tools_reply", "messages",
                                                                                "tools_reply")]},
        "summary": "The worker holding the call asks for each function call; no reply within the tool's `timeout_s` "
        "(default 10 s), or no responder, gives the model an error. Built-ins `transfer_call` and `end_call` are "
        "not requested.",
        "tags": tags["session"],
    }  # fmt: skip

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Switchboard",
            "version": CONTRACT_VERSION,
            "description": "The subjects Switchboard's services write, read and serve on NATS JetStream. Every "
            f"event is a CloudEvents 1.0 JSON envelope on `{events.SUBJECT_ROOT}.{{call_id}}.<kind>` in stream "
            f"`{events.STREAM}`; its `data` is the kind's payload. Generated by `{REGENERATE}`; the prose contract "
            "is docs/architecture.md, the catalogue docs/events.md.",
            "license": {"name": "Apache-2.0"},
            "tags": [{"name": name, "description": text} for name, text in SERVICES.items()],
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "{host}",
                "protocol": "nats",
                "description": "The NATS cluster of `NATS_URL`, with JetStream.",
                "variables": {"host": {"default": "127.0.0.1:4222"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components, "messages": messages, "parameters": _PARAMETERS},
    }


def render(document: dict[str, Any] | None = None) -> str:
    """The document as the committed file holds it: JSON, sorted keys, indent 2, a trailing newline."""
    return json.dumps(asyncapi() if document is None else document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    sys.stdout.buffer.write(render().encode())


if __name__ == "__main__":
    main()
