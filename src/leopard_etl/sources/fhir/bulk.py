"""FHIR Bulk Data ``$export``: kick off, poll, download the NDJSON files, then read them as files.

Kick-off ``GET [base]/$export`` (or ``Patient/$export``, ``Group/<id>/$export``) with
``Prefer: respond-async``; poll the ``Content-Location`` honouring ``Retry-After``
(``X-Progress`` is logged); download every manifest ``output`` file by streaming it
to disk (never in memory). The manifest is saved beside the files (its
``transactionTime`` is the watermark of the export).

The token stays with its server (issue 13, Bulk Data IG "requiresAccessToken"):

* the status URL must be on the server's origin (scheme, host, port); another
  origin is refused (:class:`SourceError`, exit 3) before any request goes there;
* output and error files are fetched **with** the token only when the manifest
  says ``"requiresAccessToken": true`` and the file is on the server's origin;
* ``requiresAccessToken`` true for a file on another origin is refused: sending
  the token would hand it to that host, and the file cannot be read without it;
* ``requiresAccessToken`` false or absent: the files are fetched **without** the
  token, wherever they are (pre-signed storage URLs are the usual case).

Bounds: ``fhir_limits.bulk_max_wait_seconds`` for the export to complete (a
``Retry-After`` that would pass it ends the wait at once), polling every
``Retry-After`` seconds (at least one) or ``fhir_limits.bulk_poll_seconds``
when the server gives none.

Manifest ``error`` entries (OperationOutcome NDJSON) are downloaded too, into
``_errors/``. Decision: an issue of severity ``error``/``fatal`` is a record the
server could not give us, so :func:`read_bulk_export` quarantines it (reason
``bulk export error: …``) and the run goes on, like any bad record;
``warning``/``information`` issues are only logged.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin

import httpx
import orjson

from ...config import FhirLimits
from ...errors import ConfigError, SourceError
from ...events import EventSink
from ...mappings import CodeMatcher
from ...progress import Progress
from .auth import Auth
from .files import expand_paths, feed_file
from .parse import READ_TYPES, FhirRecordReader
from .transport import HttpPolicy, LimitExceeded, retry_after_seconds, where

__all__ = ["MANIFEST_NAME", "bulk_export", "read_bulk_export"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
ERRORS_DIR = "_errors"
NDJSON = "application/fhir+ndjson"
POLL_FLOOR = 1.0  # seconds: a Retry-After of 0 does not make us hammer the status URL


def _kickoff_url(base: str, level: str, group_id: str | None) -> str:
    if level == "system":
        return f"{base}/$export"
    if level == "patient":
        return f"{base}/Patient/$export"
    if level == "group":
        if not group_id:
            raise ConfigError("a group-level $export needs a group id", fix="pass group_id")
        return f"{base}/Group/{group_id}/$export"
    raise ConfigError(f"unknown $export level {level!r}", fix="use system, patient or group")


def bulk_export(
    base_url: str,
    dest: Path,
    *,
    level: Literal["system", "patient", "group"] = "system",
    group_id: str | None = None,
    types: Sequence[str] = READ_TYPES,
    since: str | None = None,
    auth: Auth | None = None,
    timeout: float = 60,
    max_retries: int = 5,
    verify: bool = True,
    transport: httpx.BaseTransport | None = None,
    limits: FhirLimits | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[Path]:
    """Run one export into ``dest``; return the downloaded data files (error files go to ``dest/_errors``)."""
    base = base_url.rstrip("/")
    limits = limits or FhirLimits.model_validate({})
    http = HttpPolicy(
        auth=auth,
        origin=base,
        timeout=timeout,
        max_retries=max_retries,
        verify=verify,
        transport=transport,
        sleep=sleep,
        clock=clock,
    )
    try:
        params: dict[str, str] = {"_type": ",".join(types)}
        if since:
            params["_since"] = since
        resp = http.request(
            "GET",
            _kickoff_url(base, level, group_id),
            params=params,
            ok=(202,),
            headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
        )
        status_url = resp.headers.get("Content-Location")
        if not status_url:
            raise SourceError(
                f"{where(base)} accepted $export without a Content-Location", fix="check the server"
            )
        status_url = urljoin(str(resp.url), status_url)
        http.require_origin(status_url, "the $export status URL")
        with Progress.for_task(f"FHIR $export at {where(base)}", unit="") as progress:
            manifest = _poll(http, status_url, limits, progress)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / MANIFEST_NAME).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        token = manifest.get("requiresAccessToken") is True  # Bulk IG: the token only when true
        outputs = _entries(manifest.get("output"))
        errors = _entries(manifest.get("error"))
        if token:
            for _, url in outputs + errors:
                http.require_origin(url, "the $export file (requiresAccessToken true)")
        files = len(outputs) + len(errors)
        with Progress.for_task("FHIR $export download", total=files, unit="files") as progress:
            out = _download_all(http, outputs, dest, token, progress)
            _download_all(http, errors, dest / ERRORS_DIR, token, progress)
        with contextlib.suppress(httpx.HTTPError):
            # let the server clean up; failure is harmless
            http.client.request("DELETE", status_url, auth=http._auth_for(status_url, True))
        return out
    finally:
        http.close()


def _entries(items: Any) -> list[tuple[str, str]]:
    """(type, url) of the manifest's ``output`` / ``error`` entries."""
    out: list[tuple[str, str]] = []
    for item in items or ():
        url = item.get("url") if isinstance(item, dict) else None
        if not isinstance(url, str) or not url:
            raise SourceError("a $export manifest entry has no url", fix="check the server's bulk support")
        out.append((str(item.get("type") or "data"), url))
    return out


