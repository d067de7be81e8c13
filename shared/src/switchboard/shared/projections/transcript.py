"""Transcripts: the caller's and the agent's turns of each call, in the order the log recorded them.

Caller turns come from ``rt.conversation.item.input_audio_transcription.completed``, agent turns from
``rt.response.output_audio_transcript.done`` (or ``rt.response.output_text.done`` for text answers). A
turn is identified by its speaker, conversation item and content index: the same turn recorded twice
(a re-attached session) replaces its text in place instead of appearing twice.

Live sends no finished turns, only fragments with millisecond offsets since the session started
(``rt.session.input_transcript.delta`` for the caller, ``rt.session.output_transcript.delta`` for the
agent): consecutive fragments of one speaker make one turn, a fragment of the other speaker starts the
next, and a fragment that ends no later than what a turn already holds (a re-attached session's copy)
adds nothing. Pure.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from switchboard.shared.projections._facts import field
from switchboard.shared.schema import LogEvent

Speaker = Literal["caller", "agent"]

CALLER_KINDS = frozenset({"rt.conversation.item.input_audio_transcription.completed"})
AGENT_KINDS = frozenset({"rt.response.output_audio_transcript.done", "rt.response.output_text.done"})
LIVE_KINDS: dict[str, Speaker] = {
    "rt.session.input_transcript.delta": "caller",
    "rt.session.output_transcript.delta": "agent",
}


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    speaker: Speaker
    text: str
    at: str
    seq: int
    item_id: str | None = None
    content_index: int = 0
    end_ms: int | None = None
    """Live: the end offset of the turn's last fragment (ms since the session started)."""


class Transcript(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    turns: tuple[Turn, ...] = ()
    last_seq: int = 0


def relevant(kind: str) -> bool:
    return kind in CALLER_KINDS or kind in AGENT_KINDS or kind in LIVE_KINDS


def _fold_fragment(t: Transcript, event: LogEvent, speaker: Speaker) -> Transcript:
    """A Live transcript fragment: appended to the speaker's turn in progress, or the start of a new one."""
    delta, end_ms = field(event.data, "delta"), field(event.data, "end_ms")
    if not isinstance(delta, str) or not isinstance(end_ms, int) or isinstance(end_ms, bool):
        return t
    turns = list(t.turns)
    last = turns[-1] if turns else None
    if last is not None and last.speaker == speaker and last.end_ms is not None:
        if end_ms <= last.end_ms:
            return msgspec.structs.replace(t, last_seq=max(event.seq, t.last_seq))  # a copy: seen already
        turns[-1] = msgspec.structs.replace(last, text=last.text + delta, end_ms=end_ms)
    else:
        turns.append(Turn(speaker=speaker, text=delta, at=event.time, seq=event.seq, end_ms=end_ms))
    return msgspec.structs.replace(t, turns=tuple(turns), last_seq=max(event.seq, t.last_seq))


def evolve(transcript: Transcript | None, event: LogEvent) -> Transcript | None:
    """The call's transcript after `event` (the same object when the event adds no turn)."""
    if not relevant(event.kind) or not event.call_id:
        return transcript
    if transcript is not None and event.seq and event.seq <= transcript.last_seq:
        return transcript
    live_speaker = LIVE_KINDS.get(event.kind)
    if live_speaker is not None:
        return _fold_fragment(transcript or Transcript(call_id=event.call_id), event, live_speaker)
    data = event.data
    text = field(data, "transcript")
    if text is None:
        text = field(data, "text")
    if not isinstance(text, str):
        return transcript
    item_id = field(data, "item_id")
    index = field(data, "content_index")
    turn = Turn(
        speaker="caller" if event.kind in CALLER_KINDS else "agent", text=text, at=event.time, seq=event.seq,
        item_id=item_id if isinstance(item_id, str) else None, content_index=index if isinstance(index, int) else 0,
    )  # fmt: skip
    t = transcript or Transcript(call_id=event.call_id)
    turns = list(t.turns)
    same = next(
        (i for i, old in enumerate(turns)
         if turn.item_id is not None and (old.speaker, old.item_id, old.content_index)
         == (turn.speaker, turn.item_id, turn.content_index)),
        None,
    )  # fmt: skip
    if same is None:
        turns.append(turn)
    else:
        turns[same] = msgspec.structs.replace(turns[same], text=turn.text)
    return msgspec.structs.replace(t, turns=tuple(turns), last_seq=max(event.seq, t.last_seq))
