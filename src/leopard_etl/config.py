"""Typed configuration: the clinical rule thresholds (spec §3) and the run settings.

Every threshold of spec §3 lives in :class:`Rules` with the spec value as default,
so a site may override it in its config file while the defaults behave exactly as
written. Run settings (:class:`RunConfig`) come from a YAML/TOML file, then
``LEOPARD_*`` environment variables; secrets are never fields here, only the
*names* of the environment variables or files that hold them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from leopard_etl.engines.spark.settings import SparkSettings
from leopard_etl.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "FhirLimits",
    "Rules",
    "RunConfig",
    "SmartSettings",
    "load_config",
    "resolve_secret",
    "url_with_password",
]

log = logging.getLogger(__name__)

#: Environment overrides: LEOPARD_<FIELD>, nested with "__" (LEOPARD_RULES__LESION_WINDOW_DAYS).
ENV_PREFIX = "LEOPARD_"
#: LEOPARD_* variables that are not configuration (paths.py reads LEOPARD_HOME).
#: LEOPARD_* variables that are not settings (paths, debugging, test hooks).
_NOT_CONFIG = frozenset({"LEOPARD_HOME", "LEOPARD_DEBUG", "LEOPARD_PAUSE_AT"})


class Rules(BaseModel):
    """Thresholds of spec §3; defaults are normative."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rt_window_days: int = Field(180, description="RT course must start 0..N days after diagnosis")
    rt_merge_gap_days: int = Field(
        14, description="records merge while each starts <=N days after previous end"
    )
    sequential_window_days: int = Field(
        120, description="platinum within [RT start - N, RT start) = sequential"
    )
    durvalumab_gap_days: int = Field(60, description="doses chain while gaps are <=N days")
    lesion_window_days: int = Field(30, description="lesions dated in [R, R+N]")
    salvage_window_days: int = Field(90, description="salvage therapies start in [R, R+N]")
    oligo_max_lesions: int = Field(3, description="oligo if 1..N lesions")
    non_amenable_sites: tuple[str, ...] = Field(
        ("pleura", "meninges", "peritoneum"), description="any lesion here makes the pattern poly"
    )
    default_field: tuple[str, ...] = Field(
        ("lung", "lymph_node_thoracic"), description="irradiated field when the RT course names no body site"
    )
    stereotactic_max_fractions: int = 8
    stereotactic_min_cgy_per_fraction: float = 500.0
    days_per_month: float = 30.4375
    small_cell_excludes_icd: bool = Field(
        True, description="C34.* is not NSCLC when small-cell histology exists"
    )
    cutoff: dt.date | None = Field(None, description="data cutoff; default = latest date in the data")


def _has_password(url: str) -> bool:
    if "://" not in url:
        return False
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    return "@" in netloc and ":" in netloc.rsplit("@", 1)[0]


_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
#: RFC 6749 scope-token characters
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")
#: SMART v1 ``.write`` / ``.*`` or v2 permissions with c(reate), u(pdate), d(elete)
_WRITE_SCOPE = re.compile(r"^(system|user|patient)/[^.]+\.(write|\*|[rs]*[cud][cruds]*)(\?.*)?$")


class SmartSettings(BaseModel):
    """SMART Backend Services (client_credentials with a signed JWT assertion); off without a client id.

    The private key is a secret: named by ``private_key_env`` (a variable holding the PEM)
    or ``private_key_file`` (a PEM file), exactly one of them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str | None = Field(None, min_length=1, description="client id registered with the server")
    token_url: str | None = Field(
        None, description="token endpoint; default: discovered in <server>/.well-known/smart-configuration"
    )
    private_key_env: str | None = Field(None, description="env var holding the PEM private key")
    private_key_file: Path | None = Field(None, description="file holding the PEM private key")
    key_id: str | None = Field(None, min_length=1, description="kid of the key in the client's JWKS")
    algorithm: Literal["RS384", "ES384"] = "RS384"
    scopes: str = Field("system/*.read", description="space-separated scopes; read-only")

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, url: str | None) -> str | None:
        if url is None:
            return url
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
        except ValueError:
            raise ValueError("not a URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the token URL must be an https:// URL")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
            raise ValueError("the token URL must use https (http only on the loopback interface)")
        if _has_password(url) or parts.query:
            raise ValueError("the token URL must not carry credentials or a query string")
        return url

    @field_validator("scopes")
    @classmethod
    def _read_only_scopes(cls, scopes: str) -> str:
        tokens = scopes.split()
        if not tokens:
            raise ValueError("at least one scope is needed, e.g. system/*.read")
        for token in tokens:
            if not _SCOPE_TOKEN.fullmatch(token):
                raise ValueError(f"{token!r} is not a valid scope")
            if _WRITE_SCOPE.match(token):
                raise ValueError(f"scope {token} grants write access; the ETL only reads (system/*.read)")
        return " ".join(tokens)

    @model_validator(mode="after")
    def _complete(self) -> SmartSettings:
        keys = [k for k in (self.private_key_env, self.private_key_file) if k]
        if self.client_id is None:
            if keys or self.token_url or self.key_id:
                raise ValueError(
                    "client_id is needed for SMART Backend Services (or drop the smart settings)"
                )
            return self
        if len(keys) != 1:
            raise ValueError("name the private key with exactly one of private_key_env, private_key_file")
        return self


class FhirLimits(BaseModel):
    """Bounds on a FHIR server read; each one, when hit, ends the run with one line (exit 3)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_pages: int = Field(10_000, ge=1, description="pages one REST search may return (next links)")
    max_read_seconds: float = Field(6 * 3600, gt=0, description="wall time of one REST read")
    bulk_max_wait_seconds: float = Field(6 * 3600, gt=0, description="wait for $export to complete")
    bulk_poll_seconds: float = Field(
        5.0, ge=1, le=3600, description="status poll interval when the server sends no Retry-After"
    )


