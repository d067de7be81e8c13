"""The console's HTTP surface: pages, server-sent events and actions (aiohttp, Jinja2, htmx).

Pages are rendered on the server; htmx's SSE extension keeps them live. Every SSE message about an event
carries the event's stream sequence as its ``id``, and a page's stream starts after the sequence the page
was rendered at (``?after=``) or, when the browser reconnects, after its ``Last-Event-ID``: no gaps, no
repeats. Streams of the live table and of a call's page come from the `Hub` (one reader of the log for
every page). Actions are POST only, from the console's own origin, and go over ``cmd.<call_id>.*`` with
the operator named.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from switchboard.console import auth
from switchboard.console.board import OUTCOMES, Board, Filters, charts, entry, recent, stamp, turn
from switchboard.console.hub import Hub, Item, Subscriber, Tick
from switchboard.shared import events
from switchboard.shared.bus import Bus
from switchboard.shared.commands import CommandRefused, send_command
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.logging import get_logger
from switchboard.shared.projections import TRANSCRIPTS, fold
from switchboard.shared.sip import target_uri_problem

log = get_logger(__name__)

HERE = Path(__file__).parent
KEEPALIVE_S = 15.0
WRITE_TIMEOUT_S = 10.0
_BATCH = 500
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_PUBLIC = ("/static/", "/healthz", "/readyz", "/signin")
_SINCE = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _clock(at: str | None) -> str:
    return at[11:19] if at and len(at) >= 19 else ""


def _seconds(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    try:
        delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    except ValueError:
        return ""
    total = max(0, int(delta.total_seconds()))
    return f"{total // 60}:{total % 60:02d}"


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["clock"] = _clock
    env.globals.update(seconds=_seconds, operator=None, nav="")
    return env


def sse(name: str, data: str, seq: int | None = None) -> bytes:
    """One server-sent event: its id (a stream sequence), name and data (one ``data:`` line per line)."""
    lines = [f"id: {seq}"] if seq is not None else []
    lines.append(f"event: {name}")
    lines += [f"data: {line}" for line in data.splitlines() or [""]]
    return ("\n".join(lines) + "\n\n").encode()


class ConsoleApp:
    """The web application over one `Hub`."""

    def __init__(
        self, hub: Hub, bus: Bus, *, mode: str, token: str | None, ready: Callable[[], bool],
        trace_url: str | None = None,
    ) -> None:  # fmt: skip
        self.hub = hub
        self._trace_url = trace_url
        self._bus = bus
        self._mode = mode
        self._token = token
        self._ready = ready
        self._env = templates()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/signin", self._signin)
        app.router.add_get("/", self._live)
        app.router.add_get("/events", self._live_events)
        app.router.add_get("/calls", self._recent)
        app.router.add_get("/calls/{call_id}", self._call)
        app.router.add_get("/calls/{call_id}/events", self._call_events)
        app.router.add_post("/calls/{call_id}/{action}", self._act)
        app.router.add_static("/static/", HERE / "static", append_version=False)
        return app

    # --- guard: sign-in, headers ----------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await self._guarded(request, handler)
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(_PUBLIC):
            return await handler(request)
        if request.path == "/" and "token" in request.query and self._mode == "token":
            return self._sign_in(request)
        if self.operator(request) is None:
            if request.method == "GET" and not request.path.endswith("/events"):
                return self._page("signin.html", status=401, message=None, mode=self._mode)
            return web.Response(status=401, text="sign in first: open the console's URL with ?token=…\n")
        return await handler(request)

    def operator(self, request: web.Request) -> str | None:
        return auth.operator(self._mode, self._token, request.headers, request.cookies)

    def _sign_in(self, request: web.Request) -> web.StreamResponse:
        given = request.query.get("token", "")
        if self._token is None or not auth.token_matches(self._token, given):
            log.warning("console_sign_in_refused", remote=request.remote)
            return self._page("signin.html", status=401, message="That token is not the console's.", mode=self._mode)
        name = auth.operator_name(request.query.get("name"))
        log.info("console_signed_in", operator=name, remote=request.remote)
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(
            auth.COOKIE, auth.session_cookie(self._token, name), httponly=True, samesite="Strict",
            secure=request.secure, path="/",
        )  # fmt: skip
        return response

    async def _signin(self, request: web.Request) -> web.StreamResponse:
        return self._page("signin.html", message=None, mode=self._mode)

    # --- pages ----------------------------------------------------------------------------------------

    def _page(self, name: str, *, status: int = 200, **context: Any) -> web.Response:
        body = self._env.get_template(name).render(**context)
        return web.Response(status=status, text=body, content_type="text/html", charset="utf-8")

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def _readyz(self, request: web.Request) -> web.StreamResponse:
        ready = self._ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def _not_ready(self) -> web.Response | None:
        try:
            async with asyncio.timeout(10):
                await self.hub.ready.wait()
        except TimeoutError:
            return web.Response(status=503, text="the console is still reading the log; try again shortly\n")
        return None

    async def _live(self, request: web.Request) -> web.StreamResponse:
        if (busy := await self._not_ready()) is not None:
            return busy
        board = self.hub.board
        now = datetime.now(UTC)
        return self._page(
            "live.html", operator=self.operator(request), rows=board.live(now=now), after=self.hub.last_seq,
            charts=json.dumps(charts(board.records.values(), now=now)), nav="live",
        )  # fmt: skip

    async def _recent(self, request: web.Request) -> web.StreamResponse:
        if (busy := await self._not_ready()) is not None:
            return busy
        q = request.query
        since_key = q.get("since", "24h")
        if since_key not in (*_SINCE, "all"):
            return web.Response(status=400, text=f"since must be one of {', '.join((*_SINCE, 'all'))}\n")
        outcome = q.get("outcome", "")
        if outcome and outcome not in OUTCOMES:
            return web.Response(status=400, text=f"outcome must be one of {', '.join(OUTCOMES)}\n")
        try:
            page = int(q.get("page", "1"))
        except ValueError:
            return web.Response(status=400, text="page must be a number\n")
        since = stamp(datetime.now(UTC) - _SINCE[since_key]) if since_key in _SINCE else None
        filters = Filters(since=since, number=q.get("number", "").strip(), rule=q.get("rule", "").strip(),
                          outcome=outcome)  # fmt: skip
        records = self.hub.board.records.values()
        result = recent(records, filters, page=page)
        rules = sorted({r.rule for r in records if r.rule})
        params = {"since": since_key, "number": filters.number, "rule": filters.rule, "outcome": outcome}
        return self._page(
            "recent.html", operator=self.operator(request), page=result, rules=rules, outcomes=OUTCOMES,
            sinces=(*_SINCE, "all"), params=params, nav="recent",
        )  # fmt: skip

    async def _call(self, request: web.Request) -> web.StreamResponse:
        call_id = request.match_info["call_id"]
        if not events.is_safe_call_id(call_id):
            return self._page("missing.html", status=404, operator=self.operator(request), call_id=call_id, nav="")
        if (busy := await self._not_ready()) is not None:
            return busy
        try:
            logged = await self.hub.call_events(call_id)
        except (BusUnavailable, TimeoutError) as exc:
            return web.Response(status=503, text=f"could not read the call from the log: {exc}\n")
        if not logged:
            return self._page("missing.html", status=404, operator=self.operator(request), call_id=call_id, nav="")
        entries = [e for e in (entry(ev) for ev in logged) if e is not None]
        folded = fold(TRANSCRIPTS, logged).get(call_id)  # Live's fragments as turns too
        turns = list(folded.turns) if folded is not None else []
        state = self.hub.board.states.get(call_id)
        if turns and turns[-1].end_ms is not None and (state is None or state.phase != "ended"):
            turns.pop()  # a Live turn still being spoken: the stream sends it once it is complete
        return self._page(
            "call.html", operator=self.operator(request), call_id=call_id, entries=entries, turns=turns,
            after=logged[-1].seq, nav="", **self._status(call_id),
        )  # fmt: skip

    def _status(self, call_id: str) -> dict[str, Any]:
        board = self.hub.board
        record = board.records.get(call_id)
        trace_id = record.trace_id if record is not None else None
        trace = self._trace_url.replace("{trace_id}", trace_id) if self._trace_url and trace_id else None
        return {
            "state": board.states.get(call_id), "record": record, "reason": board.reasons.get(call_id, ""),
            "trace_id": trace_id, "trace_link": trace,
        }  # fmt: skip

    # --- server-sent events ---------------------------------------------------------------------------

    def _after(self, request: web.Request) -> int | None:
        raw = request.headers.get("Last-Event-ID") or request.query.get("after", "")
        try:
            return max(0, int(raw))
        except ValueError:
            return None

    async def _live_events(self, request: web.Request) -> web.StreamResponse:
        after = self._after(request)
        if after is None:
            return web.Response(status=400, text="after (or Last-Event-ID) must be a stream sequence\n")
        if (busy := await self._not_ready()) is not None:
            return busy
        return await self._stream(request, None, after)

    async def _call_events(self, request: web.Request) -> web.StreamResponse:
        call_id = request.match_info["call_id"]
        after = self._after(request)
        if not events.is_safe_call_id(call_id):
            return web.Response(status=404, text="not a call id\n")
        if after is None:
            return web.Response(status=400, text="after (or Last-Event-ID) must be a stream sequence\n")
        if (busy := await self._not_ready()) is not None:
            return busy
        return await self._stream(request, call_id, after)

    async def _stream(self, request: web.Request, call: str | None, after: int) -> web.StreamResponse:
        subscriber = self.hub.subscribe(call)  # first, so nothing falls between the backlog and the live items
        try:
            backlog: list[Item] | None = self.hub.backlog(after, call)
            frames: list[bytes] = []
            if backlog is None and call is None:
                frames.append(sse("reload", "the page is too far behind"))
            elif backlog is None:
                assert call is not None
                try:
                    logged = await self.hub.call_events(call, after=after)
                except (BusUnavailable, TimeoutError) as exc:
                    return web.Response(status=503, text=f"could not read the call from the log: {exc}\n")
                completes = Board()  # Live turns completed in what is read again (from `after` on)
                frames += [self._call_frame_of(Item(ev, None, completes.completed_turn(ev))) for ev in logged]
                after = logged[-1].seq if logged else after
            else:
                frames += [f for f in (self._frame(item, call) for item in backlog) if f]
                after = backlog[-1].seq if backlog else after
            response = web.StreamResponse(headers={
                "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
            })  # fmt: skip
            await response.prepare(request)
            try:
                await self._write(response, b"retry: 1000\n\n" + b"".join(frames))
                await self._pump(response, subscriber, call, after)
            except (ConnectionResetError, TimeoutError):  # the page went away, or stopped reading
                pass
            return response
        finally:
            self.hub.unsubscribe(subscriber)

    async def _pump(self, response: web.StreamResponse, subscriber: Subscriber, call: str | None, after: int) -> None:
        queue = subscriber.queue
        while not self._stopping.is_set():
            try:
                first = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await self._write(response, b": keepalive\n\n")
                continue
            got = [first]
            while len(got) < _BATCH and not queue.empty():
                got.append(queue.get_nowait())
            out: list[bytes] = []
            for item in got:
                if item is None:  # fell too far behind: the page reconnects and resumes from the ring
                    await self._write(response, b"".join(out))
                    return
                if isinstance(item, Tick):
                    out.append(item.frame(self._charts_frame))
                elif item.seq > after:
                    after = item.seq
                    frame = self._frame(item, call)
                    if frame:
                        out.append(frame)
            if out:
                await self._write(response, b"".join(out))

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        if data:
            await asyncio.wait_for(response.write(data), WRITE_TIMEOUT_S)

    def _frame(self, item: Item, call: str | None) -> bytes | None:
        if call is None:
            return item.frame("row", self._row_frame)
        return item.frame("call", self._call_frame_of)

    def _row_frame(self, item: Item) -> bytes | None:
        state = item.state
        if state is None:
            return None
        html = self._env.get_template("row.html").render(s=state)
        name = "new" if item.event.kind == "incoming" else f"c-{state.call_id}"
        return sse(name, html, item.seq)

    def _call_frame_of(self, item: Item) -> bytes:
        event = item.event
        frames: list[bytes] = []
        spoken = turn(event) or item.turn  # first: a Live turn an event completes was said before it
        if spoken is not None:
            frames.append(sse("turn", self._env.get_template("turn.html").render(t=spoken), event.seq))
        line = entry(event)
        if line is not None:
            frames.append(sse("timeline", self._env.get_template("entry.html").render(e=line), event.seq))
        status = self._env.get_template("status.html").render(**self._status(event.call_id))
        frames.append(sse("status", status, event.seq))
        return b"".join(frames)

    def _charts_frame(self) -> bytes:
        data = charts(self.hub.board.records.values(), now=datetime.now(UTC))
        return sse("charts", json.dumps(data))

    # --- actions --------------------------------------------------------------------------------------

    async def _act(self, request: web.Request) -> web.StreamResponse:
        call_id, action = request.match_info["call_id"], request.match_info["action"]
        scheme = request.headers.get("X-Forwarded-Proto", request.scheme) if self._mode == "proxy" else request.scheme
        if not auth.same_origin(request.headers.get("Origin"), request.host, scheme):
            return self._outcome(403, "refused: not from the console's own page (Origin)")
        if action not in ("hangup", "transfer", "say"):
            return self._outcome(404, f"no action {action!r}: hangup, transfer or say")
        if not events.is_safe_call_id(call_id):
            return self._outcome(404, "not a call id")
        form = await request.post()
        body: dict[str, Any] = {}
        if action == "transfer":
            target = str(form.get("target", "")).strip()
            problem = target_uri_problem(target)
            if problem is not None:
                return self._outcome(400, f"target {problem}")
            body = {"target_uri": target}
        elif action == "say":
            instructions = str(form.get("instructions", "")).strip()
            if not instructions:
                return self._outcome(400, "say what? the instructions are empty")
            body = {"instructions": instructions}
        operator = self.operator(request)
        started = time.monotonic()
        try:
            await send_command(self._bus, call_id, action, body, operator=operator)
        except CommandRefused as exc:
            return self._outcome(409, f"refused: {exc}")
        except BusUnavailable as exc:
            return self._outcome(503, f"no answer: {exc}")
        log.info("console_action", call_id=call_id, action=action, operator=operator)
        done = {"hangup": "hung up", "transfer": f"transferred to {body.get('target_uri')}",
                "say": "the agent was asked to say it"}[action]  # fmt: skip
        return self._outcome(200, f"ok: {done} ({(time.monotonic() - started) * 1000:.0f} ms)")

    def _outcome(self, status: int, text: str) -> web.Response:
        return self._page("outcome.html", status=status, ok=status == 200, text=text)


async def close_streams(app: ConsoleApp) -> None:
    """Let every open stream end (a shutdown)."""
    app.stop()
    with contextlib.suppress(Exception):
        await app.hub.stop()
