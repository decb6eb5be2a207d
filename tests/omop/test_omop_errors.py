"""Every way an OMOP source can be wrong ends in one line with the fix, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from leopard_etl.errors import ConfigError, LeopardError, SourceError
from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.omop import read_omop


@pytest.fixture(scope="module")
def matcher() -> CodeMatcher:
    return CodeMatcher(load_mappings())


def _fails(url: str, matcher: CodeMatcher, kind: type[LeopardError], needle: str, **kw: str | None) -> None:
    sink = EventSink()
    with pytest.raises(kind) as info:
        read_omop(url, matcher, sink, **kw)  # type: ignore[arg-type]
    err = info.value
    assert needle in str(err), str(err)
    assert "\n" not in str(err) and err.fix
    assert sink.events == [] and sink.stats.read == 0


@pytest.mark.parametrize("schema", ["cdm; DROP TABLE person", "cdm--", "a.b.c", "1cdm", 'cdm"', "x" * 80])
def test_bad_schema_names_are_refused_before_connecting(matcher: CodeMatcher, schema: str) -> None:
    _fails("duckdb:///nowhere.duckdb", matcher, ConfigError, "not a valid schema name", cdm_schema=schema)
    _fails("duckdb:///nowhere.duckdb", matcher, ConfigError, "not a valid schema name", vocab_schema=schema)


def test_unknown_driver_and_bad_url(matcher: CodeMatcher) -> None:
    _fails("nosuchdb://host/db", matcher, ConfigError, "no SQLAlchemy driver")
    _fails("not a url", matcher, ConfigError, "not a database URL")


def test_missing_duckdb_file(matcher: CodeMatcher, tmp_path: Path) -> None:
    _fails(f"duckdb:///{tmp_path}/absent.duckdb", matcher, SourceError, "does not exist")
    assert not (tmp_path / "absent.duckdb").exists()  # the adapter never creates an empty database


def test_unreachable_postgres(matcher: CodeMatcher) -> None:
    # port 1 on localhost: connection refused at once, with or without a PostgreSQL server
    _fails("postgresql+psycopg://postgres:secret@127.0.0.1:1/cdm", matcher, SourceError, "cannot connect")
    with pytest.raises(SourceError) as info:
        read_omop(
            "postgresql+psycopg://postgres:secret@127.0.0.1:1/cdm", CodeMatcher(load_mappings()), EventSink()
        )
    assert "secret" not in str(info.value)


def test_wrong_schemas_and_missing_tables(duckdb_cdm: Callable[..., str], matcher: CodeMatcher) -> None:
    url = duckdb_cdm("5.4", "cdm", "vocab")
    _fails(url, matcher, SourceError, "no tables in schema 'elsewhere'", cdm_schema="elsewhere")
    _fails(
        url,
        matcher,
        SourceError,
        "vocabulary table(s) concept, concept_ancestor missing",
        cdm_schema="cdm",
        vocab_schema="cdm",
    )
    path = url.removeprefix("duckdb:///")
    with duckdb.connect(path) as con:
        con.execute("DROP TABLE cdm.measurement")
    _fails(
        url,
        matcher,
        SourceError,
        "OMOP table(s) measurement missing in schema 'cdm'",
        cdm_schema="cdm",
        vocab_schema="vocab",
    )


def test_empty_vocabulary(duckdb_cdm: Callable[..., str], matcher: CodeMatcher) -> None:
    url = duckdb_cdm("5.4", "cdm", "vocab", with_concepts=False)
    _fails(url, matcher, SourceError, "vocabulary not loaded", cdm_schema="cdm", vocab_schema="vocab")


@pytest.mark.postgres
def test_postgres_missing_schema(pg_cdm: Callable[[str], tuple[str, str, str]], matcher: CodeMatcher) -> None:
    url, _cdm, vocab = pg_cdm("5.4")
    _fails(url, matcher, SourceError, "no tables in schema 'nope'", cdm_schema="nope", vocab_schema=vocab)
