"""What to do about a failed Messages API request: retry (and how long to wait), pause, or fail.

The client is built with the SDK's own retries off so that every retry is Ratchet's, and is
recorded as an `agent_retry` event.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import anthropic

try:  # the transport library under the SDK: a stream cut mid-body surfaces as its error
    import httpx2 as _http
except ImportError:  # pragma: no cover - older SDKs ride on httpx
    import httpx as _http

RETRY = "retry"
PAUSE = "pause"
FAIL = "fail"

RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504, 529}
RETRY_TYPES = {"rate_limit_error", "overloaded_error", "api_error", "timeout_error"}
QUOTA_WORDS = ("credit balance", "billing", "quota", "spend limit", "payment")


class StreamCut(Exception):
    """The response stream ended before `message_stop`."""


TRANSPORT_ERRORS = (anthropic.APIConnectionError, _http.TransportError, StreamCut, OSError)


@dataclass
class Verdict:
    action: str  # retry | pause | fail
    label: str  # short class of the error for events, e.g. "429 rate_limit_error"
    message: str  # one line for the person; never holds the API key
    retry_after: float | None = None  # seconds the server asked for


@dataclass
class Backoff:
    """Exponential backoff with jitter: attempt k waits up to base * 2**k, capped."""

    base: float
    cap: float
    rng: random.Random

    def wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return round(min(max(retry_after, 0.0), self.cap), 3)
        ceiling = min(self.cap, self.base * 2 ** attempt)
        return round(ceiling * (0.5 + 0.5 * self.rng.random()), 3)


def scrub(text: str, secret: str | None) -> str:
    """The text with the API key (and any long tail of it) replaced."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[api key]")
    return text


def classify(exc: BaseException, secret: str | None) -> Verdict:
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        kind = getattr(exc, "type", None) or _body_field(exc.body, "type") or ""
        detail = getattr(exc, "api_message", None) or _body_field(exc.body, "message") or ""
        label = (f"{status} {kind}" if status != 200 else kind or "stream_error").strip()
        message = scrub(f"Claude API error {label}: {detail}".rstrip(": "), secret)
        lowered = f"{kind} {detail}".lower()
        if status == 402 or kind == "billing_error" or (
                status in (400, 403) and any(word in lowered for word in QUOTA_WORDS)):
            return Verdict(PAUSE, label, scrub(
                f"the Anthropic account cannot pay for requests ({label}: {detail}); "
                "top it up, then `ratchet ctl resume`", secret))
        if status == 401 or kind == "authentication_error":
            return Verdict(PAUSE, label, "ANTHROPIC_API_KEY was refused (401 authentication_error)"
                                         "; `ratchet stop`, set a valid key, then "
                                         "`ratchet run --resume`")
        if status == 403 or kind == "permission_error":
            return Verdict(PAUSE, label, scrub(f"the API key may not use this model or endpoint "
                                               f"({label}: {detail})", secret))
        if status == 404:
            return Verdict(PAUSE, label, scrub(f"{detail or 'not found'} ({label}): check "
                                               "[agent.claude] model and ANTHROPIC_BASE_URL",
                                               secret))
        if status in RETRY_STATUSES or kind in RETRY_TYPES:
            return Verdict(RETRY, label, message, _retry_after(exc))
        return Verdict(FAIL, label, message)
    if isinstance(exc, StreamCut):
        return Verdict(RETRY, "stream_cut", "the response stream ended early")
    if isinstance(exc, TRANSPORT_ERRORS):
        name = type(exc).__name__
        return Verdict(RETRY, name, scrub(f"connection problem: {name}: {exc}", secret))
    return Verdict(FAIL, type(exc).__name__, scrub(f"{type(exc).__name__}: {exc}", secret))


def _body_field(body: object, name: str) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get(name), str):
            return error[name]
    return ""


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    headers = exc.response.headers
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
