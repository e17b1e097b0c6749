"""Pointing ccxt at another host (a proxy, or a loopback fake) without losing paths."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def rebase_urls(urls: Any, base_url: str) -> Any:
    """`urls` (a string or nested dict of strings) with scheme and host taken from base_url.

    Paths stay: https://fapi.binance.com/fapi/v1 -> http://127.0.0.1:8080/fapi/v1.
    """
    if isinstance(urls, dict):
        return {key: rebase_urls(value, base_url) for key, value in urls.items()}
    if not isinstance(urls, str) or "://" not in urls:
        return urls
    base = urlsplit(base_url)
    # Split by hand: ccxt URLs may hold a '{hostname}' placeholder in the host.
    path = urls.split("://", 1)[1].partition("/")[2]
    return f"{base.scheme}://{base.netloc}/{path}".rstrip("/")


def flatten_urls(urls: Any) -> list[str]:
    """The strings of a nested dict of URLs, in a stable (depth-first) order."""
    if isinstance(urls, dict):
        return [url for value in urls.values() for url in flatten_urls(value)]
    return [urls] if isinstance(urls, str) else []


def classify_by_original_urls(exchange: Any, original: Any) -> None:
    """Make a rebased Binance instance pick its error tables by the original URLs.

    ccxt's binance chooses the exception table (spot, linear, ...) from the request
    URL's host; after `rebase_urls` every host is the same. The instance's
    `get_exceptions_by_url` is wrapped to look at the URL the request stands for.
    """
    origins = sorted(
        zip(flatten_urls(exchange.urls["api"]), flatten_urls(original), strict=True),
        key=lambda pair: len(pair[0]),
        reverse=True,
    )
    classify = exchange.get_exceptions_by_url

    def by_original_url(url: str | None, exact_or_broad: str) -> Any:
        for rebased, origin in origins:
            if url is not None and url.startswith(rebased + "/"):
                return classify(origin + url[len(rebased) :], exact_or_broad)
        return classify(url, exact_or_broad)

    exchange.get_exceptions_by_url = by_original_url
