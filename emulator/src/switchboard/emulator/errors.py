"""The emulator's errors.

    EmulatorError            misuse of the emulator itself (no webhook_url, unknown call or script, …)
    ApiError                 an OpenAI-shaped HTTP error raised inside a handler, turned into a response once

`ApiError` carries OpenAI's error body (``{"error": {"message", "type", "code", "param"}}``).
"""

from __future__ import annotations

from typing import Any


class EmulatorError(Exception):
    """The emulator was asked to do something it cannot (a programming or configuration error)."""


class ApiError(Exception):
    """An error answer of the emulated OpenAI API."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type

    def body(self) -> dict[str, Any]:
        """OpenAI's error envelope."""
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


def invalid_api_key() -> ApiError:
    """What OpenAI answers for a missing or wrong bearer key (never echoing the key)."""
    return ApiError(
        401,
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def call_not_found(call_id: str) -> ApiError:
    """The call is unknown or already over (the caller hung up, gave up, or it was rejected/referred)."""
    return ApiError(404, f"Call with id '{call_id}' not found.", code="call_id_not_found")


def invalid_call_state(call_id: str, state: str, wanted: str) -> ApiError:
    """The call exists but is in the wrong state for this operation."""
    return ApiError(
        400, f"Call '{call_id}' is {state}; this operation requires a {wanted} call.", code="invalid_call_state"
    )


def call_already_handled(call_id: str, state: str) -> ApiError:
    """Accept, reject or refer of a call that was already answered one way or another."""
    return ApiError(409, f"Call '{call_id}' has already been handled ({state}).", code="call_already_handled")


def injected(status: int, code: str | None) -> ApiError:
    """An error answer produced by fault injection, shaped like OpenAI's for that status."""
    if status == 429:
        return ApiError(
            429,
            "Rate limit reached for requests. Please try again in 1s.",
            code=code or "rate_limit_exceeded",
            type="requests",
        )
    if status >= 500:
        return ApiError(
            status,
            "The server had an error while processing your request. Sorry about that!",
            code=code,
            type="server_error",
        )
    if status == 401:
        return invalid_api_key()
    return ApiError(status, f"Injected fault ({status}).", code=code)
