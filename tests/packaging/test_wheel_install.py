"""Issue 12: installable as a site installs it.

`python -m build` → sdist and wheel; the wheel carries mappings/ and sql/; installed with
pip into a fresh venv (no source tree on the path, commands run from an empty folder) it
runs the demo, a FHIR file run, an OMOP run on DuckDB and on PostgreSQL, and the
scheduled incremental load of the Docker Compose service, each reproducing the synthetic
generator's ground truth. A missing PostgreSQL driver names the extra to install.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from wheel_site import REPO, Dists, Site, data_files, ok

pytestmark = pytest.mark.slow

PACKAGE_DATA = "leopard_etl/_data"


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _assert_ground_truth(out: Path, expected: Path) -> None:
    """patients.csv has the generator's rows: same count, same patients, same values."""
    got, want = _read(out / "patients.csv"), _read(expected)
    assert len(want) > 0
    assert len(got) == len(want), f"{len(got)} rows in {out / 'patients.csv'}, {len(want)} expected"
    assert list(got.columns) == list(want.columns)
    got = got.sort_values("patient_id").reset_index(drop=True)
    want = want.sort_values("patient_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    for name in ("results.json", "report.html"):
        assert (out / name).stat().st_size > 0, name


def _wheel_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}


# ---- the artefacts ------------------------------------------------------------------------------


def test_sdist_carries_the_data_folders(dists: Dists) -> None:
    assert data_files(dists.tree).keys() == data_files(REPO).keys()
    with tarfile.open(dists.sdist) as tf:
        names = {m.name.split("/", 1)[1] for m in tf.getmembers() if m.isfile() and "/" in m.name}
    missing = set(data_files(dists.tree)) - names
    assert not missing, f"not in the sdist: {sorted(missing)}"
    assert {"setup.py", "MANIFEST.in", "pyproject.toml", "README.md"} <= names


def test_wheel_carries_the_data_folders(dists: Dists) -> None:
    files = _wheel_files(dists.wheel)
    shipped = {n[len(PACKAGE_DATA) + 1 :]: b for n, b in files.items() if n.startswith(PACKAGE_DATA + "/")}
    assert shipped == data_files(dists.tree), (
        "leopard_etl/_data/ differs from the repository's mappings/ and sql/"
    )
    dist_info = dists.wheel.name.split("-py3")[0] + ".dist-info"
    assert {n.split("/")[0] for n in files} == {"leopard_etl", dist_info}
    assert "leopard_etl/__main__.py" in files
    assert "leopard-etl = leopard_etl.cli:main" in files[f"{dist_info}/entry_points.txt"].decode()
    assert "Provides-Extra: postgres" in files[f"{dist_info}/METADATA"].decode()


def test_wheel_from_sdist_equals_wheel_from_tree(dists: Dists) -> None:
    from_sdist, from_tree = _wheel_files(dists.wheel), _wheel_files(dists.tree_wheel)
    assert sorted(from_sdist) == sorted(from_tree)
    differ = [n for n in from_sdist if from_sdist[n] != from_tree[n]]
    assert not differ, f"contents differ: {differ}"


# ---- the installed tool ---------------------------------------------------------------------------


def test_installed_package_uses_its_own_data(site: Site) -> None:
    script = (
        "import leopard_etl, leopard_etl.paths as p; print(leopard_etl.__file__); print(p.mappings_dir())"
    )
    proc = ok(site.run("python", "-c", script))
    module, mappings = proc.stdout.split()
    assert Path(module).is_relative_to(site.venv), module
    assert Path(mappings) == Path(module).parent / "_data" / "mappings"
    assert not Path(module).is_relative_to(REPO)


def test_version(site: Site) -> None:
    version = re.match(r"leopard_etl-([^-]+)-", site.wheel.name).group(1)  # type: ignore[union-attr]
    assert ok(site.run("leopard-etl", "--version")).stdout.strip() == f"leopard-etl {version}"
    assert ok(site.run("python", "-m", "leopard_etl", "--version")).stdout.strip() == f"leopard-etl {version}"


def test_missing_postgres_driver_names_the_extra(site: Site) -> None:
    assert site.psycopg_before_extra == "None", "psycopg was importable before the postgres extra"
    proc = site.without_driver
    assert proc is not None
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("leopard-etl: error: ")
    assert "pip install 'leopard-etl[postgres]'" in errors[0]
    assert "check the --omop URL" not in errors[0]


def test_demo(site: Site) -> None:
    work = site.workdir("demo")
    ok(site.run("leopard-etl", "demo", "--patients", "60", "--out", "leopard-out", cwd=work))
    out = work / "leopard-out"
    _assert_ground_truth(out, out / "synthetic-fhir" / "expected" / "patients.csv")
    assert (out / "results-shareable.json").is_file() and (out / "quarantine.csv").is_file()