class RunConfig(BaseModel):
    """Settings of one ``leopard-etl run``: defaults < config file < LEOPARD_* env < CLI options.

    Documented field by field in docs/configuration.md. Secrets are never values here:
    ``*_env`` fields name environment variables and ``*_file`` fields name files that
    hold them (see :func:`resolve_secret`); URLs with an embedded password are refused.
    """

    model_config = ConfigDict(extra="forbid")

    fhir: list[str] = Field(default_factory=list)
    omop: str | None = None
    cdm_schema: str | None = None
    vocab_schema: str | None = None
    out: Path = Path("leopard-out")
    warehouse: str | None = None
    warehouse_schema: str | None = None
    warehouse_duckdb_memory: str = Field(
        "2GB",
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB warehouse memory_limit: above it DuckDB spills to disk (the store upsert peaks)",
    )
    mappings_extra: list[Path] = Field(default_factory=list)
    rules: Rules = Field(default_factory=lambda: Rules.model_validate({}))
    small_cell_threshold: int = 5
    engine: Literal["default", "spark"] = Field(
        "default", description="default: one machine (DuckDB spool); spark: read and derive on Spark"
    )
    spark: SparkSettings = Field(default_factory=lambda: SparkSettings.model_validate({}))
    site: str | None = Field(
        None, description="this site's name in site-summary.json (pooled studies); default: a content hash"
    )
    quarantine_max_pct: float = 100.0
    pseudonymise_key_env: str | None = None
    bearer_token_env: str | None = None
    bearer_token_file: Path | None = None
    log_json: bool = False
    # added with the warehouse runner
    mode: Literal["full", "incremental"] = Field("full", description="incremental: resume from the watermark")
    warehouse_password_env: str | None = Field(None, description="env var holding the warehouse DB password")
    omop_password_env: str | None = Field(None, description="env var holding the OMOP DB password")
    pseudonymise_key_file: Path | None = Field(None, description="file holding the pseudonymisation key")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # FHIR server access: SMART Backend Services, and the bounds of a read
    smart: SmartSettings = Field(default_factory=lambda: SmartSettings.model_validate({}))
    fhir_limits: FhirLimits = Field(default_factory=lambda: FhirLimits.model_validate({}))

    @field_validator("warehouse", "omop")
    @classmethod
    def _no_password_in_url(cls, url: str | None) -> str | None:
        if url and _has_password(url):
            raise ValueError("the URL contains a password; name an env var in *_password_env instead")
        return url

    @field_validator("fhir")
    @classmethod
    def _no_credentials_in_server_url(cls, sources: list[str]) -> list[str]:
        from leopard_etl.privacy import redact_source

        for source in sources:
            if source.startswith(("http://", "https://")) and (
                _has_password(source) or redact_source(source) != source
            ):
                raise ValueError(
                    "a FHIR server URL carries a credential (password or token parameter); "
                    "name it in bearer_token_env / bearer_token_file or the smart settings instead"
                )
        return sources

    @model_validator(mode="after")
    def _one_fhir_auth(self) -> RunConfig:
        if self.smart.client_id and (self.bearer_token_env or self.bearer_token_file):
            raise ValueError("both a bearer token and SMART client settings are given; keep one")
        return self

    @field_validator("warehouse_schema")
    @classmethod
    def _identifier(cls, name: str | None) -> str | None:
        if name is not None and not re.fullmatch(_IDENT, name):
            raise ValueError(f"{name!r} is not a plain SQL identifier (letters, digits, _)")
        return name

    @field_validator("cdm_schema", "vocab_schema")
    @classmethod
    def _cdm_identifier(cls, name: str | None) -> str | None:
        """A CDM may live in another catalog (a DuckDB attached file, a SQL Server database):
        ``catalog.schema`` is allowed, each part a plain identifier (docs/omop.md)."""
        if name is not None and not re.fullmatch(rf"{_IDENT}(\.{_IDENT})?", name):
            raise ValueError(f"{name!r} is not a plain SQL identifier or catalog.schema (letters, digits, _)")
        return name


