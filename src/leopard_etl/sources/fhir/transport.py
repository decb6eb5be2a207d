"""One HTTP policy for REST search and Bulk export: timeouts, retries with backoff, clear errors.

A server may answer 429 / 5xx or drop a connection at any page; we retry with
exponential backoff and jitter, honouring ``Retry-After``, and when a request
fails for good we raise :class:`SourceError` — a read is never silently partial.
Messages name the URL without its query's secrets (we put none there) and never
include request headers, so a bearer token cannot leak into logs or errors.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from ...errors import SourceError

__all__ = ["RETRY_STATUS", "HttpPolicy", "retry_after_seconds"]

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
FHIR_JSON = "application/fhir+json"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _diagnostics(resp: httpx.Response) -> str:
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(body, dict):
        for issue in body.get("issue") or ():
            if isinstance(issue, dict) and issue.get("diagnostics"):
                return f": {str(issue['diagnostics'])[:200]}"
    return ""


class HttpPolicy:
    """An :class:`httpx.Client` plus the retry policy; thread-safe (httpx clients are)."""

    def __init__(
        self,
        *,
        auth: httpx.Auth | None = None,
        timeout: float = 30,
        max_retries: int = 5,
        concurrency: int = 4,
        verify: bool = True,
        transport: httpx.BaseTransport | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = httpx.Client(
            auth=auth,
            timeout=timeout,
            verify=verify,
            transport=transport,
            follow_redirects=True,
            limits=httpx.Limits(max_connections=max(concurrency, 1) + 1),
            headers={"Accept": FHIR_JSON},
        )
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep
        self._random = random.Random()
        self.retries = 0  # transient failures absorbed (for reporting)

    def close(self) -> None:
        self.client.close()

    def _delay(self, attempt: int, resp: httpx.Response | None) -> float:
        hinted = retry_after_seconds(resp.headers.get("Retry-After")) if resp is not None else None
        if hinted is not None:
            return min(hinted, self.backoff_max)
        base = min(self.backoff_max, self.backoff_base * (2**attempt))
        return base * (0.5 + self._random.random())  # jitter: spread the retries of parallel workers

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """Send with retries; return a response whose status is in ``ok`` or raise :class:`SourceError`."""
        last = ""
        for attempt in range(self.max_retries + 1):
            resp: httpx.Response | None = None
            try:
                resp = self.client.request(method, url, params=params, headers=headers)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}"
            else:
                if resp.status_code in ok:
                    return resp
                if resp.status_code in (401, 403):
                    raise SourceError(
                        f"FHIR server refused {method} {_where(url)} ({resp.status_code})",
                        fix="check the bearer token or SMART client credentials and scopes",
                    )
                if resp.status_code not in RETRY_STATUS:
                    raise SourceError(
                        f"FHIR server answered {resp.status_code} to {method} {_where(url)}"
                        f"{_diagnostics(resp)}",
                        fix="check the server URL and its search support",
                    )
                last = f"HTTP {resp.status_code}"
            if attempt < self.max_retries:
                self.retries += 1
                delay = self._delay(attempt, resp)
                log.info("retrying %s %s after %s (%.2fs)", method, _where(url), last, delay)
                self.sleep(delay)
        raise SourceError(
            f"{method} {_where(url)} failed after {self.max_retries + 1} attempts ({last})",
            fix="check the server is up; raise max_retries for an overloaded server",
        )

    def get_json(self, url: str, params: Any = None) -> tuple[dict[str, Any], httpx.Response]:
        """GET a JSON object; a body cut short (dropped connection) is retried like a transport error."""
        for attempt in range(self.max_retries + 1):
            resp = self.request("GET", url, params=params)
            try:
                body = orjson.loads(resp.content)
            except orjson.JSONDecodeError:
                body = None
            if isinstance(body, dict):
                return body, resp
            if attempt < self.max_retries:
                self.retries += 1
                self.sleep(self._delay(attempt, None))
        raise SourceError(
            f"GET {_where(url)} did not return a JSON object", fix="check the URL is a FHIR endpoint"
        )

    @contextmanager
    def stream(self, url: str, headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        with self.client.stream("GET", url, headers=headers) as resp:
            yield resp


def _where(url: str) -> str:
    """The URL without its query string (short, and no parameter values in messages)."""
    return url.split("?", 1)[0]
