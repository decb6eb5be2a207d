"""Typed configuration: the clinical rule thresholds (spec §3) and the run settings.

Every threshold of spec §3 lives in :class:`Rules` with the spec value as default,
so a site may override it in its config file while the defaults behave exactly as
written. Run settings (:class:`RunConfig`) come from a YAML/TOML file, then
``LEOPARD_*`` environment variables; secrets are never fields here, only the
*names* of the environment variables or files that hold them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Rules", "RunConfig"]


class Rules(BaseModel):
    """Thresholds of spec §3; defaults are normative."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rt_window_days: int = Field(180, description="RT course must start 0..N days after diagnosis")
    rt_merge_gap_days: int = Field(14, description="records merge while each starts <=N days after previous end")
    sequential_window_days: int = Field(120, description="platinum within [RT start - N, RT start) = sequential")
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
    small_cell_excludes_icd: bool = Field(True, description="C34.* is not NSCLC when small-cell histology exists")
    cutoff: dt.date | None = Field(None, description="data cutoff; default = latest date in the data")


class RunConfig(BaseModel):
    """Settings of one ``leopard-etl run`` (file + env overrides); filled in by the CLI."""

    model_config = ConfigDict(extra="forbid")

    fhir: list[str] = Field(default_factory=list)
    omop: str | None = None
    cdm_schema: str | None = None
    vocab_schema: str | None = None
    out: Path = Path("leopard-out")
    warehouse: str | None = None
    warehouse_schema: str | None = None
    mappings_extra: list[Path] = Field(default_factory=list)
    rules: Rules = Field(default_factory=Rules)
    small_cell_threshold: int = 5
    quarantine_max_pct: float = 100.0
    pseudonymise_key_env: str | None = None
    bearer_token_env: str | None = None
    bearer_token_file: Path | None = None
    log_json: bool = False
