"""FHIR R4 adapter: files, REST search and Bulk Data ``$export`` → :class:`~leopard_etl.events.Event` rows.

:func:`read_fhir` is the one entry point the pipeline needs: an ``http(s)://`` source
is a server (REST search, or ``$export`` with ``bulk=True``), anything else a file
or a directory. All three paths share one pure resource reader (:mod:`.parse`), so
the same data gives the same events whichever way it arrives.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ConfigError
from ...events import EventSink
from ...mappings import CodeMatcher
from .auth import Auth, BearerToken, SmartBackendAuth
from .bulk import bulk_export, read_bulk_export
from .files import read_fhir_files
from .parse import FhirRecordReader
from .rest import FhirRestClient

if TYPE_CHECKING:
    from ...config import FhirLimits

__all__ = [
    "Auth",
    "BearerToken",
    "FhirRecordReader",
    "FhirRestClient",
    "SmartBackendAuth",
    "bulk_export",
    "read_bulk_export",
    "read_fhir",
    "read_fhir_files",
]


def read_fhir(
    source: str,
    matcher: CodeMatcher,
    sink: EventSink,
    *,
    since: str | None = None,
    auth: Auth | None = None,
    bulk: bool = False,
    validate: bool = False,
    verify: bool = True,
    dest: Path | None = None,
    limits: FhirLimits | None = None,
) -> None:
    """Read one FHIR source into ``sink``; a server read sets ``sink.watermark`` (server time).

    ``limits`` bound a server read (pages, wall time, Bulk wait; config ``fhir_limits``).
    """
    if source.startswith(("http://", "https://")):
        if bulk:
            with tempfile.TemporaryDirectory(prefix="leopard-export-") as tmp:
                folder = dest or Path(tmp)
                bulk_export(source, folder, since=since, auth=auth, verify=verify, limits=limits)
                read_bulk_export(folder, matcher, sink, validate=validate)
            return
        with FhirRestClient(source, auth=auth, verify=verify, validate=validate, limits=limits) as client:
            client.read(matcher, sink, since=since)
        return
    if since or bulk:
        raise ConfigError(
            f"--since / bulk apply to a FHIR server, not to the files {source}",
            fix="give an http(s):// server URL or drop the option",
        )
    read_fhir_files([Path(source)], matcher, sink, validate=validate)
