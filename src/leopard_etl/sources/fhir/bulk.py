"""FHIR Bulk Data ``$export``: kick off, poll, download the NDJSON files, then read them as files.

Kick-off ``GET [base]/$export`` (or ``Patient/$export``, ``Group/<id>/$export``) with
``Prefer: respond-async``; poll the ``Content-Location`` honouring ``Retry-After``
(``X-Progress`` is logged); download every manifest ``output`` file by streaming it
to disk (never in memory), sending the token only when the manifest says
``requiresAccessToken``. The manifest is saved beside the files (its
``transactionTime`` is the watermark of the export).

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

import httpx
import orjson

from ...errors import ConfigError, SourceError
from ...events import EventSink
from ...mappings import CodeMatcher
from .auth import Auth
from .files import expand_paths, feed_file
from .parse import READ_TYPES, FhirRecordReader
from .transport import HttpPolicy, retry_after_seconds

__all__ = ["MANIFEST_NAME", "bulk_export", "read_bulk_export"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
ERRORS_DIR = "_errors"
NDJSON = "application/fhir+ndjson"


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
    max_wait_seconds: float = 6 * 3600,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Path]:
    """Run one export into ``dest``; return the downloaded data files (error files go to ``dest/_errors``)."""
    base = base_url.rstrip("/")
    http = HttpPolicy(
        auth=None, timeout=timeout, max_retries=max_retries, verify=verify, transport=transport, sleep=sleep
    )
    authed = HttpPolicy(
        auth=auth, timeout=timeout, max_retries=max_retries, verify=verify, transport=transport, sleep=sleep
    )
    try:
        params: dict[str, str] = {"_type": ",".join(types)}
        if since:
            params["_since"] = since
        resp = authed.request(
            "GET",
            _kickoff_url(base, level, group_id),
            params=params,
            ok=(202,),
            headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
        )
        status_url = resp.headers.get("Content-Location")
        if not status_url:
            raise SourceError(f"{base} accepted $export without a Content-Location", fix="check the server")
        manifest = _poll(authed, status_url, max_wait_seconds, sleep)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / MANIFEST_NAME).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        files = authed if manifest.get("requiresAccessToken", True) else http
        out = _download_all(files, manifest.get("output") or [], dest)
        _download_all(files, manifest.get("error") or [], dest / ERRORS_DIR)
        with contextlib.suppress(httpx.HTTPError):
            authed.client.delete(status_url)  # let the server clean up; failure is harmless
        return out
    finally:
        http.close()
        authed.close()


def _poll(
    http: HttpPolicy, status_url: str, max_wait: float, sleep: Callable[[float], None]
) -> dict[str, Any]:
    waited = 0.0
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
        delay = retry_after_seconds(resp.headers.get("Retry-After")) or 1.0
        delay = min(max(delay, 0.05), 60.0)
        log.info("$export in progress: %s", resp.headers.get("X-Progress", "?"))
        waited += delay
        if waited > max_wait:
            raise SourceError(
                f"$export not complete after {max_wait:.0f}s", fix="raise max_wait_seconds or retry"
            )
        sleep(delay)


def _download_all(http: HttpPolicy, items: list[Any], folder: Path) -> list[Path]:
    paths: list[Path] = []
    for i, item in enumerate(items):
        url = item.get("url") if isinstance(item, dict) else None
        if not isinstance(url, str):
            raise SourceError("a $export manifest entry has no url", fix="check the server's bulk support")
        rtype = str(item.get("type") or "data")
        path = folder / f"{i:03d}-{rtype}.ndjson"
        folder.mkdir(parents=True, exist_ok=True)
        _download(http, url, path)
        paths.append(path)
    return paths


def _download(http: HttpPolicy, url: str, path: Path) -> None:
    """Stream one file to disk; a broken transfer restarts the file (with the policy's backoff)."""
    for attempt in range(http.max_retries + 1):
        try:
            with http.stream(url, headers={"Accept": NDJSON}) as resp:
                if resp.status_code == 200:
                    with path.open("wb") as fh:
                        for chunk in resp.iter_bytes(1 << 16):
                            fh.write(chunk)
                    return
                if resp.status_code not in (429, 500, 502, 503, 504):
                    raise SourceError(
                        f"download of {url.split('?')[0]} answered {resp.status_code}",
                        fix="check the export is not expired and the token is accepted",
                    )
                hint = retry_after_seconds(resp.headers.get("Retry-After"))
        except httpx.TransportError:
            hint = None
        if attempt < http.max_retries:
            http.sleep(hint if hint is not None else min(30.0, 0.5 * 2**attempt))
    raise SourceError(
        f"download of {url.split('?')[0]} failed {http.max_retries + 1} times", fix="retry later"
    )


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
