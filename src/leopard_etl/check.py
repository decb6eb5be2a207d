"""``leopard-etl check``: reach every configured part before the nightly run, one line each.

A site's first hour goes to "does it connect?". :func:`check` answers it part by part, in
the order a run meets them — settings, mappings, the source (FHIR server, FHIR files or an
OMOP CDM), the warehouse, the output folder — with one :class:`CheckLine` per finding: what
works, or what to fix. :func:`verdict` turns the lines into the exit code a run would give
(0 when a run would start; else 2 configuration, 3 source or warehouse unreachable, 5 lock
held — the smallest of the failing lines, so a cron job sees the most basic problem first).

**Read-only.** Nothing is created, written or locked beyond the instant of a probe: a DuckDB
file (OMOP or warehouse) is opened read-only, PostgreSQL sessions run ``READ ONLY``
transactions and are rolled back, the warehouse lock is tried without waiting and released
at once (a DuckDB lock file is opened, never created), privileges are asked of the server
(``has_schema_privilege``), not tried. Secrets are read to prove they exist and work (a
SMART token is fetched) but never printed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import EXIT_CONFIG, EXIT_LOCK, EXIT_OK, EXIT_SOURCE, LeopardError
from .privacy import redact_source

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .config import RunConfig
    from .mappings import CodeMatcher

__all__ = ["CheckLine", "check", "check_request", "format_line", "verdict"]

Status = Literal["ok", "info", "warn", "fail"]

#: FHIR search parameters every resource has (R4 "common parameters"); servers often do not list them
_COMMON_PARAMS = frozenset({"_id", "_lastUpdated", "_count", "_elements", "_include", "_summary"})


@dataclass(frozen=True)
class CheckLine:
    """One finding: ``part`` (fhir, omop, warehouse …), ``status``, what was found, how to fix it.

    ``exit_code`` is the code a run would end with because of this line (``fail`` only).
    """

    part: str
    status: Status
    message: str
    fix: str | None = None
    exit_code: int = EXIT_OK

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def __str__(self) -> str:
        return format_line(self)


def format_line(line: CheckLine) -> str:
    """``ok    fhir        …`` / ``FAIL  warehouse   … — fix: …`` (one line, no secret)."""
    label = {"ok": "ok", "info": "info", "warn": "WARN", "fail": "FAIL"}[line.status]
    text = f"{label:<5} {line.part:<12} {line.message}"
    if line.fix and line.status in ("warn", "fail"):
        text += f" — fix: {line.fix}"
    return text


def verdict(lines: Sequence[CheckLine]) -> int:
    """0 when a run would start; otherwise the smallest exit code among the failing lines."""
    codes = [line.exit_code or EXIT_SOURCE for line in lines if line.failed]
    return min(codes) if codes else EXIT_OK


def _ok(part: str, message: str) -> CheckLine:
    return CheckLine(part, "ok", message)


def _info(part: str, message: str) -> CheckLine:
    return CheckLine(part, "info", message)


def _warn(part: str, message: str, fix: str | None = None) -> CheckLine:
    return CheckLine(part, "warn", message, fix)


def _fail(part: str, message: str, fix: str | None, code: int) -> CheckLine:
    return CheckLine(part, "fail", message, fix, code)


def _from_error(part: str, err: LeopardError) -> CheckLine:
    code = err.exit_code if err.exit_code in (EXIT_CONFIG, EXIT_SOURCE, EXIT_LOCK) else EXIT_SOURCE
    return CheckLine(part, "fail", err.message, err.fix, code)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]


# -- entry points -----------------------------------------------------------------------------------
def check_request(
    config: Path | None = None,
    *,
    fhir: Sequence[str] = (),
    omop: str | None = None,
    cdm_schema: str | None = None,
    vocab_schema: str | None = None,
    warehouse: str | None = None,
    mappings: Sequence[Path] = (),
    bulk: bool = False,
    env: Mapping[str, str] | None = None,
) -> list[CheckLine]:
    """:func:`check` of the settings the command line names (config file, then LEOPARD_*, then options).

    A configuration that does not load is a failing ``config`` line, not an exception.
    """
    from .config import load_config

    overrides: dict[str, Any] = {}
    if fhir:
        overrides["fhir"] = list(fhir)
    for name, value in (
        ("omop", omop),
        ("cdm_schema", cdm_schema),
        ("vocab_schema", vocab_schema),
        ("warehouse", warehouse),
    ):
        if value is not None:
            overrides[name] = value
    if mappings:
        overrides["mappings_extra"] = list(mappings)
    try:
        cfg = load_config(config, overrides, os.environ if env is None else env)
    except LeopardError as err:
        return [_from_error("config", err)]
    return check(cfg, bulk=bulk, config_file=config)


def check(cfg: RunConfig, *, bulk: bool = False, config_file: Path | None = None) -> list[CheckLine]:
    """Reach every part ``cfg`` configures and say, one line each, what works and what to fix.

    ``bulk``: the run will use FHIR Bulk ``$export`` (``--bulk``). Changes nothing anywhere.
    """
    lines: list[CheckLine] = []
    where = f"config file {config_file}" if config_file else "defaults, LEOPARD_* variables and options"
    if bool(cfg.fhir) == bool(cfg.omop):
        lines.append(
            _fail(
                "config",
                "give exactly one source (FHIR or OMOP)" + (" — both are set" if cfg.fhir else ""),
                "use --fhir PATH_OR_URL ... or --omop SQLALCHEMY_URL (or fhir / omop in the config file)",
                EXIT_CONFIG,
            )
        )
    else:
        lines.append(_ok("config", f"settings valid ({where})"))
    matcher = None
    try:
        from .mappings import CodeMatcher, load_mappings

        mappings = load_mappings(extra_dirs=cfg.mappings_extra)
        matcher = CodeMatcher(mappings)
        site = f"; site folders: {', '.join(map(str, cfg.mappings_extra))}" if cfg.mappings_extra else ""
        lines.append(
            _ok(
                "mappings",
                f"{len(mappings.group_meta)} code groups, {len(mappings.entries)} codes "
                f"from {len(mappings.files)} files{site}",
            )
        )
    except LeopardError as err:
        lines.append(_from_error("mappings", err))
    if matcher is not None:
        if cfg.omop:
            lines += _check_omop(cfg, matcher)
        for source in cfg.fhir:
            if source.startswith(("http://", "https://")):
                lines += _check_fhir_server(source, cfg, matcher, bulk)
            else:
                lines += _check_files(Path(source), bulk)
    if cfg.warehouse:
        lines += _check_warehouse(cfg)
    lines.append(_check_out(Path(cfg.out)))
    return lines


# -- FHIR server ------------------------------------------------------------------------------------
def _check_fhir_server(url: str, cfg: RunConfig, matcher: CodeMatcher, bulk: bool) -> list[CheckLine]:
    from .sources.fhir.auth import Auth, auth_from_config
    from .sources.fhir.rest import FhirRestClient
    from .sources.fhir.transport import where

    lines: list[CheckLine] = []
    base = where(url)
    auth: Auth | None = None
    auth_line: CheckLine | None = None
    try:
        auth = auth_from_config(cfg, base_url=url)
    except LeopardError as err:
        auth_line = _from_error("fhir.auth", err)
    client = FhirRestClient(url, auth=auth, max_retries=1, timeout=20, limits=cfg.fhir_limits)
    token_line: CheckLine | None = None
    try:
        # the metadata first without credentials (servers serve it openly), so that a refused token
        # and an unreachable server are two different lines; with credentials when it needs them
        anonymous = FhirRestClient(url, max_retries=1, timeout=20, limits=cfg.fhir_limits)
        try:
            cap = anonymous.capability()
        except LeopardError as err:
            cap = None
            first_error = err
        finally:
            anonymous.close()
        if cap is None and auth is not None and "refused" in first_error.message:
            token_line = _token_line(auth, cfg)
            if not token_line.failed:
                try:
                    cap = client.capability()
                except LeopardError as err:
                    first_error = err
        if cap is None:
            lines.append(_from_error("fhir", first_error))
            for extra in (auth_line, token_line):
                if extra is not None:
                    lines.append(extra)
            return lines
        software = cap.get("software") or {}
        name = " ".join(str(software.get(k) or "") for k in ("name", "version")).strip()
        lines.append(
            _ok(
                "fhir",
                f"{base}/metadata: FHIR {cap.get('fhirVersion') or '(version not stated)'}"
                + (f", {name}" if name else ""),
            )
        )
        lines += _capability_lines(cap, matcher, bulk, client.code_below)
        if auth_line is not None:
            lines.append(auth_line)
            return lines
        if auth is None:
            if _declares_smart(cap):
                lines.append(
                    _warn(
                        "fhir.auth",
                        "the server declares SMART security but no credentials are configured",
                        "set smart.client_id and smart.private_key_env (or bearer_token_env)",
                    )
                )
            else:
                lines.append(_info("fhir.auth", "no credentials configured (read without a token)"))
        else:
            line = token_line or _token_line(auth, cfg)
            lines.append(line)
            if line.failed:
                return lines
        try:
            body, _ = client.http.get_json(f"{client.base_url}/Patient", {"_summary": "count"})
        except LeopardError as err:
            lines.append(_from_error("fhir.read", err))
            return lines
        total = body.get("total")
        if total == 0:
            lines.append(
                _warn(
                    "fhir.read",
                    "a search is answered, but the server holds no Patient (the run would find no one)",
                    "check the base URL points at the clinical data (not an empty test partition)",
                )
            )
        else:
            counted = f" ({total} patients)" if isinstance(total, int) else ""
            lines.append(_ok("fhir.read", f"a search is answered: Patient?_summary=count{counted}"))
    finally:
        client.close()
    return lines


def _token_line(auth: Any, cfg: RunConfig) -> CheckLine:
    """Obtain the token the run will send (SMART: fetched from the token endpoint); never print it."""
    import httpx

    from .sources.fhir.auth import SmartBackendAuth

    flow = auth.auth_flow(httpx.Request("GET", "https://leopard-etl.invalid/check"))
    try:
        request = next(flow)
    except LeopardError as err:
        return _from_error("fhir.auth", err)
    finally:
        flow.close()
    if "Authorization" not in request.headers:
        return _fail("fhir.auth", "the credentials give no token", "check the auth settings", EXIT_CONFIG)
    if isinstance(auth, SmartBackendAuth):
        token_url = redact_source(str(auth.token_url or "?"))
        return _ok(
            "fhir.auth",
            f"SMART token obtained from {token_url} for client {auth.client_id} "
            f"(scopes {auth.scope}; token not shown)",
        )
    origin = f"environment variable {cfg.bearer_token_env}" if cfg.bearer_token_env else (
        f"file {cfg.bearer_token_file}"
    )
    return _ok("fhir.auth", f"bearer token read from {origin} (not shown)")


def _declares_smart(cap: Mapping[str, Any]) -> bool:
    for rest in cap.get("rest") or ():
        security = rest.get("security") if isinstance(rest, dict) else None
        for service in (security or {}).get("service") or ():
            for coding in (service or {}).get("coding") or ():
                if str((coding or {}).get("code", "")).upper().startswith("SMART"):
                    return True
    return False


def _capability_lines(
    cap: Mapping[str, Any], matcher: CodeMatcher, bulk: bool, code_below: bool
) -> list[CheckLine]:
    """The searches and ``$export`` a run uses, against what the CapabilityStatement declares."""
    from .mappings import SCREENING_GROUPS
    from .sources.fhir.rest import CLINICAL_TYPES, MEDICATION_TYPES

    servers = [r for r in cap.get("rest") or () if isinstance(r, dict) and r.get("mode") in (None, "server")]
    rest = servers[0] if servers else None
    if rest is None:
        return [
            _warn(
                "fhir.search",
                "the CapabilityStatement declares no REST server part; the searches cannot be verified",
                "ask the server's administrators whether search is supported",
            )
        ]
    resources = {str(r.get("type")): r for r in rest.get("resource") or () if isinstance(r, dict)}
    screening = [e for e in matcher.mappings.entries if e.group in SCREENING_GROUPS]
    scans = any(e.match != "exact" for e in screening) and not code_below
    needs: dict[str, list[str]] = {"Patient": ["_id"], "Medication": ["_id"]}
    for rtype in CLINICAL_TYPES:
        needs.setdefault(rtype, []).append("patient")
    needs.setdefault("Encounter", []).append("_id")
    if not scans:
        needs.setdefault("Condition", []).append("code")
    missing_types: list[str] = []
    missing_params: list[str] = []
    unlisted: list[str] = []
    includes: list[str] = []
    for rtype, params in needs.items():
        res = resources.get(rtype)
        if res is None:
            missing_types.append(rtype)
            continue
        interactions = {str(i.get("code")) for i in res.get("interaction") or () if isinstance(i, dict)}
        if interactions and "search-type" not in interactions:
            missing_types.append(f"{rtype} (no search)")
            continue
        declared = {str(p.get("name")) for p in res.get("searchParam") or () if isinstance(p, dict)}
        if not declared:
            unlisted.append(rtype)
        for param in params:
            if declared and param not in declared and param not in _COMMON_PARAMS:
                missing_params.append(f"{rtype}?{param}")
        if rtype in MEDICATION_TYPES:
            declared_includes = {str(i) for i in res.get("searchInclude") or ()}
            if declared_includes and not ({"*", f"{rtype}:medication"} & declared_includes):
                includes.append(f"{rtype}:medication")
    lines: list[CheckLine] = []
    used = ", ".join(f"{t}?{'&'.join(p)}" for t, p in needs.items())
    if missing_types or missing_params:
        problems = [f"no {t}" for t in missing_types] + [f"no search parameter {p}" for p in missing_params]
        lines.append(
            _fail(
                "fhir.search",
                "the CapabilityStatement lacks what the run searches: " + "; ".join(problems),
                "use a server (or endpoint) that supports these searches, or export files and use --fhir DIR",
                EXIT_SOURCE,
            )
        )
    else:
        how = "Conditions scanned for the C34 prefix" if scans else "Conditions searched by code"
        lines.append(_ok("fhir.search", f"{len(needs)} resource types searchable as the run needs ({how})"))
        lines.append(_info("fhir.search", f"searches used: {used}"))
    if unlisted:
        lines.append(
            _warn(
                "fhir.search",
                f"no search parameters declared for {', '.join(unlisted)}; cannot verify them",
                "a test run on a few patients shows whether the searches work",
            )
        )
    if includes:
        lines.append(
            _warn(
                "fhir.search",
                f"_include {', '.join(includes)} not declared: Medications are then fetched by id (slower)",
            )
        )
    declared_ops = [o for o in rest.get("operation") or () if isinstance(o, dict)]
    operations = {str(o.get("name", "")).lstrip("$") for o in declared_ops}
    if "export" in operations:
        lines.append(_ok("fhir.bulk", "system-level $export declared" + (" (used: --bulk)" if bulk else "")))
    elif bulk:
        lines.append(
            _fail(
                "fhir.bulk",
                "no system-level $export in the CapabilityStatement, but --bulk asks for it",
                "drop --bulk (REST search), or use the server's Bulk Data endpoint",
                EXIT_SOURCE,
            )
        )
    else:
        lines.append(_info("fhir.bulk", "no system-level $export declared (needed only with --bulk)"))
    return lines


# -- FHIR files -------------------------------------------------------------------------------------
def _check_files(path: Path, bulk: bool) -> list[CheckLine]:
    import gzip
    import zlib

    from .sources.fhir.files import expand_paths, is_export_log

    part = "files"
    if bulk:
        return [
            _fail(
                part,
                f"--bulk applies to a FHIR server, not to the files {path}",
                "give an http(s):// server URL or drop --bulk",
                EXIT_CONFIG,
            )
        ]
    if not path.exists():
        return [_fail(part, f"{path} does not exist", "check the --fhir path", EXIT_SOURCE)]
    if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        return [_fail(part, f"folder {path} is not readable", "give the run's user read access", EXIT_SOURCE)]
    try:
        files = expand_paths([path])
    except LeopardError as err:
        return [_from_error(part, err)]
    if not files:
        return [
            _fail(
                part,
                f"no FHIR files in {path} (.ndjson, .ndjson.gz, .jsonl, .json, .json.gz)",
                "point --fhir at the export folder",
                EXIT_SOURCE,
            )
        ]
    kinds = {"ndjson": 0, "bundle": 0, "resource": 0, "other": 0, "log": 0}
    unreadable: list[str] = []
    size = 0
    for f in files:
        try:
            size += f.stat().st_size
            with gzip.open(f, "rb") if f.name.endswith(".gz") else f.open("rb") as fh:
                head = fh.read(4096)
        except (OSError, EOFError, zlib.error) as exc:
            unreadable.append(f"{f.name} ({type(exc).__name__})")
            continue
        if is_export_log(f):
            kinds["log"] += 1
        elif f.name.endswith((".json", ".json.gz")):
            kinds[_document_kind(head)] += 1
        else:
            kinds["ndjson"] += 1
    if unreadable:
        more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        shown = ", ".join(unreadable[:5]) + more
        return [
            _fail(
                part,
                f"{len(unreadable)} of {len(files)} files in {path} cannot be read: {shown}",
                "give the run's user read access; re-copy truncated .gz files",
                EXIT_SOURCE,
            )
        ]
    found = [f"{kinds['ndjson']} NDJSON", f"{kinds['bundle']} Bundle"]
    if kinds["resource"]:
        found.append(f"{kinds['resource']} single-resource JSON")
    if kinds["other"]:
        found.append(f"{kinds['other']} other JSON (skipped)")
    if kinds["log"]:
        found.append(f"{kinds['log']} export log (skipped)")
    lines = [_ok(part, f"{path}: {', '.join(found)} files readable, {_size(size)}")]
    if not kinds["ndjson"] and not kinds["bundle"] and not kinds["resource"]:
        lines.append(_warn(part, f"{path} holds no FHIR resource file", "point --fhir at the export folder"))
    return lines


def _document_kind(head: bytes) -> str:
    """``bundle`` / ``resource`` / ``other`` from the first bytes of a JSON document."""
    import re

    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if not text.startswith(b"{"):
        return "other"
    found = re.search(rb'"resourceType"\s*:\s*"([A-Za-z]+)"', text)
    if found is None:
        return "other" if b'"resourceType"' not in text else "resource"
    return "bundle" if found.group(1) == b"Bundle" else "resource"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"  # pragma: no cover


# -- OMOP -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _read_only(conn: Connection) -> Iterator[Connection]:
    """A transaction that cannot write (PostgreSQL ``READ ONLY``; DuckDB files are opened read-only)."""
    with conn.begin() as tx:
        if conn.dialect.name == "postgresql":
            from sqlalchemy import text

            conn.execute(text("SET TRANSACTION READ ONLY"))
        try:
            yield conn
        finally:
            tx.rollback()


def _pg_timeout(url: str) -> str:
    """A PostgreSQL URL with ``connect_timeout=10`` unless it sets one: a check must not hang."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    if parsed.get_backend_name() != "postgresql" or "connect_timeout" in parsed.query:
        return url
    return parsed.update_query_dict({"connect_timeout": "10"}).render_as_string(hide_password=False)


