"""Command line: parse, dispatch, turn errors into one line and an exit code.

Heavy libraries are imported inside the commands so that ``leopard-etl --help``
starts fast (lifelines alone takes over a second to import).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import EXIT_INTERNAL, LeopardError

app = typer.Typer(
    name="leopard-etl",
    help="FHIR R4 / OMOP CDM → the LEOPARD cohort (stage III NSCLC, CRT + durvalumab, recurrence, salvage).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: keeps `--help` well under 0.3 s (no rich import)
)


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"leopard-etl {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    pass


FhirOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fhir", help="FHIR source: NDJSON/Bundle file or folder, or a server base URL (repeatable)."
    ),
]
OmopOpt = Annotated[
    str | None, typer.Option("--omop", help="OMOP CDM SQLAlchemy URL, e.g. duckdb:///cdm.duckdb")
]
CdmSchemaOpt = Annotated[str | None, typer.Option("--cdm-schema", help="Schema of the CDM clinical tables.")]
VocabSchemaOpt = Annotated[
    str | None, typer.Option("--vocab-schema", help="Schema of concept/concept_ancestor.")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML/TOML config file (see docs/configuration.md).")
]


@app.command()
def run(
    fhir: FhirOpt = None,
    omop: OmopOpt = None,
    cdm_schema: CdmSchemaOpt = None,
    vocab_schema: VocabSchemaOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default ./leopard-out).")] = None,
    warehouse: Annotated[
        str | None, typer.Option("--warehouse", help="Warehouse SQLAlchemy URL to load.")
    ] = None,
    cutoff: Annotated[
        str | None, typer.Option("--cutoff", help="Data cutoff YYYY-MM-DD (default: latest date).")
    ] = None,
    config: ConfigOpt = None,
    incremental: Annotated[
        bool, typer.Option("--incremental", help="Read only what changed since the last successful run.")
    ] = False,
    bulk: Annotated[bool, typer.Option("--bulk", help="Use FHIR Bulk Data $export on a server URL.")] = False,
    mappings: Annotated[
        list[Path] | None, typer.Option("--mappings", help="Extra folder of site mapping files (repeatable).")
    ] = None,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Structured JSON log lines.")] = False,
    engine: Annotated[
        str | None,
        typer.Option("--engine", help="default (one machine) or spark (extra [spark]; docs/spark.md)."),
    ] = None,
) -> None:
    """Read a source, derive the cohort, write patients.csv, results.json, report.html (+ warehouse)."""
    from .pipeline import RunRequest, run_pipeline

    req = RunRequest(
        fhir=list(fhir or []),
        omop=omop,
        cdm_schema=cdm_schema,
        vocab_schema=vocab_schema,
        out=out,
        warehouse=warehouse,
        cutoff=cutoff,
        config=config,
        incremental=incremental,
        bulk=bulk,
        mappings=list(mappings or []),
        json_logs=json_logs,
        engine=engine,
    )
    summary = run_pipeline(req)
    _print_summary(summary)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("leopard-out"),
    patients: Annotated[int, typer.Option("--patients", help="Synthetic patients to generate.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 2025,
) -> None:
    """Generate a LEOPARD-calibrated cohort as FHIR files and run the whole pipeline on DuckDB."""
    from .pipeline import run_demo

    summary = run_demo(out=out, patients=patients, seed=seed)
    _print_summary(summary)


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder (or DuckDB file folder).")],
    patients: Annotated[int, typer.Option("--patients", help="Number of patients.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (deterministic output).")] = 1,
    centres: Annotated[int, typer.Option("--centres", help="Number of centres.")] = 8,
    fmt: Annotated[
        str, typer.Option("--format", help="fhir-ndjson | fhir-bundle | omop-duckdb | omop-csv")
    ] = "fhir-ndjson",
    cdm_version: Annotated[str, typer.Option("--cdm-version", help="OMOP CDM version 5.4 or 5.3.")] = "5.4",
) -> None:
    """Write a synthetic multi-centre cohort with its ground truth (expected/patients.csv)."""
    from .errors import ConfigError

    formats = ("fhir-ndjson", "fhir-bundle", "omop-duckdb", "omop-csv")
    if fmt not in formats:
        raise ConfigError(f"unknown --format {fmt!r}", fix=f"use one of {', '.join(formats)}")
    if patients < 1:
        raise ConfigError("--patients must be at least 1", fix="pass --patients N with N >= 1")
    from .synth import generate

    summary = generate(
        patients=patients, seed=seed, out=out, fmt=fmt, centres=centres, cdm_version=cdm_version
    )
    _print_summary(summary)


@app.command()
def explain(
    patient_id: Annotated[str, typer.Argument(help="Patient id as in patients.csv.")],
    fhir: FhirOpt = None,
    omop: OmopOpt = None,
    cdm_schema: CdmSchemaOpt = None,
    vocab_schema: VocabSchemaOpt = None,
    cutoff: Annotated[str | None, typer.Option("--cutoff", help="Data cutoff YYYY-MM-DD.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Print one patient's timeline and which records drove each classification."""
    from .pipeline import RunRequest, explain_patient

    req = RunRequest(
        fhir=list(fhir or []),
        omop=omop,
        cdm_schema=cdm_schema,
        vocab_schema=vocab_schema,
        cutoff=cutoff,
        config=config,
    )
    typer.echo(explain_patient(req, patient_id))


