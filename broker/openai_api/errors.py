"""Errors in OpenAI's shape, with the HTTP status each MTOR code deserves.

The body is ``{"error": {"message", "type", "param", "code", "hint"}}``:
``code`` is MTOR's stable code (broker.protocol.ERROR_CODES, or one of
:data:`HTTP_ERROR_CODES` below), so a script can tell ``no_worker`` from
``queue_full`` while an OpenAI client sees the status it expects: 401 a bad
or revoked key, 402 money, 404 an unknown model, 429 slow down (with
``Retry-After``), 503 nobody serves the model now, 400 the request is wrong
(``param`` names the field).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
from aiohttp import web

from broker.openai_api.schema import ErrorBody, ErrorResponse
from broker.protocol import Error, MtorError

# Codes only the HTTP API gives (the bus's own are broker.protocol.ERROR_CODES).
HTTP_ERROR_CODES: dict[str, str] = {
    "invalid_api_key": "No API key, or one this realm never issued.",
    "revoked_api_key": "The API key was revoked.",
    "model_not_found": "No connected worker has ever offered that model.",
    "allowance_exceeded": "The API key's spending limit does not cover the request.",
    "authorisation_exhausted": "No spending authorisation its owner signed covers the key's request.",
    "unknown_key": "No API key with that id belongs to you.",
    "unsupported": "The realm cannot honour that field or value.",
}

_STATUS: dict[str, tuple[int, str]] = {
    "invalid_api_key": (401, "authentication_error"),
    "revoked_api_key": (401, "authentication_error"),
    "bad_signature": (401, "authentication_error"),
    "insufficient_funds": (402, "payment_required"),
    "price_exceeded": (402, "payment_required"),
    "allowance_exceeded": (402, "payment_required"),
    "authorisation_exhausted": (402, "payment_required"),
    "exit_pending": (402, "payment_required"),
    "banned": (403, "permission_error"),
    "forbidden": (403, "permission_error"),
    "model_not_found": (404, "not_found_error"),
    "unknown_intent": (404, "not_found_error"),
    "unknown_guid": (404, "not_found_error"),
    "unknown_key": (404, "not_found_error"),
    "duplicate_guid": (409, "conflict_error"),
    "cancelled": (409, "conflict_error"),
    "rate_limited": (429, "rate_limit_error"),
    "queue_full": (429, "rate_limit_error"),
    "internal": (500, "server_error"),
    "worker_failed": (502, "server_error"),
    "no_worker": (503, "service_unavailable"),
    "maintenance": (503, "service_unavailable"),
    "timeout": (504, "timeout_error"),
}
_NO_RETRY = frozenset({409})  # the OpenAI clients retry a 409 unless told not to
QUEUE_FULL_RETRY_S = 1.0


class ApiError(MtorError):
    """An error answered in OpenAI's shape; ``param`` names the request field at fault."""

    def __init__(self, code: str, message: str, hint: str = "", param: str | None = None, **detail: Any) -> None:
        super().__init__(code, message, hint, **detail)
        self.param = param

    @classmethod
    def of(cls, exc: MtorError, param: str | None = None) -> ApiError:
        if isinstance(exc, ApiError):
            return exc
        return cls(exc.code, exc.message, exc.hint, param, **exc.detail)

    @classmethod
    def from_frame(cls, err: Error, prompt_field: str) -> ApiError:
        """The bus's ``error`` for an HTTP request whose prompt came in ``prompt_field``."""
        detail = dict(err.detail)
        if err.retry_after is not None:
            detail["retry_after"] = err.retry_after
        param = {"prompt_too_long": prompt_field, "bad_attachment": prompt_field, "price_exceeded": "max_price"}
        if err.code == "bad_authorisation":  # a key's request cannot sign again: say what can
            return cls(
                "authorisation_exhausted",
                "the spending authorisation you signed for this realm does not cover this request: "
                + err.message,
                "create a new key with `mtor keys create --limit AMOUNT` (it signs a new authorisation)",
                **detail,
            )
        return cls(err.code, err.message, err.hint, param.get(err.code), **detail)

    @property
    def status(self) -> int:
        return _STATUS.get(self.code, (400, "invalid_request_error"))[0]

    def body(self) -> ErrorResponse:
        kind = _STATUS.get(self.code, (400, "invalid_request_error"))[1]
        return ErrorResponse(ErrorBody(self.message, kind, self.param, self.code, self.hint))

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.code == "rate_limited" or self.code == "queue_full":
            wait = self.detail.get("retry_after", QUEUE_FULL_RETRY_S)
            headers["Retry-After"] = str(max(1, math.ceil(float(wait))))
        if self.status in _NO_RETRY:
            headers["x-should-retry"] = "false"
        return headers

    def response(self) -> web.Response:
        return web.Response(
            body=msgspec.json.encode(self.body()),
            status=self.status,
            content_type="application/json",
            headers=self.headers(),
        )