def _check_omop(cfg: RunConfig, matcher: CodeMatcher) -> list[CheckLine]:
    from sqlalchemy.exc import SQLAlchemyError

    from .config import url_with_password
    from .sources.omop.connect import check_identifier, connect, describe_url, open_engine

    assert cfg.omop
    try:
        cdm = check_identifier(cfg.cdm_schema, "CDM schema")
        vocab = check_identifier(cfg.vocab_schema, "vocabulary schema") or cdm
        engine = open_engine(_pg_timeout(url_with_password(cfg.omop, cfg.omop_password_env)))
    except LeopardError as err:
        return [_from_error("omop", err)]
    lines: list[CheckLine] = []
    try:
        with connect(engine) as conn, _read_only(conn):
            server = _server_version(conn)
            lines.append(_ok("omop", f"connected to {describe_url(engine.url)}{server}"))
            lines += _omop_tables(conn, cdm, vocab, matcher)
    except LeopardError as err:
        lines.append(_from_error("omop", err))
    except SQLAlchemyError as exc:
        lines.append(
            _fail(
                "omop",
                f"querying {describe_url(engine.url)} failed: {_first_line(exc)}",
                "check the schemas and the user's read rights",
                EXIT_SOURCE,
            )
        )
    finally:
        engine.dispose()
    return lines


