"""Fuzzing ``POST /webhooks/openai`` from its checked-in OpenAPI document (schemathesis), over real HTTP.

Cases come from the document, valid and invalid ones; half of them are then signed with the ingress's
secret so they get past verification and into validation and publishing. Whatever the input, while
NATS is up the answer is never a 5xx and always one the document describes.
"""

from __future__ import annotations

import asyncio
import json
import time

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from switchboard.ingress.app import OPENAPI_FILE, WEBHOOK_PATH, Ingress
from switchboard.shared.webhooks import sign
from tests.integration.test_ingress import SECRET

_OPERATION = schemathesis.openapi.from_path(str(OPENAPI_FILE))[WEBHOOK_PATH]["POST"]
_CASES = st.one_of(_OPERATION.as_strategy(GenerationMode.POSITIVE), _OPERATION.as_strategy(GenerationMode.NEGATIVE))
_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _utf8(body: bytes | None) -> str | None:
    try:
        return None if body is None else body.decode()
    except UnicodeDecodeError:
        return None


def _fuzz(base_url: str, statuses: list[int]) -> None:
    @settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=_CASES, signed=st.booleans())
    def check(case: schemathesis.Case, signed: bool) -> None:
        kwargs = case.as_transport_kwargs(base_url=base_url)
        headers: dict[str, str] = {}
        body: bytes | None = None
        if "json" in kwargs:
            body = json.dumps(kwargs["json"]).encode()
            headers["Content-Type"] = "application/json"
        elif isinstance(kwargs.get("data"), bytes | str):
            body = kwargs["data"] if isinstance(kwargs["data"], bytes) else kwargs["data"].encode()
        text = _utf8(body)
        if signed and text is not None:  # a body that is not UTF-8 cannot be signed (nor verified by the SDK)
            webhook_id = str(kwargs["headers"].get("webhook-id") or "wh_fuzz")
            now = int(time.time())
            headers |= {
                "webhook-id": webhook_id,
                "webhook-timestamp": str(now),
                "webhook-signature": sign(SECRET, webhook_id, now, text),
            }
        response = case.call(base_url=base_url, headers=headers, data=body) if body is not None else case.call(base_url)
        statuses.append(response.status_code)
        case.validate_response(response, checks=_CHECKS)

    check()


async def test_no_input_gets_a_5xx_while_nats_is_up(ingress: Ingress) -> None:
    """120 generated requests (valid, invalid, signed and not): never a 5xx, always a documented answer."""
    statuses: list[int] = []
    await asyncio.to_thread(_fuzz, f"http://127.0.0.1:{ingress.bound_port}", statuses)
    assert statuses and max(statuses) < 500
    assert 200 in statuses and 400 in statuses  # the signed half reached the bus, the rest was refused
