"""ccxt errors become the port's errors here, with credentials scrubbed from every message.

Also the bounded retry used around ccxt calls, and a logging filter that keeps keys out
of ccxt's own debug log lines (ccxt logs request headers, which carry the API key and,
on OKX, the passphrase).
"""

from __future__ import annotations

import asyncio
import logging
import re
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import ccxt.async_support as ccxt

from bot.exchange.port import (
    AuthenticationError,
    CapabilityMissing,
    ExchangeError,
    InsufficientFunds,
    InvalidOrder,
    OperationalError,
    OutcomeUnknown,
    TemporaryError,
    UnknownSymbol,
)
from bot.redaction import redact as redact_all_forms

logger = logging.getLogger(__name__)

T = TypeVar("T")

REDACTED = "***"
# Binance puts a per-request HMAC in the query string; not a key, but no use in a message.
_SIGNATURE = re.compile(r"(signature=)[0-9a-fA-F%]+")


class RateLimited(TemporaryError):
    """The venue refused the request before acting on it (rate limit, IP ban).

    Unlike a timeout or a 5xx, nothing happened, so even a write may be sent again.
    """


# Most specific first: ccxt's hierarchy nests OrderNotFound in InvalidOrder, BadSymbol
# in BadRequest, PermissionDenied in AuthenticationError, the rate limits in NetworkError.
_TRANSLATION: tuple[tuple[type[Exception], type[ExchangeError]], ...] = (
    (ccxt.DDoSProtection, RateLimited),
    (ccxt.RateLimitExceeded, RateLimited),
    (ccxt.NetworkError, TemporaryError),
    (ccxt.InsufficientFunds, InsufficientFunds),
    (ccxt.BadSymbol, UnknownSymbol),
    (ccxt.AuthenticationError, AuthenticationError),
    (ccxt.NotSupported, CapabilityMissing),
    # OrderNotFound lands here too: for a write it means the order id is wrong. The one
    # read where "not found" is an answer (fetch by client id) catches it before this.
    (ccxt.InvalidOrder, InvalidOrder),
)


# ccxt errors that refuse a request before the venue acts on it, although ccxt files them
# under NetworkError: rate limits (above) and the clock check (Binance -1021 "timestamp
# outside of the recvWindow" is InvalidNonce). A write refused so never happened.
_REFUSED_BEFORE_ACTING: tuple[type[Exception], ...] = (
    ccxt.DDoSProtection,
    ccxt.RateLimitExceeded,
    ccxt.InvalidNonce,
)
# The reply was lost or unreadable: timeouts, resets, 5xx (ExchangeNotAvailable), and
# OperationFailed, which holds BadResponse / NullResponse and Binance's -1000 "unknown
# error" and -1001 "internal error" (ccxt's binance exceptions table). For a read, worth
# another try; for a write, the venue may have acted.
_REPLY_LOST: tuple[type[Exception], ...] = (ccxt.NetworkError, ccxt.OperationFailed)


def _transport_failed(error: Exception) -> bool:
    """ccxt raises a bare ExchangeError for an aiohttp error that is no connection error
    (a body cut short: ClientPayloadError); its cause says so."""
    return isinstance(error.__cause__, aiohttp.ClientError)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every credential value in every form (raw, JSON-escaped,
    URL-encoded: `bot.redaction`) and the request signature replaced."""
    return _SIGNATURE.sub(r"\g<1>" + REDACTED, redact_all_forms(text, secrets))


def translate(
    error: Exception, secrets: Sequence[str] = (), *, write: bool = False
) -> ExchangeError:
    """The port error for a ccxt error; anything unknown is an `OperationalError`.

    For a `write`, a lost or unreadable reply is `OutcomeUnknown` (it may have happened);
    for a read it is a `TemporaryError` (worth a bounded retry).
    """
    message = redact(f"{type(error).__name__}: {error}", secrets)
    lost = not isinstance(error, _REFUSED_BEFORE_ACTING) and (
        isinstance(error, _REPLY_LOST) or _transport_failed(error)
    )
    if lost:
        return OutcomeUnknown(message) if write else TemporaryError(message)
    for ccxt_type, port_type in _TRANSLATION:
        if isinstance(error, ccxt_type):
            return port_type(message)
    return OperationalError(message)


@contextmanager
def translated(secrets: Sequence[str] = (), *, write: bool = False) -> Iterator[None]:
    """Re-raise ccxt errors raised inside the block as port errors (and anything else
    ccxt raises as an `OperationalError`, or for a `write` as `OutcomeUnknown`).

    The original is not chained (`from None`): its text is the unscrubbed original.
    """
    try:
        yield
    except ExchangeError:
        raise
    except ccxt.BaseError as error:
        raise translate(error, secrets, write=write) from None
    except Exception as error:
        # A bug inside ccxt (it has parsed replies into TypeErrors): the call may have
        # done its work, so it is never a retry or a crash; for a write its outcome is
        # unknown (to be looked up), for a read an operational failure.
        # The traceback goes in scrubbed: logger.exception would append it raw.
        trace = redact("".join(traceback.format_exception(error)), secrets)
        logger.error("ccxt failed unexpectedly:\n%s", trace)  # noqa: TRY400
        message = redact(f"ccxt failed: {type(error).__name__}: {error}", secrets)
        raise (OutcomeUnknown(message) if write else OperationalError(message)) from None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff: `attempts` tries, delays `first_delay * factor**n`."""

    attempts: int = 3
    first_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    def delays(self) -> Iterator[float]:
        delay = self.first_delay
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_delay)
            delay *= self.factor


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    retry_on: tuple[type[ExchangeError], ...] = (TemporaryError,),
    *,
    what: str = "exchange call",
) -> T:
    """Await `call()`, trying again after the policy's delays while it raises `retry_on`."""
    delays = policy.delays()
    attempt = 1
    while True:
        try:
            return await call()
        except retry_on as error:
            delay = next(delays, None)
            if delay is None:
                raise
            logger.warning(
                "%s failed (attempt %d/%d), retrying in %.2fs: %s",
                what,
                attempt,
                policy.attempts,
                delay,
                error,
            )
            attempt += 1
            await asyncio.sleep(delay)


class SecretFilter(logging.Filter):
    """Scrubs credential values out of log records that pass through a logger."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = redact(message, self._secrets)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True