def _server_version(conn: Connection) -> str:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        if conn.dialect.name == "postgresql":
            return f" (PostgreSQL {conn.execute(text('SHOW server_version')).scalar()})"
        if conn.dialect.name == "duckdb":
            return f" (DuckDB {conn.execute(text('SELECT version()')).scalar()}, read-only)"
    except SQLAlchemyError:
        return ""
    return ""


def _has_rows(conn: Connection, schema: str | None, name: str) -> bool:
    """Whether a table holds a row (portable: ``LIMIT`` / ``TOP`` / ``FETCH FIRST`` by the dialect)."""
    from sqlalchemy import literal, select, table

    query = select(literal(1)).select_from(table(name, schema=schema)).limit(1)
    return conn.execute(query).first() is not None


def _omop_tables(
    conn: Connection, cdm: str | None, vocab: str | None, matcher: CodeMatcher
) -> list[CheckLine]:
    from sqlalchemy import inspect, text

    from .sources.omop.columns import probe_types
    from .sources.omop.concepts import resolve_concepts
    from .sources.omop.connect import ACTIVITY_ONLY, REQUIRED_CDM, REQUIRED_VOCAB, table_prefix

    lines: list[CheckLine] = []
    cdm_where = f"schema {cdm!r}" if cdm else "the default schema"
    vocab_where = f"schema {vocab!r}" if vocab else "the default schema"
    inspector = inspect(conn)
    cdm_tables = {t.lower() for t in inspector.get_table_names(schema=cdm)}
    vocab_tables = (
        cdm_tables if vocab == cdm else {t.lower() for t in inspector.get_table_names(schema=vocab)}
    )
    if not cdm_tables:
        return [
            _fail(
                "omop",
                f"no tables in {cdm_where}",
                "pass --cdm-schema with the schema that holds person, condition_occurrence, …",
                EXIT_SOURCE,
            )
        ]
    cdm_prefix = table_prefix(conn, cdm)
    # CDM version: cdm_source says it when filled; otherwise the v5.4-only column decides, as the run does
    columns = set()
    if "procedure_occurrence" in cdm_tables:
        probe = f"SELECT * FROM {cdm_prefix}procedure_occurrence WHERE 1 = 0"
        columns = {str(k).lower() for k in list(conn.execute(text(probe)).keys())}
    read_as = "5.4" if "procedure_end_date" in columns else "5.3"
    stated = ""
    if "cdm_source" in cdm_tables:
        probe = f"SELECT * FROM {cdm_prefix}cdm_source WHERE 1 = 0"
        if "cdm_version" in {str(k).lower() for k in list(conn.execute(text(probe)).keys())}:
            value = conn.execute(text(f"SELECT cdm_version FROM {cdm_prefix}cdm_source")).scalar()
            stated = f"; cdm_source says {value}" if value else ""
    lines.append(_ok("omop.cdm", f"CDM v{read_as} ({cdm_where}; read as {read_as} from its columns{stated})"))
    for name in (*REQUIRED_CDM, "episode", *ACTIVITY_ONLY):
        if name not in cdm_tables:
            if name in REQUIRED_CDM:
                lines.append(
                    _fail(
                        "omop.table",
                        f"{name}: missing in {cdm_where}",
                        "load the full CDM (v5.3 or v5.4) or pass the right --cdm-schema",
                        EXIT_SOURCE,
                    )
                )
            else:
                lines.append(_info("omop.table", f"{name}: absent (optional; read when present)"))
            continue
        if _has_rows(conn, cdm, name):
            lines.append(_ok("omop.table", f"{name}: present, has rows"))
        elif name in ("person", "condition_occurrence"):
            lines.append(_warn("omop.table", f"{name}: present but empty (no patient can be screened)"))
        else:
            lines.append(_info("omop.table", f"{name}: present, empty"))
    missing_vocab = [t for t in REQUIRED_VOCAB if t not in vocab_tables]
    if missing_vocab:
        lines.append(
            _fail(
                "omop.vocab",
                f"vocabulary table(s) {', '.join(missing_vocab)} missing in {vocab_where}",
                "load the OHDSI vocabularies (Athena) or pass the right --vocab-schema",
                EXIT_SOURCE,
            )
        )
        return lines
    if any(line.failed for line in lines):
        return lines
    if not _has_rows(conn, vocab, "concept"):
        lines.append(
            _fail(
                "omop.vocab",
                f"the concept table in {vocab_where} is empty (vocabulary not loaded)",
                "load the OHDSI vocabularies from Athena into the vocabulary schema",
                EXIT_SOURCE,
            )
        )
        return lines
    if not _has_rows(conn, vocab, "concept_ancestor"):
        lines.append(
            _warn(
                "omop.vocab",
                f"concept_ancestor in {vocab_where} is empty: drugs recorded as products (clinical drugs) "
                "will not reach their ingredient",
                "load concept_ancestor with the Athena vocabularies",
            )
        )
    types = probe_types(conn, vocab)
    code_type = (types or {}).get("concept", {}).get("concept_code") if types is not None else None
    concepts = resolve_concepts(conn, matcher, vocab, code_type)
    lines += _group_lines(concepts, matcher)
    if conn.dialect.name == "postgresql":
        temp = conn.execute(text("SELECT has_database_privilege(current_database(), 'TEMP')")).scalar()
        if not temp:
            lines.append(
                _fail(
                    "omop",
                    "the user may not create temporary tables (the run pushes its filter down through them)",
                    "GRANT TEMP ON DATABASE <db> TO <user>",
                    EXIT_SOURCE,
                )
            )
        else:
            lines.append(_ok("omop", "the user may create temporary tables (the run's push-down)"))
    return lines


