"""The load generator's ceiling: an aiohttp server that answers every POST with 200 at once, reading the
body and doing nothing else. What the harness measures against it is what the harness itself can drive.

    python -m bench._null_server --port P
"""

from __future__ import annotations

import argparse

from aiohttp import web

_OK = b'{"ok":true}'


async def _post(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=_OK, content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(body=_OK, content_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/{tail:.*}", _post)
    app.router.add_get("/healthz", _healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