def _poll(
    http: HttpPolicy, status_url: str, limits: FhirLimits, progress: Progress | None = None
) -> dict[str, Any]:
    """Poll until the manifest: wait ``Retry-After`` (≥ 1 s) or ``bulk_poll_seconds``, within the max wait."""
    max_wait = limits.bulk_max_wait_seconds
    progress = progress or Progress.null()
    http.start_clock()
    while True:
        resp = http.request("GET", status_url, ok=(200, 202))
        if resp.status_code == 200:
            try:
                manifest = orjson.loads(resp.content)
            except orjson.JSONDecodeError:
                manifest = None
            if not isinstance(manifest, dict):
                raise SourceError("the $export manifest is not JSON", fix="check the server's bulk support")
            return manifest
        hinted = retry_after_seconds(resp.headers.get("Retry-After"))
        delay = max(hinted, POLL_FLOOR) if hinted is not None else limits.bulk_poll_seconds
        log.info("$export in progress: %s", str(resp.headers.get("X-Progress", "?"))[:100])
        progress.advance(0, polls=1)
        progress.update(server=str(resp.headers.get("X-Progress", "?"))[:60])
        waited = http.elapsed()
        if waited + delay > max_wait:
            raise LimitExceeded(
                f"$export not complete after {waited:.0f} s, next poll in {delay:.0f} s would pass "
                f"the limit of {max_wait:g} s (fhir_limits.bulk_max_wait_seconds)",
                fix="raise fhir_limits.bulk_max_wait_seconds, or retry later",
            )
        http.sleep(delay)


def _download_all(
    http: HttpPolicy,
    items: list[tuple[str, str]],
    folder: Path,
    token: bool,
    progress: Progress | None = None,
) -> list[Path]:
    paths: list[Path] = []
    progress = progress or Progress.null()
    for i, (rtype, url) in enumerate(items):
        path = folder / f"{i:03d}-{rtype}.ndjson"
        folder.mkdir(parents=True, exist_ok=True)
        _download(http, url, path, token, progress)
        paths.append(path)
        progress.advance(1)
    return paths


def _download(http: HttpPolicy, url: str, path: Path, token: bool, progress: Progress | None = None) -> None:
    """Stream one file to disk; a broken transfer restarts the file (with the policy's backoff)."""
    progress = progress or Progress.null()
    for attempt in range(http.max_retries + 1):
        try:
            with http.stream(url, headers={"Accept": NDJSON}, token=token) as resp:
                if resp.status_code == 200:
                    with path.open("wb") as fh:
                        for chunk in resp.iter_bytes(1 << 16):
                            fh.write(chunk)
                            progress.advance(0, bytes=len(chunk))
                    return
                if resp.status_code not in (429, 500, 502, 503, 504):
                    raise SourceError(
                        f"download of {where(url)} answered {resp.status_code}",
                        fix="check the export is not expired and the token is accepted",
                    )
                hint = retry_after_seconds(resp.headers.get("Retry-After"))
        except httpx.TransportError:
            hint = None
        if attempt < http.max_retries:
            http.sleep(hint if hint is not None else min(30.0, 0.5 * 2**attempt))
    raise SourceError(f"download of {where(url)} failed {http.max_retries + 1} times", fix="retry later")


def read_bulk_export(dest: Path, matcher: CodeMatcher, sink: EventSink, *, validate: bool = False) -> None:
    """Read a downloaded export: its data files, its error issues (quarantined), its watermark."""
    reader = FhirRecordReader(matcher, sink, validate=validate)
    data = [p for p in expand_paths([dest]) if ERRORS_DIR not in p.parts and p.name != MANIFEST_NAME]
    for path in data:
        feed_file(reader, path)
    errors = dest / ERRORS_DIR
    if errors.is_dir():
        for path in sorted(errors.glob("*.ndjson")):
            _quarantine_issues(reader, path)
    reader.finish()
    sink.touched |= reader.touched  # an incremental run removes what was read but yields nothing now
    manifest = dest / MANIFEST_NAME
    if manifest.is_file():
        stamp = orjson.loads(manifest.read_bytes()).get("transactionTime")
        sink.watermark = stamp if isinstance(stamp, str) else sink.watermark


def _quarantine_issues(reader: FhirRecordReader, path: Path) -> None:
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                outcome = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            for issue in outcome.get("issue") or () if isinstance(outcome, dict) else ():
                severity = issue.get("severity")
                text = str(issue.get("diagnostics") or issue.get("code") or "unspecified")[:300]
                if severity in ("error", "fatal"):
                    reader.bad_record(f"{path}:{lineno}", f"bulk export error: {text}", line)
                else:
                    log.warning("$export %s: %s", severity, text)
