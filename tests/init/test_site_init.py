"""``leopard-etl init``: the commented leopard.yaml is generated from RunConfig (every setting, its
default, its variable) and loads to the defaults, commented or not; the site mappings folder is
accepted by the loader and adds nothing; nothing is ever overwritten."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from leopard_etl.config import RunConfig, load_config
from leopard_etl.errors import ConfigError
from leopard_etl.mappings import load_mappings
from leopard_etl.site_init import (
    _DESCRIPTIONS,
    CONFIG_NAME,
    MAPPINGS_DIR,
    config_template,
    env_name,
    init,
    mapping_templates,
    uncomment,
)


def _leaves(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, field) of every setting, nested models walked."""
    for name, field in model.model_fields.items():
        here = (*path, name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaves(annotation, here)
        else:
            yield here, field


def _sections() -> set[str]:
    """The nested settings models (rules:, smart:, fhir_limits:, spark: …), from the model itself."""
    return {
        name
        for name, field in RunConfig.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def _defaults() -> dict[str, Any]:
    return RunConfig.model_validate({}).model_dump()


def test_init_writes_the_config_and_the_mappings_folder(tmp_path: Path) -> None:
    written = init(tmp_path / "site")
    folder = tmp_path / "site" / MAPPINGS_DIR
    assert sorted(p.relative_to(tmp_path / "site").as_posix() for p in written) == sorted(
        [CONFIG_NAME] + [f"{MAPPINGS_DIR}/{name}" for name in mapping_templates()]
    )
    text = (tmp_path / "site" / CONFIG_NAME).read_text(encoding="utf-8")
    assert f"set mappings_extra below to [{folder.resolve()}]" in text


def test_the_config_loads_to_the_defaults_commented_and_uncommented(tmp_path: Path) -> None:
    init(tmp_path)
    config = tmp_path / CONFIG_NAME
    assert load_config(config, {}, {}).model_dump() == _defaults()
    active = tmp_path / "active.yaml"
    active.write_text(uncomment(config.read_text(encoding="utf-8")), encoding="utf-8")
    settings = [line for line in active.read_text().splitlines() if re.match(r"^ *[a-z_]+:", line)]
    assert len(settings) == len(list(_leaves(RunConfig))) + len(_sections())  # + one line per section
    assert load_config(active, {}, {}).model_dump() == _defaults()


def test_every_setting_is_listed_with_its_variable_and_a_description() -> None:
    text = config_template()
    for path, field in _leaves(RunConfig):
        indent = "  " * (len(path) - 1)
        line = next((x for x in text.splitlines() if x.startswith(f"#{indent}{path[-1]}:")), None)
        assert line is not None, path
        assert line.rstrip().endswith(f"# {env_name(path)}"), line
        assert field.description or ".".join(path) in _DESCRIPTIONS, f"{path}: no description"
    fields = {".".join(p) for p, _ in _leaves(RunConfig)} | _sections()
    assert set(_DESCRIPTIONS) <= fields  # no description of a setting that no longer exists


def test_the_variables_named_in_the_file_are_the_ones_the_loader_reads() -> None:
    defaults = RunConfig.model_validate({})
    for path, _ in _leaves(RunConfig):
        value: Any = defaults
        for part in path:
            value = getattr(value, part)
        if value is None:
            continue
        raw = ",".join(value) if isinstance(value, tuple | list) else str(value).lower() if isinstance(
            value, bool) else str(value)
        if isinstance(value, tuple | list) and not value:
            raw = "[]"
        cfg = load_config(None, {}, {env_name(path): raw})
        got: Any = cfg
        for part in path:
            got = getattr(got, part)
        assert got == value, (env_name(path), raw, got)


def test_the_site_mappings_folder_loads_and_adds_nothing(tmp_path: Path) -> None:
    init(tmp_path)
    folder = tmp_path / MAPPINGS_DIR
    base = load_mappings()
    site = load_mappings(extra_dirs=[folder])
    for name in ("systems", "entries", "group_meta", "sites", "drug_names", "site_report_as", "stage_values"):
        assert getattr(site, name) == getattr(base, name), name
    assert set(site.files) - set(base.files) <= set(mapping_templates())


def test_the_examples_load_when_uncommented(tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    folder.mkdir()
    for name, text in mapping_templates().items():
        (folder / name).write_text(uncomment(text), encoding="utf-8")
    site = load_mappings(extra_dirs=[folder])
    assert "https://hospital.example/fhir/CodeSystem/catalogue" in site.systems["hospital"].fhir
    assert "https://hospital.example/fhir/CodeSystem/icd10" in site.systems["icd10"].fhir
    added = {(e.group, e.system, e.code) for e in site.entries}
    assert {("radiotherapy", "hospital", "RT-IMRT"), ("lesion", "hospital", "MET-LIV")} <= added
    assert "durvalumabum" in site.drug_names["durvalumab"]
    assert any(s[0] == "liver" and s[1] == "hospital" and s[2] == "MET-LIV" for s in site.sites)


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text("out: mine\n")
    with pytest.raises(ConfigError) as err:
        init(tmp_path)
    assert str(err.value).count("\n") == 0
    assert f"{tmp_path / CONFIG_NAME} already exists; init never overwrites" in str(err.value)
    assert (tmp_path / CONFIG_NAME).read_text() == "out: mine\n"
    assert not (tmp_path / MAPPINGS_DIR).exists()  # nothing written when anything is in the way
    (tmp_path / CONFIG_NAME).unlink()
    init(tmp_path)
    with pytest.raises(ConfigError, match="already exist; init never overwrites"):
        init(tmp_path)
