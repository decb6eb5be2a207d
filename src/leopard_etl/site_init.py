"""``leopard-etl init [DIR]``: a site's starting files — a commented ``leopard.yaml`` and a mappings folder.

``leopard.yaml`` lists every setting of :class:`~leopard_etl.config.RunConfig` (nested models
included) with its default and the ``LEOPARD_*`` environment variable that overrides it. It is
generated from the model itself, so it cannot drift from the code: a new setting appears here
the day it is added. Every setting is commented out (``#name: default``); removing the ``#``
of a line (and of its section line, ``#rules:``) sets it. The file as written loads to the
defaults, and so does the file with every setting uncommented.

``mappings/`` is an empty site mappings folder (``--mappings`` / ``mappings_extra``) with one
commented example of each file kind the loader reads — ``systems.yaml`` (aliases and in-house
coding systems), ``groups.yaml`` (codes added to code groups), ``drug_names.yaml`` (free-text
drug names), ``sites.yaml`` (lesion site categories). As written they add nothing; with the
examples uncommented they load together.

Nothing is overwritten: when any of the files exists, :func:`init` writes none and says which.
"""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .errors import ConfigError

__all__ = ["CONFIG_NAME", "MAPPINGS_DIR", "config_template", "init", "mapping_templates", "uncomment"]

CONFIG_NAME = "leopard.yaml"
MAPPINGS_DIR = "mappings"
#: column of the ``# LEOPARD_…`` comment after a setting
_ENV_COLUMN = 44

#: What a setting means, for the fields whose model declares no description (config.py is the
#: source of the names and defaults; a test checks every key here is a real field).
_DESCRIPTIONS: dict[str, str] = {
    "fhir": "FHIR sources: NDJSON/Bundle files or folders, or server base URLs (a list)",
    "omop": "OMOP CDM SQLAlchemy URL, e.g. duckdb:///cdm.duckdb (exactly one of fhir / omop)",
    "cdm_schema": "schema of the CDM clinical tables (a plain identifier)",
    "vocab_schema": "schema of concept / concept_ancestor (default: cdm_schema)",
    "out": "output folder: patients.csv, results.json, results-shareable.json, report.html, quarantine.csv",
    "warehouse": "warehouse URL: duckdb:///path/leopard.duckdb or postgresql+psycopg://user@host:5432/db",
    "warehouse_schema": "schema of the warehouse tables (default main / public; created if absent)",
    "mappings_extra": "folders of site mapping files added to the built-in mappings/",
    "rules": "clinical thresholds of spec §3 (the defaults are the specification's)",
    "small_cell_threshold": "shareable outputs show counts below this as <k",
    "quarantine_max_pct": "the run fails (exit 4) when more than this % of records is quarantined",
    "pseudonymise_key_env": "environment variable holding the pseudonymisation key (secret; >= 16 bytes)",
    "bearer_token_env": "environment variable holding the FHIR server's bearer token (secret)",
    "bearer_token_file": "file holding the FHIR server's bearer token (secret)",
    "log_json": "JSON-lines logs on stderr, for schedulers",
    "log_level": "log level",
    "smart": "SMART Backend Services for a FHIR server (on when client_id is set)",
    "fhir_limits": "bounds of a FHIR server read; each, when hit, ends the run (exit 3)",
    "smart.algorithm": "signature of the JWT assertion: RS384 (RSA key) or ES384 (P-384 key)",
    "rules.stereotactic_max_fractions": "a course of at most N fractions may be stereotactic",
    "rules.stereotactic_min_cgy_per_fraction": "and of at least this dose per fraction (cGy)",
    "rules.days_per_month": "months = days / N",
}


