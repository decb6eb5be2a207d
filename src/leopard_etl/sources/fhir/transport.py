"""One HTTP policy for REST search and Bulk export: timeouts, retries with backoff, clear errors.

A server may answer 429 / 5xx or drop a connection at any page; we retry with
exponential backoff and jitter, honouring ``Retry-After``, and when a request
fails for good we raise :class:`SourceError` — a read is never silently partial.

**The token stays with its server.** The credentials (an :class:`httpx.Auth`) are
bound to one *origin* — scheme, host and port of the configured base URL — and
attached per request, only to a URL of that origin. A request hook removes any
``Authorization`` header from a request to another origin, so a redirect (even
http → https on the same host, which httpx itself would let through) never
carries it. Callers refuse links that leave the origin (:meth:`HttpPolicy.require_origin`).

Messages and logs name URLs through :func:`leopard_etl.privacy.redact_source`
(passwords and token parameters masked) and never include request headers; the
``httpx`` / ``httpcore`` loggers are filtered the same way.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from ...errors import SourceError
from ...privacy import redact_source

__all__ = [
    "RETRY_STATUS",
    "HttpPolicy",
    "LimitExceeded",
    "Origin",
    "origin_of",
    "retry_after_seconds",
    "where",
]

log = logging.getLogger(__name__)

Origin = tuple[str, str, int]
_DEFAULT_PORT = {"http": 80, "https": 443}


class LimitExceeded(SourceError):
    """A configured bound of a read (``fhir_limits.*``) was hit: exit 3, one line naming the setting."""


def origin_of(url: str | httpx.URL) -> Origin:
    """(scheme, host, port) of ``url``, the default port filled in; ``("", "", 0)`` when it has none."""
    try:
        u = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return ("", "", 0)
    scheme = u.scheme.lower()
    return (scheme, u.host.lower(), u.port or _DEFAULT_PORT.get(scheme, 0))


def _origin_text(origin: Origin) -> str:
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + ("" if _DEFAULT_PORT.get(scheme) == port else f":{port}")


class _RedactUrls(logging.Filter):
    """Mask secrets in the URLs third-party HTTP loggers print (httpx logs every request URL at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        redacted = redact_source(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


for _name in ("httpx", "httpcore"):
    if not any(isinstance(f, _RedactUrls) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_RedactUrls())

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
    """An :class:`httpx.Client` plus the retry policy; thread-safe (httpx clients are).

    ``auth`` is attached only to requests for ``origin`` (the configured server's base URL);
    with ``auth`` and no ``origin`` nothing gets it. ``deadline_seconds`` bounds the wall time
    from construction (or :meth:`start_clock`): past it, the next request or retry wait
    raises :class:`SourceError` with ``deadline_what`` as the explanation.
    """

    def __init__(
        self,
        *,
        auth: httpx.Auth | None = None,
        origin: str | None = None,
        timeout: float = 30,
        max_retries: int = 5,
        concurrency: int = 4,
        verify: bool = True,
        transport: httpx.BaseTransport | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        deadline_seconds: float | None = None,
        deadline_what: str = "",
    ) -> None:
        self.auth = auth
        self.origin: Origin | None = origin_of(origin) if origin else None
        self.client = httpx.Client(
            timeout=timeout,
            verify=verify,
            transport=transport,
            follow_redirects=True,
            limits=httpx.Limits(max_connections=max(concurrency, 1) + 1),
            headers={"Accept": FHIR_JSON},
            event_hooks={"request": [self._scrub]},
        )
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        self.clock = clock
        self.deadline_seconds = deadline_seconds
        self.deadline_what = deadline_what
        self._random = random.Random()
        self._lock = threading.Lock()
        self.retries = 0  # transient failures absorbed (for reporting)
        self.scrubbed = 0  # requests to another origin whose Authorization header was removed
        self.start_clock()

    # --- origin -------------------------------------------------------------
    def same_origin(self, url: str | httpx.URL) -> bool:
        return self.origin is not None and origin_of(url) == self.origin

    def require_origin(self, url: str, what: str) -> None:
        """Refuse (:class:`SourceError`) to follow ``url`` when it leaves the configured origin."""
        if self.origin is not None and not self.same_origin(url):
            raise SourceError(
                f"{what} {where(url)} is on another origin than the server "
                f"{_origin_text(self.origin)}; refused, the request and its token stay with the server",
                fix="configure the server's public base URL (the one its links use), or report it",
            )

    def _auth_for(self, url: str, token: bool) -> httpx.Auth | None:
        return self.auth if token and self.auth is not None and self.same_origin(url) else None

    def _scrub(self, request: httpx.Request) -> None:
        """Request hook (every hop, redirects included): no Authorization beyond the origin."""
        if "Authorization" in request.headers and not self.same_origin(request.url):
            del request.headers["Authorization"]
            with self._lock:
                self.scrubbed += 1
            log.warning(
                "dropped the Authorization header of a request to %s (another origin)",
                where(str(request.url)),
            )

    # --- time ---------------------------------------------------------------
    def start_clock(self) -> None:
        self._started = self.clock()
        self.slept = 0.0

    def elapsed(self) -> float:
        """Wall time since the start; never less than the time slept (a fake sleep still counts)."""
        return max(self.clock() - self._started, self.slept)

    def sleep(self, seconds: float) -> None:
        self.check_deadline(seconds)
        with self._lock:
            self.slept += seconds
        self._sleep(seconds)

    def check_deadline(self, ahead: float = 0.0) -> None:
        if self.deadline_seconds is not None and self.elapsed() + ahead > self.deadline_seconds:
            raise LimitExceeded(
                f"{self.deadline_what} took longer than {self.deadline_seconds:g} s "
                "(limit fhir_limits.max_read_seconds)",
                fix="raise fhir_limits.max_read_seconds, or read incrementally (--incremental / Bulk)",
            )

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
        token: bool = True,
    ) -> httpx.Response:
        """Send with retries; return a response whose status is in ``ok`` or raise :class:`SourceError`.

        The credentials go along only when ``token`` and ``url`` is on the configured origin.
        """
        last = ""
        auth = self._auth_for(url, token)
        for attempt in range(self.max_retries + 1):
            self.check_deadline()
            resp: httpx.Response | None = None
            try:
                resp = self.client.request(method, url, params=params, headers=headers, auth=auth)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}"
            else:
                if resp.status_code in ok:
                    return resp
                if resp.status_code in (401, 403):
                    raise SourceError(
                        f"FHIR server refused {method} {where(url)} ({resp.status_code})",
                        fix="check the bearer token or SMART client credentials and scopes",
                    )
                if resp.status_code not in RETRY_STATUS:
                    raise SourceError(
                        f"FHIR server answered {resp.status_code} to {method} {where(url)}"
                        f"{_diagnostics(resp)}",
                        fix="check the server URL and its search support",
                    )
                last = f"HTTP {resp.status_code}"
            if attempt < self.max_retries:
                self.retries += 1
                delay = self._delay(attempt, resp)
                log.info("retrying %s %s after %s (%.2fs)", method, where(url), last, delay)
                self.sleep(delay)
        raise SourceError(
            f"{method} {where(url)} failed after {self.max_retries + 1} attempts ({last})",
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
            f"GET {where(url)} did not return a JSON object", fix="check the URL is a FHIR endpoint"
        )

    @contextmanager
    def stream(
        self, url: str, headers: dict[str, str] | None = None, *, token: bool = True
    ) -> Iterator[httpx.Response]:
        with self.client.stream("GET", url, headers=headers, auth=self._auth_for(url, token)) as resp:
            yield resp


def where(url: str) -> str:
    """The URL for a message: without query and fragment (short), secrets in it masked."""
    return redact_source(url.split("?", 1)[0].split("#", 1)[0])
