"""Secrets out of every text that leaves the process: log lines, journaled errors, alerts.

A secret rarely leaks raw. A venue's error page quotes the request JSON-escaped (an OKX
passphrase with `"` or `\\` became `\\"` and `\\\\`), a URL carries it percent-encoded
(the Telegram token sits in every Bot API path), a repr escapes it again. `Redactor`
replaces each form it knows with `***`. It sits below every room (with `bot.clock`), so
the exchange adapters, the journal and the CLI share one rule.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "***"
# Shorter values are not worth scrubbing (and would mangle ordinary words).
MIN_SECRET_LENGTH = 4


def secret_forms(secret: str) -> set[str]:
    """`secret` as it may appear in text: raw, JSON-escaped (once and twice, ASCII or
    not), Python-repr-escaped, HTML-escaped and URL-encoded (path and form style,
    upper- and lower-case hex)."""
    forms = {secret}
    for _ in range(2):
        for form in list(forms):
            forms.add(json.dumps(form)[1:-1])
            forms.add(json.dumps(form, ensure_ascii=False)[1:-1])
    forms.add(repr(secret)[1:-1])
    forms.add(html.escape(secret))
    for encoded in (quote(secret, safe=""), quote(secret), quote_plus(secret, safe="")):
        forms.add(encoded)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), encoded))
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class Redactor:
    """Replaces every form of every secret given with `***`. Callable on a string."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(
            sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len)
        )
        forms = {form for secret in self.secrets for form in secret_forms(secret)}
        # Longest first: a form that contains another is replaced whole.
        alternatives = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if forms else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(REDACTED, text)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __repr__(self) -> str:
        # Never the secrets themselves.
        return f"Redactor({len(self.secrets)} secret(s))"


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every form of every secret replaced by `***`."""
    return Redactor(secrets)(text)


class RedactingFilter(logging.Filter):
    """Scrubs a record's whole text (message, arguments, traceback, stack) on its way to
    a handler. Put it on the handlers, not on a logger: a logger's filters never see the
    records of other loggers (python-telegram-bot's, ccxt's) propagating to its handlers.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactor:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: its handler reports it
            return True
        scrubbed = self.redactor(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info:
            # Formatted here and scrubbed; handlers print exc_text as is.
            trace = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = self.redactor(trace), None
        elif record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


def guard_handlers(handlers: Iterable[logging.Handler], redactor: Redactor) -> None:
    """Give each handler one `RedactingFilter` for `redactor` (replacing an older one)."""
    for handler in handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(RedactingFilter(redactor))
