"""Binance's request signing, checked the way the venue checks it.

A signed request carries `X-MBX-APIKEY` and `signature` = HMAC-SHA256(secret, total
params), where total params is the query string followed by the form body, without
the signature itself. `timestamp` must be within `recvWindow` of the server's clock.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from bot.exchange.paper_venue import binance_payloads as payloads


@dataclass(frozen=True, slots=True)
class Refusal(Exception):
    """A request the venue answers with an error, in Binance's JSON."""

    status: int
    code: int
    message: str

    def body(self) -> payloads.Json:
        return payloads.error(self.code, self.message)


def _without_signature(raw: str) -> tuple[str, str | None]:
    """(`raw` without its signature field, the signature)."""
    kept: list[str] = []
    signature: str | None = None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            signature = part.removeprefix("signature=")
        else:
            kept.append(part)
    return "&".join(kept), signature


@dataclass(frozen=True, slots=True)
class Signer:
    api_key: str
    secret: str
    default_recv_window_ms: int = 5000

    def verify(self, api_key: str | None, query: str, body: str, now_ms: int) -> dict[str, str]:
        """The request's parameters, once its key, signature and timestamp check out."""
        if api_key is None or not hmac.compare_digest(api_key, self.api_key):
            raise Refusal(401, -2015, "Invalid API-key, IP, or permissions for action.")
        unsigned_query, query_signature = _without_signature(query)
        unsigned_body, body_signature = _without_signature(body)
        signature = body_signature or query_signature
        if signature is None:
            raise Refusal(400, -1102, "Mandatory parameter 'signature' was not sent.")
        expected = hmac.new(
            self.secret.encode(), (unsigned_query + unsigned_body).encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise Refusal(400, -1022, "Signature for this request is not valid.")
        params = dict(parse_qsl(unsigned_query, keep_blank_values=True))
        params.update(parse_qsl(unsigned_body, keep_blank_values=True))
        try:
            timestamp = int(params["timestamp"])
            window = int(params.get("recvWindow", self.default_recv_window_ms))
        except (KeyError, ValueError):
            raise Refusal(400, -1102, "Mandatory parameter 'timestamp' was not sent.") from None
        if timestamp > now_ms + 1000 or now_ms - timestamp > window:
            raise Refusal(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return params


def positive_param(text: str | None, name: str) -> Decimal:
    """A request's positive number, refused the way Binance refuses it."""
    try:
        value = Decimal(text or "")
    except InvalidOperation:
        raise Refusal(400, -1102, f"Mandatory parameter '{name}' was not sent.") from None
    if not value.is_finite() or value <= 0:
        raise Refusal(400, -4003, f"{name} less than or equal to zero.")
    return value


def int_param(text: str | None) -> int | None:
    """A request's optional integer (absent or unreadable: None)."""
    try:
        return int(text) if text else None
    except ValueError:
        return None