def _group_lines(concepts: Any, matcher: CodeMatcher) -> list[CheckLine]:
    """Mapped concepts found per code group; no concept for the screening groups means no patient."""
    from .mappings import SCREENING_GROUPS

    counts: dict[str, int] = dict.fromkeys(matcher.mappings.groups(), 0)
    valued: dict[tuple[str, str], set[str]] = {}
    for e in matcher.mappings.entries:
        if e.values:
            valued.setdefault((e.system, e.code), set()).add(e.group)
    for cid, codings in concepts.codings.items():
        groups = set(matcher.match_any(codings)[0]) | set(concepts.extra_groups.get(cid, ()))
        for system, code in codings:
            info = matcher.mappings.systems.get(system)
            family = info.family if info else system
            groups |= valued.get((system, code), set()) | valued.get((family, code), set())
        for group in groups:
            counts[group] = counts.get(group, 0) + 1
    found = ", ".join(f"{g} {n}" for g, n in sorted(counts.items()) if n)
    none = sorted(g for g, n in counts.items() if not n)
    lines = [_ok("omop.vocab", f"{len(concepts.codings)} mapped concepts found: {found or 'none'}")]
    if not any(counts.get(g) for g in SCREENING_GROUPS):
        lines.append(
            _fail(
                "omop.vocab",
                "no concept of the NSCLC groups (nsclc, nsclc_icd) in the vocabulary: "
                "no patient can be screened",
                "load SNOMED and ICD10CM (Athena) into concept, or add the site's codes (--mappings)",
                EXIT_SOURCE,
            )
        )
    elif none:
        lines.append(
            _warn(
                "omop.vocab",
                f"no concept found for {', '.join(none)}",
                "load the vocabularies these groups use (Athena); ignore when the site has no such records",
            )
        )
    return lines


