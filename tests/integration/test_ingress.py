"""The ingress over real HTTP on loopback, storing into a real nats-server: what gets in, what does not.

Also the helpers the other ``test_ingress_*`` modules share: a started ingress, signed deliveries, and
the stream's message count (the proof that a refusal stored nothing).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import yaml

from switchboard.cli.natsserver import NatsServer
from switchboard.ingress.app import OPENAPI_FILE, WEBHOOK_PATH, Ingress
from switchboard.shared import events
from switchboard.shared.bus import Bus
from switchboard.shared.config import Secret, Settings
from switchboard.shared.webhooks import signed_headers
from tests.waiting import eventually

SECRET = "whsec_" + base64.b64encode(b"ingress-tests-key-0123456789abcd").decode()
NEXT_SECRET = "whsec_" + base64.b64encode(b"ingress-tests-key-rotated-abcdef").decode()


def incoming(call_id: str = "rtc_1", **changes: Any) -> dict[str, Any]:
    """A ``realtime.call.incoming`` event as OpenAI sends it."""
    event: dict[str, Any] = {
        "object": "event",
        "id": f"evt_{call_id}",
        "type": "realtime.call.incoming",
        "created_at": 1_750_000_000,
        "data": {"call_id": call_id, "sip_headers": [{"name": "From", "value": "sip:+14155550101@example.com"}]},
    }
    event.update(changes)
    return event


def settings_for(nats_url: str, **changes: Any) -> Settings:
    return Settings(
        nats_url=nats_url,
        webhook_secrets=(Secret(SECRET), Secret(NEXT_SECRET)),
        ingress_host="127.0.0.1",
        ingress_port=0,
        **changes,
    )


def signed(body: str | bytes, webhook_id: str, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Headers for one delivery of `body`, signed now (or at `timestamp`), as JSON."""
    text = body.decode() if isinstance(body, bytes) else body
    headers = signed_headers(secret, webhook_id, int(time.time()) if timestamp is None else timestamp, text)
    return {**headers, "Content-Type": "application/json"}