def env_name(path: tuple[str, ...]) -> str:
    """The environment variable of a setting: ``LEOPARD_`` + the path in upper case, joined by ``__``."""
    from .config import ENV_PREFIX

    return ENV_PREFIX + "__".join(part.upper() for part in path)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {k: _plain(v) for k, v in value.model_dump().items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _yaml_value(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(_plain(value), default_flow_style=True, allow_unicode=True, width=10_000)
    return text.removesuffix("\n...\n").strip()


def _choices(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    for arg in args:
        if typing.get_origin(arg) is typing.Literal:
            return "one of " + ", ".join(str(a) for a in typing.get_args(arg))
    return ""


def _setting_lines(model: type[BaseModel], defaults: BaseModel, path: tuple[str, ...]) -> Iterator[str]:
    indent = "  " * len(path)
    for name, field in model.model_fields.items():
        here = (*path, name)
        dotted = ".".join(here)
        description = field.description or _DESCRIPTIONS.get(dotted, "")
        choices = _choices(field.annotation)
        if choices:
            description = f"{description} ({choices})" if description else choices
        nested = _nested_model(field.annotation)
        value = getattr(defaults, name)
        if not path:
            yield ""  # a blank line between top-level settings
        if description:
            # prose: "# text" at the top level, "#  # text" inside a section (a comment once uncommented)
            yield f"# {description}" if not path else f"#{indent}# {description}"
        if nested is not None:
            yield f"#{indent}{name}:".ljust(_ENV_COLUMN - 1) + f" # {env_name(here)}__<SETTING>"
            yield from _setting_lines(nested, value, here)
            continue
        line = f"#{indent}{name}: {_yaml_value(value)}"
        yield line.ljust(_ENV_COLUMN - 1) + f" # {env_name(here)}"


def config_template(mappings_folder: Path | None = None) -> str:
    """The commented ``leopard.yaml``: every setting of RunConfig at its default, with its variable."""
    from . import __version__
    from .config import RunConfig

    defaults = RunConfig.model_validate({})
    head = [
        f"# {CONFIG_NAME} — settings of `leopard-etl run` (written by `leopard-etl init`, leopard-etl "
        f"{__version__}).",
        "#",
        "# Every setting is listed with its default, commented out: remove the leading '#' of a setting",
        "# (and of its section line, e.g. '#rules:') to change it. Precedence: defaults < this file <",
        "# the environment variable named after each setting (lists as a,b,c or JSON) < command-line",
        "# options. Secrets never go in this file: a *_env setting names the environment variable that",
        "# holds the secret, a *_file setting the file (see docs/configuration.md).",
        "#",
        "# Before the first scheduled run:  leopard-etl check --config leopard.yaml",
    ]
    if mappings_folder is not None:
        head += [
            "#",
            f"# Site mappings: the folder {mappings_folder} was created with this file; to use it,",
            f"# set mappings_extra below to [{mappings_folder}].",
        ]
    body = list(_setting_lines(RunConfig, defaults, ()))
    return "\n".join(head + body) + "\n"


def uncomment(text: str) -> str:
    """``text`` with every setting line uncommented (``#name: …`` → ``name: …``); prose stays a comment.

    Settings are ``#`` followed by a name or by indentation; prose is ``# `` and one space.
    """
    out = []
    for line in text.splitlines():
        if line.startswith("#") and len(line) > 1 and (line[1] not in " #" or line.startswith("#  ")):
            line = line[1:]
        out.append(line)
    return "\n".join(out) + "\n"


#: the site mappings folder: file name -> content (valid as written; the examples are commented out)
_SYSTEMS = """\
# Site coding systems (spec §1 v2). Two uses. An alias: a URI your FHIR server writes for a
# system we know (icd10 below; the lists are added to the built-in mappings/systems.yaml, never
# replace it). An in-house system: the codes of a local catalogue (hospital below), named here
# and used in groups.yaml and sites.yaml.
# Remove the '#' of the example lines (keep the indentation) and put your own URIs.
format_version: 1
#systems:
#  icd10:
#    fhir: [https://hospital.example/fhir/CodeSystem/icd10]
#  hospital:
#    fhir: [https://hospital.example/fhir/CodeSystem/catalogue]
"""

_GROUPS = """\
# Site codes added to the code groups of mappings/*.yaml (radiotherapy, durvalumab, lesion, …;
# `leopard-etl check` lists them). An entry: system (a key of systems.yaml), code, and optionally
# match (exact, prefix, or pattern with ? for one character) and meaning. A code may not sit in
# two conflicting groups (e.g. nsclc and small_cell): the loader refuses it with one line.
# The example uses the in-house system of the systems.yaml example.
format_version: 1
#groups:
#  radiotherapy:
#    entries:
#      - {system: hospital, code: "RT-IMRT", meaning: IMRT course (in-house catalogue)}
#  lesion:
#    entries:
#      - {system: hospital, code: "MET-LIV", meaning: Liver metastasis (in-house problem list)}
"""

_DRUG_NAMES = """\
# Free-text drug names (INN in the local language, brands), matched as whole words in any case
# when a drug record has no code (spec §2.1). The ingredient must be one of mappings/drugs.yaml.
format_version: 1
#drug_names:
#  durvalumab: [durvalumabum]
#  carboplatin: [carboplatine]
"""

_SITES = """\
# Lesion site categories of site codes: lung, brain, bone, liver, adrenal, lymph_node_thoracic,
# lymph_node_distant, pleura, meninges, peritoneum. A lesion's category comes from its own code
# (role: lesion, the default), else from its body site (role: body_site); laterality is optional.
# The example gives the in-house lesion code of groups.yaml its category.
format_version: 1
#sites:
#  liver:
#    - {system: hospital, code: "MET-LIV"}
"""


def mapping_templates() -> dict[str, str]:
    """The files of an empty site mappings folder, one commented example of each kind."""
    return {
        "systems.yaml": _SYSTEMS,
        "groups.yaml": _GROUPS,
        "drug_names.yaml": _DRUG_NAMES,
        "sites.yaml": _SITES,
    }


def init(directory: Path) -> list[Path]:
    """Write ``leopard.yaml`` and ``mappings/`` into ``directory`` (created if absent); returns the files.

    Refuses (ConfigError, one line, nothing written) when any of those files already exists.
    """
    directory = Path(directory)
    folder = directory / MAPPINGS_DIR
    files = {directory / CONFIG_NAME: config_template(folder.resolve())}
    files.update({folder / name: text for name, text in mapping_templates().items()})
    existing = [p for p in files if p.exists()]
    if existing:
        shown = ", ".join(str(p) for p in existing)
        raise ConfigError(
            f"{shown} already exist{'s' if len(existing) == 1 else ''}; init never overwrites",
            fix="choose another folder (leopard-etl init DIR) or move the files away",
        )
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is not a folder", fix="choose a folder (leopard-etl init DIR)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            with path.open("x", encoding="utf-8") as fh:  # "x": never replaces a file created meanwhile
                fh.write(text)
    except OSError as err:
        raise ConfigError(
            f"cannot write {err.filename or directory}: {err.strerror or err}",
            fix="choose a writable folder (leopard-etl init DIR)",
        ) from None
    return list(files)