# -- warehouse --------------------------------------------------------------------------------------
def _check_warehouse(cfg: RunConfig) -> list[CheckLine]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from .config import url_with_password

    assert cfg.warehouse
    shown = redact_source(cfg.warehouse)
    try:
        url = url_with_password(cfg.warehouse, cfg.warehouse_password_env)
        parsed = make_url(url)
    except LeopardError as err:
        return [_from_error("warehouse", err)]
    except ArgumentError:
        return [
            _fail(
                "warehouse",
                f"warehouse URL {shown!r} is not a database URL",
                "use duckdb:///path/leopard.duckdb or postgresql+psycopg://user@host/db",
                EXIT_CONFIG,
            )
        ]
    backend = parsed.get_backend_name()
    schema = cfg.warehouse_schema
    if backend == "duckdb":
        return _check_duckdb_warehouse(parsed.database or ":memory:", schema or "main")
    if backend in ("postgresql", "postgres"):
        return _check_pg_warehouse(_pg_timeout(url), schema or "public", shown)
    return [
        _fail(
            "warehouse",
            f"unsupported warehouse database {backend!r}",
            "use a duckdb:/// or postgresql+psycopg:// URL",
            EXIT_CONFIG,
        )
    ]


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path("/")


def _version_line(part: str, version: int | None, schema: str) -> CheckLine:
    from .warehouse.schema import SCHEMA_VERSION

    if version is None:
        return _ok(part, f"schema {schema!r} holds no LEOPARD tables yet: the first run creates version "
                         f"{SCHEMA_VERSION}")
    if version > SCHEMA_VERSION:
        return _fail(
            part,
            f"schema version {version} is newer than this leopard-etl (knows up to {SCHEMA_VERSION})",
            "upgrade leopard-etl (the warehouse is never downgraded)",
            EXIT_CONFIG,
        )
    if version < SCHEMA_VERSION:
        return _ok(part, f"schema version {version}: the next run upgrades it to {SCHEMA_VERSION}")
    return _ok(part, f"schema version {version} (current)")


