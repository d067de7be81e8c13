"""The NATS client protocol as the lean reader hears it: pure parsing of what a server sends back.

`parse` turns a buffer of server lines (``MSG``/``HMSG`` of stored messages and pull-request statuses,
``PING``, ``+OK``, ``INFO``, ``-ERR``) into `Stored` messages and statuses. A line that does not follow
the protocol raises `ProtocolError` naming it, never an IndexError or ValueError: the reader then
resumes on a new connection after the last message it delivered, or a replay fails with that one line.
"""

from __future__ import annotations

import msgspec

from switchboard.shared.errors import BusUnavailable


class Stored(msgspec.Struct, frozen=True, gc=False):
    """One stored message as read: stream sequence, subject, store time (ns since the epoch) and payload."""

    seq: int
    subject: str
    time_ns: int
    data: bytes


class ProtocolError(BusUnavailable):
    """The server sent something that is not the NATS protocol (or a server error): the read resumes."""


Status = tuple[int, str, int | None]
"""A pull request's status: (code, description, pending messages the ended request left unfilled)."""


class Parsed(msgspec.Struct, gc=False):
    """What `parse` found: how many bytes it consumed, the last message's pending count, PINGs to answer."""

    consumed: int = 0
    pending: int = -1
    pings: int = 0


def _shown(line: bytes) -> str:
    text = line[:120].decode(errors="replace")
    return repr(text + ("…" if len(line) > 120 else ""))


def parse(buf: bytes, out: list[Stored], statuses: list[Status]) -> Parsed:
    """Parse the complete lines at the start of `buf`, appending messages to `out` and statuses to
    `statuses`; an incomplete last line or message is left for the next read (`Parsed.consumed`)."""
    found = Parsed()
    pos, size = 0, len(buf)
    find = buf.find
    while pos < size:
        eol = find(b"\r\n", pos)
        if eol < 0:
            break
        try:
            if buf.startswith(b"MSG ", pos):
                args = buf[pos + 4 : eol].split(b" ")
                end = eol + 2 + int(args[-1])
                if end + 2 > size:
                    break
                if len(args) == 4:
                    seq, time_ns, found.pending = ack_fields(args[2])
                    out.append(Stored(seq, args[0].decode(), time_ns, buf[eol + 2 : end]))
                elif len(args) != 3:
                    raise ValueError
                if buf[end : end + 2] != b"\r\n":
                    raise ValueError
                pos = end + 2
            elif buf.startswith(b"HMSG ", pos):
                args = buf[pos + 5 : eol].split(b" ")
                header_len, end = int(args[-2]), eol + 2 + int(args[-1])
                if end + 2 > size:
                    break
                if header_len > end - eol - 2 or buf[end : end + 2] != b"\r\n":
                    raise ValueError
                headers = buf[eol + 2 : eol + 2 + header_len]
                if len(args) == 5 and args[2].startswith(b"$JS.ACK."):  # a stored message with headers
                    seq, time_ns, found.pending = ack_fields(args[2])
                    out.append(Stored(seq, args[0].decode(), time_ns, buf[eol + 2 + header_len : end]))
                elif len(args) in (4, 5):
                    statuses.append(status(headers))
                else:
                    raise ValueError
                pos = end + 2
            else:
                line = buf[pos:eol]
                pos = eol + 2
                if line == b"PING":
                    found.pings += 1
                elif line.startswith(b"-ERR"):
                    raise ProtocolError(f"NATS error: {line[5:].decode(errors='replace').strip()}")
                elif not line.startswith((b"PONG", b"+OK", b"INFO ")) and line:
                    raise ProtocolError(f"unexpected line from the NATS server: {_shown(line)}")
        except (ValueError, IndexError, UnicodeDecodeError):
            raise ProtocolError(f"malformed line from the NATS server: {_shown(buf[pos:eol])}") from None
    found.consumed = pos
    return found


def ack_fields(reply: bytes) -> tuple[int, int, int]:
    """(stream seq, store time ns, pending) from a ``$JS.ACK.…`` reply subject (v1 or v2 layout)."""
    if reply.count(b".") == 8:  # v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
        _, seq, _, time_ns, pending = reply.rsplit(b".", 4)
    else:  # v2 adds the domain and account hash after $JS.ACK, and may end with a random token
        tokens = reply.split(b".")
        seq, time_ns, pending = tokens[7], tokens[9], tokens[10]
    return int(seq), int(time_ns), int(pending)


def status(headers: bytes) -> Status:
    """(code, description, pending messages of the ended request) from a status message's headers."""
    first, _, rest = headers.partition(b"\r\n")
    parts = first.decode(errors="replace").split(" ", 2)  # NATS/1.0 408 Request Timeout
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    pending: int | None = None
    for line in rest.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"nats-pending-messages" and value.strip().isdigit():
            pending = int(value.strip())
    return code, parts[2] if len(parts) > 2 else "", pending
