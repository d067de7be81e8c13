"""The ingress service: OpenAI's signed webhooks in, stored events out.

``app.py`` the HTTP service and its lifecycle · ``validation.py`` what counts as a usable event and where
it is stored (pure) · ``telemetry.py`` its Prometheus metrics · ``openapi.yaml`` its HTTP surface.
Signature verification lives in ``shared/src/switchboard/shared/webhooks.py`` (the emulator signs with it too).
"""