def _check_duckdb_warehouse(database: str, schema: str) -> list[CheckLine]:
    import fcntl

    part = "warehouse"
    if database == ":memory:":
        return [_info(part, "in-memory DuckDB warehouse: nothing is kept after the run")]
    path = Path(database)
    lines: list[CheckLine] = []
    if path.exists():
        writable = os.access(path, os.R_OK | os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)
        where = f"DuckDB file {path}"
        if not writable:
            return [
                _fail(
                    part,
                    f"{where} (or its folder, where DuckDB keeps its .wal and .lock) is not writable",
                    "give the run's user write access to the file and its folder",
                    EXIT_CONFIG,
                )
            ]
        lines.append(_ok(part, f"{where} exists and is writable"))
    else:
        existing = _nearest_existing(path.parent)
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            return [
                _fail(
                    part,
                    f"cannot create the DuckDB warehouse {path}: {existing} is not a writable folder",
                    "choose a writable folder for the DuckDB warehouse",
                    EXIT_CONFIG,
                )
            ]
        lines.append(_ok(part, f"DuckDB file {path} does not exist yet: the first run creates it"))
    lock = Path(database + ".lock")
    if lock.exists():
        try:
            fd = os.open(lock, os.O_RDONLY)  # never created, never written: the run owns this file
        except OSError as err:
            return [*lines, _fail(part, f"cannot open the lock file {lock}: {err.strerror}",
                                  "give the run's user access to the folder", EXIT_CONFIG)]
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                lines.append(
                    _fail(
                        "warehouse.lock",
                        f"held by another run (pid {holder}, lock {lock})",
                        "wait for the other leopard-etl run to finish (a killed run releases it by itself)",
                        EXIT_LOCK,
                    )
                )
                return lines
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    lines.append(_ok("warehouse.lock", "free"))
    if path.exists():
        lines.append(_duckdb_version(path, schema))
    return lines


