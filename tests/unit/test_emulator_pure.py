"""The emulator's pure parts: accept/session validation, event builders, spoken-text choices, faults."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.emulator import responses as ev
from switchboard.emulator.errors import ApiError
from switchboard.emulator.faults import Faults
from switchboard.emulator.realtime import text_about_output, text_from_instructions
from switchboard.emulator.session_config import (
    apply_session,
    auto_response_enabled,
    function_tool_names,
    session_from_accept,
    validate_session,
)


def refusal(body: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        validate_session(body)
    return caught.value


@given(st.text(max_size=200))
def test_chunks_concatenate_back_to_the_text(text: str) -> None:
    """Streaming deltas always join back into the words of the original text."""
    assert "".join(ev.chunks(text)) == "".join(re.findall(r"\s*\S+", text))


def test_accept_body_type_must_be_realtime() -> None:
    """type "transcription" (or anything but "realtime") is invalid_value on param type."""
    error = refusal({"type": "transcription"})
    assert (error.status, error.code, error.param) == (400, "invalid_value", "type")


def test_nested_unknown_audio_key_names_its_path() -> None:
    """An unknown key under audio.output is reported with its dotted path."""
    error = refusal({"type": "realtime", "audio": {"output": {"volume": 11}}})
    assert (error.code, error.param) == ("unknown_parameter", "audio.output.volume")


def test_function_tool_needs_a_name() -> None:
    """A function tool without a name is missing_required_parameter on tools[i].name."""
    error = refusal({"type": "realtime", "tools": [{"type": "function", "name": "ok"}, {"type": "function"}]})
    assert (error.code, error.param) == ("missing_required_parameter", "tools[1].name")


def test_output_modalities_must_be_one_of_audio_or_text() -> None:
    """Asking for both audio and text at once is refused, as the API documents."""
    assert refusal({"type": "realtime", "output_modalities": ["audio", "text"]}).param == "output_modalities"


def test_session_merges_audio_key_by_key() -> None:
    """A voice in the accept body keeps the default output format; a later update keeps the voice."""
    session = session_from_accept({"type": "realtime", "audio": {"output": {"voice": "marin"}}})
    assert session["audio"]["output"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "voice": "marin",
        "speed": 1.0,
    }
    updated = apply_session(session, {"type": "realtime", "audio": {"output": {"speed": 1.2}}})
    assert updated["audio"]["output"]["voice"] == "marin" and updated["audio"]["output"]["speed"] == 1.2


def test_tool_choice_none_offers_no_functions() -> None:
    """With tool_choice "none" the model calls no function, whatever tools are listed."""
    tools = [{"type": "function", "name": "lookup_order"}]
    assert function_tool_names(session_from_accept({"type": "realtime", "tools": tools})) == {"lookup_order"}
    assert (
        function_tool_names(session_from_accept({"type": "realtime", "tools": tools, "tool_choice": "none"})) == set()
    )


def test_turn_detection_off_disables_auto_response() -> None:
    """Without turn detection (or with create_response false) the model does not answer by itself."""
    audio_off: dict[str, Any] = {"input": {"turn_detection": None}}
    assert auto_response_enabled(session_from_accept({"type": "realtime"}))
    assert not auto_response_enabled(session_from_accept({"type": "realtime", "audio": audio_off}))


@pytest.mark.parametrize(
    ("instructions", "spoken"),
    [
        ("Say: Hello, thanks for calling Acme!", "Hello, thanks for calling Acme!"),
        ('Greet the caller with "Welcome to Acme."', "Welcome to Acme."),
        ("Greet the caller warmly.", None),
        ("Tell them we're open; don't be rude.", None),
        ("Thank them and say goodbye.", None),
    ],
)
def test_text_from_instructions(instructions: str, spoken: str | None) -> None:
    """The greeting spoken is the quoted or "Say:" text of the instructions, else nothing derivable."""
    assert text_from_instructions(instructions) == spoken


def test_text_about_output_summarises_json() -> None:
    """The model speaks the output's fields, or apologises for an error output."""
    assert "status is shipped" in text_about_output('{"status": "shipped", "order_id": "A1234"}')
    assert text_about_output('{"error": "timeout"}').startswith("I'm sorry")


def test_cancelled_response_reports_the_partial_item() -> None:
    """A response cancelled mid-message reports status cancelled with the item marked incomplete."""
    builder = ev.ResponseBuilder(
        conversation_id="conv_1", session=session_from_accept({"type": "realtime"}), previous_item_id=None
    )
    builder.created()
    builder.message_added()
    builder.text_delta("Hello")
    done = builder.done("cancelled", "client_cancelled")
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["response"]["output"][0]["status"] == "incomplete"
    assert done["response"]["output"][0]["content"][0]["transcript"] == "Hello"


def test_faults_are_consumed_in_order_and_by_call() -> None:
    """A call-specific fault only hits that call; each fault hits `times` operations then disarms."""
    faults = Faults()
    faults.add("accept", status=500, times=2, call_id="rtc_a")
    assert faults.take("accept", "rtc_b") is None
    assert faults.take("accept", "rtc_a") is not None
    assert faults.take("accept", "rtc_a") is not None
    assert faults.take("accept", "rtc_a") is None
    with pytest.raises(ValueError):
        faults.add("teleport", status=500)  # type: ignore[arg-type]