def test_fhir_files_run(site: Site) -> None:
    work = site.workdir("fhir")
    ok(site.run("leopard-etl", "synth", "--patients", "80", "--seed", "7", "--out", "synth", cwd=work))
    ok(site.run("leopard-etl", "run", "--fhir", "synth", "--out", "out", cwd=work))
    _assert_ground_truth(work / "out", work / "synth" / "expected" / "patients.csv")


def test_omop_duckdb_run(site: Site) -> None:
    work = site.workdir("omop-duckdb")
    ok(site.run("leopard-etl", "synth", "--patients", "80", "--seed", "8", "--format", "omop-duckdb",
                "--out", "synth", cwd=work))  # fmt: skip
    ok(site.run("leopard-etl", "run", "--omop", f"duckdb:///{work / 'synth' / 'omop.duckdb'}",
                "--cdm-schema", "cdm", "--vocab-schema", "vocab", "--out", "out", cwd=work))  # fmt: skip
    _assert_ground_truth(work / "out", work / "synth" / "expected" / "patients.csv")


# ---- PostgreSQL (skips locally without a server, never in CI: tests/conftest.py) ----------------


def _load_omop_csv(site: Site, folder: Path, url: str, schema: str) -> None:
    """Load `synth --format omop-csv` output into PostgreSQL with the installed package."""
    script = (
        "import sys, sqlalchemy as sa\n"
        "from pathlib import Path\n"
        "from leopard_etl.synth import load_omop_csv\n"
        "engine = sa.create_engine(sys.argv[1])\n"
        "with engine.begin() as conn:\n"
        "    load_omop_csv(conn, Path(sys.argv[2]), cdm_schema=sys.argv[3], vocab_schema=sys.argv[3])\n"
    )
    ok(site.run("python", "-c", script, url, folder, schema))


@pytest.mark.postgres
def test_omop_postgres_run(site: Site, pg_url: str) -> None:
    work = site.workdir("omop-pg")
    ok(site.run("leopard-etl", "synth", "--patients", "80", "--seed", "9", "--format", "omop-csv",
                "--out", "synth", cwd=work))  # fmt: skip
    _load_omop_csv(site, work / "synth", pg_url, "wheel_cdm")
    ok(site.run("leopard-etl", "run", "--omop", pg_url, "--cdm-schema", "wheel_cdm",
                "--vocab-schema", "wheel_cdm", "--out", "out", cwd=work))  # fmt: skip
    _assert_ground_truth(work / "out", work / "synth" / "expected" / "patients.csv")


def _compose_default(value: str) -> str:
    """``${VAR:-default}`` → default (what compose gives with the variable unset)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


@pytest.mark.postgres
def test_compose_service_command_loads_the_warehouse(site: Site, pg_url: str) -> None:
    """The `leopard-etl` service of docker/compose.yaml, its entrypoint, command, environment and
    config file, run with the installed wheel. Only the source and the warehouse differ: synthetic
    FHIR files instead of the HAPI server, this session's database instead of omop-db (both given
    as LEOPARD_* overrides, as a site would), and two ticks of the schedule without the wait."""
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    service = compose["services"]["leopard-etl"]
    assert service["entrypoint"] == ["leopard-etl-schedule"]
    mounts = {}
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[target] = source
    command = [str(REPO / "docker" / mounts[arg]) if arg in mounts else arg for arg in service["command"]]
    config = Path(command[command.index("--config") + 1])
    assert config.is_file(), config
    env = {k: _compose_default(str(v)) for k, v in service["environment"].items()}
    work = site.workdir("compose-service")
    ok(site.run("leopard-etl", "synth", "--patients", "60", "--seed", "12", "--out", "synth", cwd=work))
    env |= {
        "SCHEDULE_MAX_RUNS": "2",
        "SCHEDULE_INTERVAL_SECONDS": "0",
        "LEOPARD_FHIR": str(work / "synth"),
        "LEOPARD_WAREHOUSE": pg_url,
        "LEOPARD_WAREHOUSE_SCHEMA": "wheel_leopard",
        "LEOPARD_OUT": str(work / "out"),
    }
    proc = ok(site.run("sh", REPO / "docker" / "schedule.sh", *command, cwd=work, env=env))
    assert proc.stderr.count("leopard-etl-schedule: run") == 2, proc.stderr[-2000:]
    assert "run 2 ok" in proc.stderr
    _assert_ground_truth(work / "out", work / "synth" / "expected" / "patients.csv")
    status = ok(site.run("leopard-etl", "status", "--config", config, cwd=work, env=env)).stdout.splitlines()
    assert len(status) == 2, status
    assert all(" ok " in line for line in status), status