def _duckdb_version(path: Path, schema: str) -> CheckLine:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    from .warehouse.migrate import current_version

    engine = create_engine(f"duckdb:///{path}", connect_args={"read_only": True})
    try:
        with engine.connect() as raw:
            conn = raw.execution_options(schema_translate_map={None: schema})  # as the Warehouse does
            return _version_line("warehouse", current_version(conn, schema), schema)
    except LeopardError as err:
        return _from_error("warehouse", err)
    except SQLAlchemyError as exc:
        first = _first_line(exc)
        if "lock" in first.lower():
            return _fail(
                "warehouse.lock",
                f"the DuckDB file {path} is open in another process",
                "wait for the other process (a run, a status, a notebook) to close it",
                EXIT_LOCK,
            )
        return _fail("warehouse", f"cannot read the DuckDB file {path}: {first}",
                     "check it is a DuckDB database of this DuckDB version", EXIT_CONFIG)
    finally:
        engine.dispose()


def _check_pg_warehouse(url: str, schema: str, shown: str) -> list[CheckLine]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    from .warehouse.lock import advisory_key
    from .warehouse.migrate import current_version
    from .warehouse.schema import METADATA

    part = "warehouse"
    lines: list[CheckLine] = []
    engine = create_engine(url)
    connected = False
    try:
        with engine.connect() as raw, _read_only(raw):
            connected = True
            conn = raw.execution_options(schema_translate_map={None: schema})  # as the Warehouse does
            server = conn.execute(text("SHOW server_version")).scalar()
            lines.append(_ok(part, f"connected to {shown} (PostgreSQL {server})"))
            exists = conn.execute(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}
            ).first() is not None
            if exists:
                may = conn.execute(
                    text("SELECT has_schema_privilege(:s, 'CREATE') AND has_schema_privilege(:s, 'USAGE')"),
                    {"s": schema},
                ).scalar()
                what = f"create tables in schema {schema!r}"
            else:
                query = "SELECT has_database_privilege(current_database(), 'CREATE')"
                may = conn.execute(text(query)).scalar()
                what = f"create the schema {schema!r} (absent)"
            if not may:
                lines.append(
                    _fail(part, f"the user may not {what}",
                          f"GRANT CREATE ON {'SCHEMA ' + schema if exists else 'DATABASE <db>'} TO <user>",
                          EXIT_CONFIG)
                )
                return lines
            denied: list[str] = []
            if exists:
                present = conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
                ).scalars().all()
                for table in sorted(set(present) & set(METADATA.tables)):
                    ok = conn.execute(
                        text("SELECT has_table_privilege(:t, 'SELECT, INSERT, UPDATE, DELETE')"),
                        {"t": f'"{schema}"."{table}"'},
                    ).scalar()
                    if not ok:
                        denied.append(table)
            if denied:
                lines.append(
                    _fail(part, f"the user may not write the tables {', '.join(denied)} of schema {schema!r}",
                          "GRANT SELECT, INSERT, UPDATE, DELETE on them to the run's user", EXIT_CONFIG)
                )
                return lines
            lines.append(_ok(part, f"writable: the user may {what} (checked, nothing created)"))
            version = current_version(conn, schema) if exists else None
            lines.append(_version_line(part, version, schema))
            key = advisory_key(schema)
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                lines.append(_ok("warehouse.lock", f"free (advisory lock of schema {schema!r})"))
            else:
                lines.append(
                    _fail(
                        "warehouse.lock",
                        f"schema {schema!r} is locked by another run (advisory lock held)",
                        "wait for the other leopard-etl run to finish (a killed run releases it by itself)",
                        EXIT_LOCK,
                    )
                )
    except LeopardError as err:
        lines.append(_from_error(part, err))
    except SQLAlchemyError as exc:
        if connected:
            lines.append(_fail(part, f"querying the warehouse {shown} failed: {_first_line(exc)}",
                               "check the warehouse schema and the user's rights on it", EXIT_SOURCE))
        else:
            lines.append(
                _fail(
                    part,
                    f"warehouse unreachable ({shown}): {_first_line(exc)}",
                    "check --warehouse / LEOPARD_WAREHOUSE and that the database server is up",
                    EXIT_SOURCE,
                )
            )
    finally:
        engine.dispose()
    return lines


# -- outputs ----------------------------------------------------------------------------------------
def _check_out(out: Path) -> CheckLine:
    if out.exists():
        if not out.is_dir():
            return _fail("outputs", f"{out} is not a folder", "choose an output folder (--out)", EXIT_CONFIG)
        # the run writes a scratch folder beside it, then moves the files in
        if os.access(out, os.W_OK | os.X_OK) and os.access(out.resolve().parent, os.W_OK | os.X_OK):
            return _ok("outputs", f"{out} is writable")
        return _fail(
            "outputs",
            f"{out} (or its parent folder, where the run stages the files) is not writable",
            "choose a writable output folder (--out)",
            EXIT_CONFIG,
        )
    existing = _nearest_existing(out.resolve().parent)
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return _ok("outputs", f"{out} does not exist yet: the run creates it")
    return _fail(
        "outputs",
        f"cannot create {out}: {existing} is not writable",
        "choose a writable output folder (--out)",
        EXIT_CONFIG,
    )
