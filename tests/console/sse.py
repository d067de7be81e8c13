"""Reading a console page's server-sent events in tests, as a browser's EventSource does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import msgspec


class Message(msgspec.Struct, frozen=True):
    id: int | None
    event: str
    data: str


async def messages(response: aiohttp.ClientResponse) -> AsyncIterator[Message]:
    """The messages of an open `text/event-stream` response, as they arrive (comments skipped)."""
    event_id: int | None = None
    name, data = "message", []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield Message(event_id, name, "\n".join(data))
            event_id, name, data = None, "message", []
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "id":
            event_id = int(value)
        elif field == "event":
            name = value
        elif field == "data":
            data.append(value)


async def read_until(
    response: aiohttp.ClientResponse, done: Callable[[list[Message]], bool], *, timeout: float = 15.0
) -> list[Message]:
    """Every message of the stream until `done(messages so far)` holds; fails after `timeout` seconds."""
    seen: list[Message] = []
    try:
        async with asyncio.timeout(timeout):
            async for message in messages(response):
                seen.append(message)
                if done(seen):
                    return seen
    except TimeoutError:
        raise AssertionError(f"the stream did not get there within {timeout}s; got {[m.event for m in seen]}") from None
    raise AssertionError(f"the stream ended first; got {[m.event for m in seen]}")