#: a plain SQL identifier, as every dialect we support takes it unquoted
_IDENT = r"[A-Za-z_][A-Za-z0-9_]{0,62}"


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", fix="check --config / the path")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(
                f"config file {path} is neither YAML nor TOML", fix="name it *.yaml, *.yml or *.toml"
            )
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err}", fix="fix the file's syntax") from None
    except Exception as err:  # yaml.YAMLError, without importing yaml at module level
        if type(err).__module__.startswith("yaml"):
            first = str(err).splitlines()[0]
            message = f"config file {path} is not valid YAML: {first}"
            raise ConfigError(message, fix="fix the file's syntax") from None
        raise
    if data is None:
        return {}
    if not isinstance(data, dict):
        message = f"config file {path} must hold a mapping of settings"
        raise ConfigError(message, fix="see docs/config.example.yaml")
    return data


def _is_sequence(model: type[BaseModel], name: str) -> bool:
    field = model.model_fields.get(name)
    if field is None:
        return False
    annotation = field.annotation
    origins = {typing.get_origin(annotation)} | {typing.get_origin(a) for a in typing.get_args(annotation)}
    return bool(origins & {list, tuple})


def _env_value(model: type[BaseModel], name: str, raw: str) -> Any:
    if raw.lstrip().startswith(("[", "{")):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            pass
    if _is_sequence(model, name):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _env_overrides(env: Mapping[str, str], skip: set[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Nested settings from LEOPARD_* variables, and which variable set each dotted field."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in _NOT_CONFIG or var in skip:
            continue
        path = var[len(ENV_PREFIX) :].lower().split("__")
        model: type[BaseModel] = RunConfig
        target = values
        for part in path[:-1]:
            sub = model.model_fields.get(part)
            nested = sub.annotation if sub is not None else None
            if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
                break
            model = nested
            target = target.setdefault(part, {})
        else:
            leaf = path[-1]
            if leaf in model.model_fields:
                target[leaf] = _env_value(model, leaf, env[var])
                origin[".".join(path)] = var
                continue
        log.warning("ignoring environment variable %s: no such setting", var)
    return values, origin


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_config(path: Path | None, overrides: Mapping[str, Any], env: Mapping[str, str]) -> RunConfig:
    """Settings from ``path`` (YAML/TOML), then LEOPARD_* in ``env``, then ``overrides`` (CLI); validated.

    Raises ConfigError with one line naming the bad field and where its value came from.
    """
    from_file = _read_file(path) if path is not None else {}
    secret_names = _secret_env_names(from_file) | _secret_env_names(overrides)
    secret_names |= {v for k, v in env.items() if k.startswith(ENV_PREFIX) and k.endswith("_ENV")}
    from_env, env_origin = _env_overrides(env, secret_names)
    merged = _merge(_merge(from_file, from_env), overrides)
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as err:
        problem = err.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "config"
        if where in env_origin:
            origin = f"environment variable {env_origin[where]}"
        elif _dotted_in(overrides, problem["loc"]):
            origin = "command-line option"
        elif path is not None and _dotted_in(from_file, problem["loc"]):
            origin = f"config file {path}"
        else:
            origin = "settings"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown setting"
        raise ConfigError(f"{where}: {message} ({origin})", fix="see docs/configuration.md") from None


def _secret_env_names(data: Mapping[str, Any]) -> set[str]:
    """Values of ``*_env`` settings at any depth: variables holding secrets, never read as settings."""
    names: set[str] = set()
    for key, value in data.items():
        if isinstance(value, Mapping):
            names |= _secret_env_names(value)
        elif str(key).endswith("_env") and isinstance(value, str):
            names.add(value)
    return names


def _dotted_in(data: Mapping[str, Any], loc: tuple[int | str, ...]) -> bool:
    node: Any = data
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return False
    return True


def resolve_secret(
    env_name: str | None, file: Path | None, env: Mapping[str, str] | None = None
) -> str | None:
    """The secret held by the variable ``env_name`` (first) or the file ``file``; None when neither is set.

    The value is returned, never logged; a named variable that is unset, or an unreadable
    file, is a ConfigError naming the variable or file (not its content).
    """
    import os

    environ = os.environ if env is None else env
    if env_name:
        value = environ.get(env_name)
        if value:
            return value
        if file is None:
            raise ConfigError(
                f"environment variable {env_name} is not set", fix=f"export {env_name}=<secret>"
            )
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip() or None
        except OSError as err:
            message = f"secret file {file} cannot be read ({err.strerror})"
            raise ConfigError(message, fix="check the path") from None
    return None


def url_with_password(url: str, password_env: str | None) -> str:
    """``url`` with the password from the variable ``password_env`` filled in (URLs in config
    files never hold passwords; the value never reaches logs, which print the URL masked)."""
    password = resolve_secret(password_env, None)
    if not password:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).set(password=password).render_as_string(hide_password=False)