@app.command()
def status(
    warehouse: Annotated[str | None, typer.Option("--warehouse", help="Warehouse SQLAlchemy URL.")] = None,
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="How many runs.")] = 10,
) -> None:
    """Print the last runs of the warehouse run log."""
    from .pipeline import warehouse_status

    for line in warehouse_status(warehouse, config, limit):
        typer.echo(line)


@app.command()
def pool(
    summaries: Annotated[list[Path], typer.Argument(help="The sites' site-summary.json, one per site.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: pooled results.json, report.html.")],
) -> None:
    """Pool several sites' site-summary.json into one results.json and report.html (no patient data)."""
    from .report.pooled import write_pooled

    _print_summary(write_pooled(summaries, out))


@app.command()
def check(
    fhir: FhirOpt = None,
    omop: OmopOpt = None,
    cdm_schema: CdmSchemaOpt = None,
    vocab_schema: VocabSchemaOpt = None,
    warehouse: Annotated[
        str | None, typer.Option("--warehouse", help="Warehouse SQLAlchemy URL to check.")
    ] = None,
    config: ConfigOpt = None,
    bulk: Annotated[
        bool, typer.Option("--bulk", help="The run will use FHIR Bulk Data $export: check it is offered.")
    ] = False,
    mappings: Annotated[
        list[Path] | None, typer.Option("--mappings", help="Extra folder of site mapping files (repeatable).")
    ] = None,
) -> None:
    """Reach every configured part (source, warehouse, output folder), one line each; changes nothing."""
    from .check import check_request, format_line, verdict

    lines = check_request(
        config,
        fhir=list(fhir or []),
        omop=omop,
        cdm_schema=cdm_schema,
        vocab_schema=vocab_schema,
        warehouse=warehouse,
        mappings=list(mappings or []),
        bulk=bulk,
    )
    for line in lines:
        typer.echo(format_line(line))
    code = verdict(lines)
    typer.echo("a run would start" if code == 0 else f"a run would not start (exit {code})", err=code != 0)
    raise typer.Exit(code)


@app.command()
def init(
    directory: Annotated[
        Path, typer.Argument(help="Folder for leopard.yaml and the site mappings folder (default: here).")
    ] = Path("."),
) -> None:
    """Write a commented leopard.yaml (every setting, default, variable) and a site mappings folder."""
    from .site_init import CONFIG_NAME
    from .site_init import init as write_site_files

    for path in write_site_files(directory):
        typer.echo(f"wrote {path}")
    config = directory / CONFIG_NAME
    typer.echo(f"next: edit {config}, then run: leopard-etl check --config {config}")


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    table = Table(show_header=False, box=None)
    for key, value in summary.items():
        table.add_row(str(key), str(value))
    console.print(table)


def _redacted(exc: BaseException) -> str:
    """The message with any URL's password or token masked (a message may quote a source URL)."""
    from .privacy import redact_source

    return redact_source(str(exc))


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit codes of leopard_etl.errors; no traceback for user errors."""
    try:
        app(args=argv, prog_name="leopard-etl")  # standalone: click handles usage errors and --help
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except LeopardError as exc:
        sys.stderr.write(f"leopard-etl: error: {_redacted(exc)}\n")
        return exc.exit_code
    except Exception as exc:
        import os

        sys.stderr.write(
            f"leopard-etl: internal error: {type(exc).__name__}: {_redacted(exc)} "
            "(please report it with the command you ran; LEOPARD_DEBUG=1 shows the traceback)\n"
        )
        if os.environ.get("LEOPARD_DEBUG"):
            import traceback

            traceback.print_exc()
        return EXIT_INTERNAL
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