class Client:
    """Real HTTP to one ingress."""

    def __init__(self, http: aiohttp.ClientSession, ingress: Ingress) -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{ingress.bound_port}"

    async def deliver(
        self, event: dict[str, Any] | str | bytes, webhook_id: str = "wh_1", **kw: Any
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """POST one signed delivery; (status, JSON answer, response headers)."""
        body = event if isinstance(event, str | bytes) else json.dumps(event)
        return await self.post(body, signed(body, webhook_id, **kw))

    async def post(self, body: str | bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        data = io.BytesIO(body.encode() if isinstance(body, str) else body)  # aiohttp warns on large raw bytes
        async with self.http.post(self.base + WEBHOOK_PATH, data=data, headers=headers) as response:
            answer = await response.json(content_type=None)
            return response.status, answer, dict(response.headers)

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.base + path) as response:
            return response.status, await response.text()


async def stored(bus: Bus) -> int:
    """How many events the CALLS stream holds."""
    info = await bus.js.stream_info(events.STREAM)
    return int(info.state.messages)


async def raw_exchange(port: int, request: bytes, body_chunks: int = 0, chunk: bytes = b"") -> bytes:
    """Send `request` (and then `body_chunks` more bytes chunks) on a raw socket; the answer's head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def feed() -> None:
        try:
            for _ in range(body_chunks):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass  # the ingress closed the connection, as it should

    try:
        writer.write(request)
        feeding = asyncio.create_task(feed())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        feeding.cancel()
        return head
    finally:
        writer.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


@pytest.fixture
def client(http: aiohttp.ClientSession, ingress: Ingress) -> Client:
    return Client(http, ingress)


# --- what gets in ----------------------------------------------------------------------------------


async def test_a_signed_incoming_call_is_stored_before_the_200(client: Client, bus: Bus) -> None:
    """200 comes with the event already in the stream: calls.<id>.incoming, id = webhook-id, plus received_at."""
    status, answer, _ = await client.deliver(incoming("rtc_in"), "wh_in")
    assert (status, answer) == (200, {"ok": True, "duplicate": False})
    event = await bus.last_event("rtc_in", "incoming")
    assert event is not None and event.id == "wh_in" and event.type == "call.incoming"
    assert event.data["data"]["call_id"] == "rtc_in" and event.data["webhook_id"] == "wh_in"
    assert event.data["received_at"].endswith("Z")


async def test_an_incoming_call_is_stored_with_its_dataschema(client: Client, bus: Bus) -> None:
    """The stored ``incoming`` names its data's schema, ``switchboard:call.incoming/v1``, like every other kind."""
    await client.deliver(incoming("rtc_schema"), "wh_schema")
    event = await bus.last_event("rtc_schema", "incoming")
    assert event is not None and event.dataschema == "switchboard:call.incoming/v1"


async def test_a_webhook_signed_with_the_rotated_secret_is_stored(client: Client, bus: Bus) -> None:
    """Both configured secrets verify (rotation)."""
    status, _, _ = await client.deliver(incoming("rtc_rot"), "wh_rot", secret=NEXT_SECRET)
    assert status == 200 and await stored(bus) == 1


async def test_an_unknown_event_type_is_stored_under_its_call(client: Client, bus: Bus) -> None:
    """A validly signed event of another type is kept, as calls.<id>.webhook, and answered 200."""
    event = {"object": "event", "id": "evt_x", "type": "realtime.call.ended", "data": {"call_id": "rtc_other"}}
    status, _, _ = await client.deliver(event, "wh_other")
    assert status == 200
    kept = await bus.last_event("rtc_other", "webhook")
    assert kept is not None and kept.data["type"] == "realtime.call.ended"


async def test_three_deliveries_of_one_webhook_id_make_one_event(client: Client, bus: Bus) -> None:
    """The same webhook-id delivered three times is one event; the repeats are answered duplicate: true."""
    answers = [(await client.deliver(incoming("rtc_dup"), "wh_dup"))[1]["duplicate"] for _ in range(3)]
    assert answers == [False, True, True]
    assert await stored(bus) == 1


async def test_a_delivery_after_an_ingress_restart_is_still_a_duplicate(
    nats_server: NatsServer, http: aiohttp.ClientSession, bus: Bus
) -> None:
    """Two deliveries, the ingress restarts (new process state, new connection), a third: one event."""
    first = Ingress(settings_for(nats_server.url))
    await first.start()
    before = [(await Client(http, first).deliver(incoming("rtc_rs"), "wh_rs"))[1]["duplicate"] for _ in range(2)]
    await first.shutdown()
    second = Ingress(settings_for(nats_server.url))
    await second.start()
    try:
        status, answer, _ = await Client(http, second).deliver(incoming("rtc_rs"), "wh_rs")
    finally:
        await second.shutdown()
    assert before == [False, True] and (status, answer["duplicate"]) == (200, True)
    assert await stored(bus) == 1


async def test_replicas_share_nothing_but_the_stream(
    nats_server: NatsServer, http: aiohttp.ClientSession, bus: Bus
) -> None:
    """Two replicas: one webhook sent to both at once is one event; distinct webhooks spread over both all land."""
    replicas = [Ingress(settings_for(nats_server.url)) for _ in range(2)]
    for replica in replicas:
        await replica.start()
    try:
        clients = [Client(http, r) for r in replicas]
        same = await asyncio.gather(*(c.deliver(incoming("rtc_both"), "wh_both") for c in clients))
        spread = await asyncio.gather(*(clients[i % 2].deliver(incoming(f"rtc_s{i}"), f"wh_s{i}") for i in range(20)))
    finally:
        for replica in replicas:
            await replica.shutdown()
    assert sorted(a["duplicate"] for _, a, _ in same) == [False, True]
    assert all(status == 200 and not answer["duplicate"] for status, answer, _ in spread)
    assert await stored(bus) == 21


# --- what does not get in: a clear 4xx, and the stream unchanged -----------------------------------

_UNSAFE_IDS = ["rtc.1", "rtc_*", "rtc >", "", "x" * 129, "../etc"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ("{not json", 400, "invalid_json"),
        ('["an", "array"]', 400, "not_an_event"),
        (json.dumps({"object": "event", "id": "evt_1", "data": {}}), 400, "not_an_event"),
        (json.dumps({"object": "list", "id": "evt_1", "type": "x", "data": {}}), 400, "not_an_event"),
        (json.dumps({"id": "evt_1", "type": "realtime.call.incoming"}), 400, "missing_data"),
        (json.dumps({"id": "evt_1", "type": "realtime.call.incoming", "data": []}), 400, "not_an_event"),
        (json.dumps(incoming(data={"sip_headers": []})), 400, "missing_data"),
        (json.dumps(incoming(data={"call_id": "rtc_1", "sip_headers": "From: x"})), 400, "not_an_event"),
        *[(json.dumps(incoming(data={"call_id": bad})), 400, "bad_call_id") for bad in _UNSAFE_IDS],
        (json.dumps(incoming(data={"call_id": 42})), 400, "bad_call_id"),
        ('{"a":' * 5000 + "1" + "}" * 5000, 400, "too_deep"),
        (json.dumps(incoming(data={"call_id": "rtc_1", "x": json.loads("[" * 40 + "]" * 40)})), 400, "too_deep"),
    ],
)
async def test_a_signed_body_that_is_not_a_usable_event_is_refused(
    client: Client, bus: Bus, body: str, status: int, reason: str
) -> None:
    """Signed, but not JSON / not an OpenAI event / unsafe call_id / no data: 400 with the reason, nothing stored."""
    got, answer, _ = await client.deliver(body, "wh_bad")
    assert (got, answer["reason"]) == (status, reason)
    assert answer["error"]
    assert await stored(bus) == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-signature": "v1,bm90IHRoZSBzaWduYXR1cmU="}, "no_match"),
        ({"webhook-signature": None}, "missing_header"),
        ({"webhook-id": None}, "missing_header"),
        ({"webhook-timestamp": None}, "missing_header"),
        ({"webhook-timestamp": "yesterday"}, "bad_timestamp"),
        ({"webhook-id": "wh_other"}, "no_match"),
        ({"secret": "whsec_" + base64.b64encode(b"somebody-else's-key-0123456789ab").decode()}, "no_match"),
        ({"timestamp": -301}, "timestamp_too_old"),
        ({"timestamp": +301}, "timestamp_in_future"),
    ],
)
async def test_a_delivery_that_fails_verification_is_refused(
    client: Client, bus: Bus, change: dict[str, Any], reason: str
) -> None:
    """Wrong, missing or stale signature headers: 400 with the reason, never echoing a secret; nothing stored."""
    body = json.dumps(incoming("rtc_sig"))
    secret = change.pop("secret", SECRET)
    skew = change.pop("timestamp", 0)
    headers = signed(body, "wh_sig", secret=secret, timestamp=int(time.time()) + skew)
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    status, answer, _ = await client.post(body, headers)
    assert (status, answer["reason"]) == (400, reason)
    text = json.dumps(answer)
    assert SECRET[6:] not in text and NEXT_SECRET[6:] not in text
    assert await stored(bus) == 0


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("text/plain", None),
        ("application/x-www-form-urlencoded", None),
        ("application/json; charset=latin-1", None),
        (None, None),
        ("application/json", "gzip"),
    ],
)
async def test_a_body_that_is_not_plain_json_is_refused_with_415(
    client: Client, bus: Bus, content_type: str | None, encoding: str | None
) -> None:
    """Not application/json in UTF-8, or compressed: 415, nothing stored."""
    body = json.dumps(incoming("rtc_ct"))
    headers = signed(body, "wh_ct")
    del headers["Content-Type"]
    if content_type is not None:
        headers["Content-Type"] = content_type
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    status, answer, _ = await client.post(body.encode(), headers)
    assert (status, answer["reason"]) in {(415, "content_type"), (415, "content_encoding")}
    assert await stored(bus) == 0


