"""The naive approach, for comparison: a webhook handler in the style of OpenAI's published Flask example
for the Realtime API over SIP.

One synchronous Flask view per webhook: verify it with the openai SDK's ``webhooks.unwrap``, POST the
accept inline with ``requests``, start a ``threading.Thread`` that opens the sideband WebSocket (the
synchronous ``websockets.sync.client``), sends ``response.create`` for the greeting and reads events
until the call ends; answer 200. Served by Flask's own threaded server (``app.run``), as in the example.
It stores nothing and decides nothing: every event lives and dies in that thread.

    OPENAI_API_KEY=… OPENAI_WEBHOOK_SECRET=whsec_… OPENAI_BASE_URL=http://127.0.0.1:8100/v1 \\
        python -m bench.baseline_flask --port 8000

Deviations from the example, all in its favour: it does not print every event (stdout would be a cost),
werkzeug's access log is off, and it answers ``GET /healthz`` so the benchmark knows it is up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from typing import Any

import requests
from flask import Flask, Response, request
from openai import InvalidWebhookSignatureError, OpenAI
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

BASE_URL = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
SIDEBAND_URL = BASE_URL.replace("https://", "wss://").replace("http://", "ws://") + "/realtime?call_id="
AUTH_HEADER = {"Authorization": "Bearer " + os.environ.get("OPENAI_API_KEY", "")}

app = Flask(__name__)
client = OpenAI(webhook_secret=os.environ.get("OPENAI_WEBHOOK_SECRET"), base_url=BASE_URL)

call_accept: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "You are the friendly phone concierge of Example Co. Keep answers short.",
}
response_create = {
    "type": "response.create",
    "response": {"instructions": "Say to the user: Thank you for calling, how can I help you?"},
}


def websocket_task(call_id: str) -> None:
    try:
        with connect(SIDEBAND_URL + call_id, additional_headers=AUTH_HEADER) as websocket:
            websocket.send(json.dumps(response_create))
            while True:
                websocket.recv()  # the example prints every event here
    except ConnectionClosed:
        pass  # the call ended
    except Exception as exc:
        print(f"WebSocket error: {exc}")


@app.route("/", methods=["POST"])
def webhook() -> Response:
    try:
        event = client.webhooks.unwrap(request.data, request.headers)
        if event.type == "realtime.call.incoming":
            requests.post(
                BASE_URL + "/realtime/calls/" + event.data.call_id + "/accept",
                headers={**AUTH_HEADER, "Content-Type": "application/json"},
                json=call_accept,
            )
            threading.Thread(target=websocket_task, args=(event.data.call_id,), daemon=True).start()
        return Response(status=200)
    except InvalidWebhookSignatureError as exc:
        print("Invalid signature", exc)
        return Response("Invalid signature", status=400)


@app.route("/healthz", methods=["GET"])
def healthz() -> Response:
    return Response("ok", status=200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
