"""What the lean reader makes of the bytes a NATS server sends: messages, statuses, and malformed lines."""

from __future__ import annotations

import pytest

from switchboard.shared.pullreader.protocol import ProtocolError, Status, Stored, parse

ACK = b"$JS.ACK.CALLS.reader.1.%d.%d.1700000000000000000.%d"


def _msg(seq: int, pending: int, payload: bytes, subject: bytes = b"calls.rtc_a.ended") -> bytes:
    reply = ACK % (seq, seq, pending)
    return b"MSG %b 1 %b %d\r\n%b\r\n" % (subject, reply, len(payload), payload)


def _hmsg(seq: int, pending: int, payload: bytes) -> bytes:
    headers = b"NATS/1.0\r\nNats-Msg-Id: wh_1\r\n\r\n"
    reply = ACK % (seq, seq, pending)
    size = len(headers) + len(payload)
    return b"HMSG calls.rtc_a.incoming 1 %b %d %d\r\n%b%b\r\n" % (reply, len(headers), size, headers, payload)


def _status(code: bytes, pending: int) -> bytes:
    headers = b"NATS/1.0 %b Request Timeout\r\nNats-Pending-Messages: %d\r\n\r\n" % (code, pending)
    return b"HMSG _INBOX.x 1 %d %d\r\n%b\r\n" % (len(headers), len(headers), headers)


def _parse(buf: bytes) -> tuple[list[Stored], list[Status], int, int, int]:
    out: list[Stored] = []
    statuses: list[Status] = []
    found = parse(buf, out, statuses)
    return out, statuses, found.consumed, found.pending, found.pings


def test_stored_messages_with_and_without_headers_are_read_with_sequence_time_and_pending() -> None:
    """A MSG and an HMSG of the stream become two Stored messages; the last one's pending count is kept."""
    buf = _msg(7, 1, b'{"a":1}') + _hmsg(8, 0, b'{"b":2}')
    out, statuses, consumed, pending, _ = _parse(buf)
    assert out == [
        Stored(7, "calls.rtc_a.ended", 1700000000000000000, b'{"a":1}'),
        Stored(8, "calls.rtc_a.incoming", 1700000000000000000, b'{"b":2}'),
    ]
    assert (statuses, consumed, pending) == ([], len(buf), 0)


def test_a_message_cut_off_by_the_read_is_left_for_the_next_one() -> None:
    """Only complete messages are taken: the rest of the buffer waits for more bytes."""
    whole, cut = _msg(1, 1, b"{}"), _msg(2, 0, b'{"long":"payload"}')
    out, _, consumed, _, _ = _parse(whole + cut[:-6])
    assert [m.seq for m in out] == [1]
    assert consumed == len(whole)


def test_pull_statuses_pings_and_server_chatter_are_told_apart() -> None:
    """A 408 status with its unfilled count, a PING to answer, +OK/PONG/INFO passed over."""
    buf = b"+OK\r\nPING\r\n" + _status(b"408", 12) + b'INFO {"server_id":"x"}\r\nPONG\r\n'
    out, statuses, consumed, pending, pings = _parse(buf)
    assert (out, statuses, consumed, pending, pings) == ([], [(408, "Request Timeout", 12)], len(buf), -1, 1)


@pytest.mark.parametrize(
    "line",
    [
        b"MSG calls.rtc_a.ended 1 $JS.ACK.CALLS.r.1.1.1.1.0 notanumber\r\n{}\r\n",
        b"MSG calls.rtc_a.ended 1 $JS.ACK.CALLS.r.1.x.1.1.0 2\r\n{}\r\n",
        b"MSG calls.rtc_a.ended 1 $JS.ACK.CALLS.r.1.1.1.1.0 1\r\n{}\r\n",
        b"HMSG calls.rtc_a.ended 1 $JS.ACK.CALLS.r.1.1.1.1.0 99 4\r\nNATS\r\n",
        b"MSG\r\n",
        b"GARBAGE from a proxy\r\n",
    ],
    ids=["length", "sequence", "length-mismatch", "header-length", "no-arguments", "unknown-line"],
)
def test_a_malformed_line_is_one_protocol_error_naming_it(line: bytes) -> None:
    """Whatever is wrong with a line, the parser raises ProtocolError quoting it, never a bare crash."""
    with pytest.raises(ProtocolError, match="from the NATS server: '"):
        _parse(_msg(1, 1, b"{}") + line)


def test_a_server_error_is_a_protocol_error_with_the_servers_words() -> None:
    """``-ERR 'Authorization Violation'`` ends the read with the server's own message."""
    with pytest.raises(ProtocolError, match="NATS error: 'Authorization Violation'"):
        _parse(b"-ERR 'Authorization Violation'\r\n")