async def test_a_content_length_over_the_limit_is_refused_before_the_body_is_read(ingress: Ingress, bus: Bus) -> None:
    """A declared 10 MiB body gets 413 while the body is still unsent; nothing stored."""
    head = (
        b"POST /webhooks/openai HTTP/1.1\r\nHost: ingress\r\nContent-Type: application/json\r\n"
        b"webhook-id: wh_big\r\nContent-Length: 10485760\r\n\r\n"
    )
    assert ingress.bound_port is not None
    answer = await raw_exchange(ingress.bound_port, head)  # not one byte of the body sent
    assert answer.startswith(b"HTTP/1.1 413")
    assert await stored(bus) == 0


async def test_a_chunked_body_growing_past_the_limit_is_refused(ingress: Ingress, bus: Bus) -> None:
    """A chunked body is read only up to the limit: 413 while the sender is still sending; nothing stored."""
    head = (
        b"POST /webhooks/openai HTTP/1.1\r\nHost: ingress\r\nContent-Type: application/json\r\n"
        b"webhook-id: wh_chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"  # 64 KiB chunks, up to 64 MiB
    assert ingress.bound_port is not None
    answer = await raw_exchange(ingress.bound_port, head, body_chunks=1024, chunk=chunk)
    assert answer.startswith(b"HTTP/1.1 413")
    assert await stored(bus) == 0


async def test_a_body_that_stops_arriving_gets_408(nats_server: NatsServer, bus: Bus) -> None:
    """A sender that declares 1000 bytes and sends 10 gets 408 once the body timeout passes; nothing stored."""
    service = Ingress(settings_for(nats_server.url), body_timeout=timedelta(seconds=0.2))
    await service.start()
    head = (
        b"POST /webhooks/openai HTTP/1.1\r\nHost: ingress\r\nContent-Type: application/json\r\n"
        b'webhook-id: wh_slowloris\r\nContent-Length: 1000\r\n\r\n{"id": "e"'
    )
    try:
        assert service.bound_port is not None
        answer = await raw_exchange(service.bound_port, head)
    finally:
        await service.shutdown()
    assert answer.startswith(b"HTTP/1.1 408")
    assert await stored(bus) == 0


async def test_the_body_limit_is_configurable(nats_server: NatsServer, http: aiohttp.ClientSession, bus: Bus) -> None:
    """With INGRESS_MAX_BODY_BYTES=2048 a 3 KB webhook gets 413 and a small one is stored."""
    service = Ingress(settings_for(nats_server.url, ingress_max_body_bytes=2048))
    await service.start()
    try:
        client = Client(http, service)
        padded = incoming("rtc_big", padding="x" * 3000)
        big, answer, _ = await client.deliver(padded, "wh_big")
        small, _, _ = await client.deliver(incoming("rtc_small"), "wh_small")
    finally:
        await service.shutdown()
    assert (big, answer["error"], small) == (413, "body larger than 2048 bytes", 200)
    assert await stored(bus) == 1


async def test_an_event_larger_than_nats_accepts_is_refused_with_413(
    nats_server: NatsServer, http: aiohttp.ClientSession, bus: Bus
) -> None:
    """With the body limit above NATS's 1 MiB max_payload, a 1.2 MB event gets 413 (not a 503 retried forever)."""
    service = Ingress(settings_for(nats_server.url, ingress_max_body_bytes=4 * 1024 * 1024))
    await service.start()
    try:
        status, answer, _ = await Client(http, service).deliver(
            incoming("rtc_huge", padding="x" * 1_200_000), "wh_huge"
        )
    finally:
        await service.shutdown()
    assert (status, answer["reason"]) == (413, "too_large_for_bus")
    assert await stored(bus) == 0


async def test_a_refusal_is_logged_with_the_webhook_id(client: Client) -> None:
    """The warning for a refused webhook names its webhook-id and the reason."""
    body = json.dumps(incoming("rtc_log"))
    headers = {**signed(body, "wh_logged"), "webhook-signature": "v1,AAAA"}
    with structlog.testing.capture_logs() as logs:
        status, _, _ = await client.post(body, headers)
    assert status == 400
    assert {"event": "webhook_refused", "webhook_id": "wh_logged", "reason": "no_match"}.items() <= logs[-1].items()


# --- health, metrics, the document -----------------------------------------------------------------


async def test_health_and_readiness_answer_200_when_connected(client: Client) -> None:
    """/healthz and /readyz are 200 with NATS connected and the stream in place."""
    assert (await client.get("/healthz"))[0] == 200
    status, text = await client.get("/readyz")
    assert (status, json.loads(text)) == (200, {"ready": True})


async def test_readiness_fails_without_the_stream_and_the_ingress_recreates_it(
    nats_server: NatsServer, http: aiohttp.ClientSession, bus: Bus
) -> None:
    """Deleting CALLS makes /readyz 503 naming the stream; the ingress re-creates it and is ready again."""
    # A long watch interval: only the readiness probe's finding may wake the stream keeper here.
    ingress = Ingress(settings_for(nats_server.url), stream_watch_interval=timedelta(minutes=5))
    await ingress.start()
    client = Client(http, ingress)
    try:
        await _readiness_cycle(client, bus)
    finally:
        await ingress.shutdown()


async def _readiness_cycle(client: Client, bus: Bus) -> None:
    await eventually(lambda: _ready(client), timeout=10, what="ready at first")
    await bus.js.delete_stream(events.STREAM)
    status, text = await client.get("/readyz")
    assert status == 503 and "CALLS" in json.loads(text)["reason"]
    await eventually(lambda: _ready(client), timeout=10, what="ready again")
    assert (await client.deliver(incoming("rtc_back"), "wh_back"))[0] == 200


async def _ready(client: Client) -> bool:
    return (await client.get("/readyz"))[0] == 200


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


async def test_metrics_count_outcomes_reasons_latency_and_duplicates(client: Client) -> None:
    """/metrics shows webhooks by outcome, verification failures by reason, publish latency and duplicates."""
    await client.deliver(incoming("rtc_m"), "wh_m")
    await client.deliver(incoming("rtc_m"), "wh_m")
    body = json.dumps(incoming("rtc_m2"))
    await client.post(body, {**signed(body, "wh_m2"), "webhook-signature": "v1,AAAA"})
    status, metrics = await client.get("/metrics")
    assert status == 200
    assert _sample(metrics, 'switchboard_ingress_webhooks_total{outcome="stored"}') == 1
    assert _sample(metrics, 'switchboard_ingress_webhooks_total{outcome="duplicate"}') == 1
    assert _sample(metrics, 'switchboard_ingress_webhooks_total{outcome="bad_signature"}') == 1
    assert _sample(metrics, 'switchboard_ingress_verification_failures_total{reason="no_match"}') == 1
    assert _sample(metrics, "switchboard_ingress_publish_seconds_count") == 2
    assert _sample(metrics, "switchboard_ingress_duplicates_total") == 1


async def test_the_openapi_document_is_served_as_checked_in(client: Client) -> None:
    """GET /openapi.yaml is the checked-in file; /openapi.json the same document."""
    status, served = await client.get("/openapi.yaml")
    assert status == 200 and served == OPENAPI_FILE.read_text()
    status, as_json = await client.get("/openapi.json")
    assert status == 200 and json.loads(as_json) == yaml.safe_load(served)
    assert WEBHOOK_PATH in json.loads(as_json)["paths"]


def test_the_checked_in_openapi_document_is_valid() -> None:
    """The OpenAPI document validates against the OpenAPI 3.0 schema."""
    from openapi_spec_validator import validate

    validate(yaml.safe_load(Path(OPENAPI_FILE).read_text()))
