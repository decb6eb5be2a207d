"""The container files, checked without a Docker engine (none on our machines or in CI).

- docker/compose.yaml validates against the Compose Specification JSON schema
  (compose-spec.json beside this file: the schema Docker Compose v2.40.3 embeds, from the
  compose-spec project, Apache-2.0; vendored because no package in our dependencies ships it);
- the Dockerfile: multi-stage, non-root USER, ENTRYPOINT leopard-etl, VOLUMEs, no secret;
  its build stage copies exactly what the wheel tests build from (wheel_site.BUILD_INPUTS);
- .dockerignore lets in every file the Dockerfile copies and nothing else by default;
- docker/schedule.sh (the compose service's loop) on each exit code, with a stand-in leopard-etl.

What runs the image's install and entrypoint commands is test_wheel_install.py.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url
from wheel_site import BUILD_INPUTS, REPO

HERE = Path(__file__).resolve().parent
SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PSEUDONYM", re.I)


# ---- Dockerfile --------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _instructions(path):
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def _copy_sources(args: str) -> tuple[list[str], str, dict[str, str]]:
    """Sources, destination and --flags of a COPY (shell form)."""
    words = shlex.split(args)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1], paths[-1], flags


def test_dockerfile_is_multistage_and_runs_leopard_etl_as_non_root() -> None:
    stages = _stages(REPO / "Dockerfile")
    assert len(stages) >= 2, "multi-stage: build the wheel in one stage, install it in another"
    final = dict(stages[-1])  # last value of each instruction in the runtime stage
    user = final.get("USER", "root").split(":")[0]
    assert user not in ("", "root", "0"), f"runtime USER is {user!r}"
    assert json.loads(final["ENTRYPOINT"]) == ["leopard-etl"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "leopard-etl" in scripts, "the ENTRYPOINT is the wheel's console script"
    volumes = set(json.loads(final["VOLUME"]))
    assert {"/config", "/out"} <= volumes
    runtime_runs = " ".join(a for k, a in stages[-1] if k == "RUN")
    assert "python -m venv" in runtime_runs and ".whl)[${EXTRAS}]" in runtime_runs
    assert any(k == "ARG" and a == "EXTRAS=postgres" for k, a in stages[-1])
    build_runs = " ".join(a for k, a in stages[0] if k == "RUN")
    assert "python -m build --outdir /dist ." in build_runs  # as conftest.dists: sdist, then wheel from it


def test_dockerfile_bakes_in_no_secret() -> None:
    for keyword, args in _instructions(REPO / "Dockerfile"):
        if keyword in ("ENV", "ARG", "LABEL"):
            assert not SECRET_WORDS.search(args), f"{keyword} {args}"
        if keyword in ("COPY", "ADD"):
            sources, _, _ = _copy_sources(args)
            assert not any(re.search(r"(^|/)\.env|secret|\.pem$|\.key$", s) for s in sources), args


def test_build_stage_copies_what_the_wheel_tests_build_from() -> None:
    build = _stages(REPO / "Dockerfile")[0]
    copied = []
    for keyword, args in build:
        if keyword == "COPY":
            sources, _, flags = _copy_sources(args)
            assert "from" not in flags
            copied += [s.rstrip("/") for s in sources]
    assert sorted(copied) == sorted(BUILD_INPUTS)


def test_dockerignore_lets_in_exactly_what_is_copied() -> None:
    lines = [
        ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip() and ln[0] != "#"
    ]
    assert lines[0] == "*", "allow-list: ignore everything, then let in what the Dockerfile copies"
    allowed = [ln[1:].rstrip("/") for ln in lines if ln.startswith("!")]
    for keyword, args in _instructions(REPO / "Dockerfile"):
        if keyword != "COPY":
            continue
        sources, _, flags = _copy_sources(args)
        if "from" in flags:
            continue
        for src in sources:
            src = src.rstrip("/")
            assert (REPO / src).exists(), src
            assert any(src == a or src.startswith(a + "/") for a in allowed), f"{src} is ignored"
    for must_stay_out in (".venv", ".venv-sekmet", "leopard-out", ".git", "tests", ".env"):
        assert not any(must_stay_out == a or must_stay_out.startswith(a + "/") for a in allowed)


# ---- docker/compose.yaml ------------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())


def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads((HERE / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_compose_file_follows_the_compose_spec() -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(_compose())
    ]
    assert not errors, "\n".join(errors)


def test_the_schema_check_rejects_a_broken_service() -> None:
    """The vendored schema really constrains services (a typo'd key, a value outside an enum)."""
    broken = copy.deepcopy(_compose())
    broken["services"]["leopard-etl"]["entrypiont"] = ["x"]
    broken["services"]["leopard-etl"]["depends_on"]["omop-db"]["condition"] = "service_ready"
    messages = [e.message for e in _validator().iter_errors(broken)]
    assert any("entrypiont" in m for m in messages), messages
    assert any("'service_ready'" in m for m in messages), messages


def test_compose_service_runs_the_image_on_a_schedule() -> None:
    compose = _compose()
    service = compose["services"]["leopard-etl"]
    assert service["profiles"] == ["etl"], "a plain `up` (and the Docker tests) must not start it"
    context = (REPO / "docker" / service["build"]["context"]).resolve()
    assert context == REPO and (context / service["build"]["dockerfile"]).is_file()
    assert service["entrypoint"] == ["leopard-etl-schedule"]
    copies = [_copy_sources(a) for k, a in _stages(REPO / "Dockerfile")[-1] if k == "COPY"]
    assert (["docker/schedule.sh"], "/usr/local/bin/leopard-etl-schedule") in [(s, d) for s, d, _ in copies]
    assert os.access(REPO / "docker" / "schedule.sh", os.X_OK), "COPY keeps the mode: it must be executable"
    assert service["command"][:3] == ["run", "--config", "/config/leopard.yaml"]
    assert "--incremental" in service["command"]
    assert {"hapi", "omop-db"} <= set(service["depends_on"])
    for source, target, *_ in (v.split(":") for v in service["volumes"]):
        if source.startswith("."):
            assert (REPO / "docker" / source).is_file(), source
        else:
            assert source in compose["volumes"], source
        assert target in ("/config/leopard.yaml", "/out")
    for name, value in service["environment"].items():
        if SECRET_WORDS.search(name):
            assert re.fullmatch(r"\$\{[A-Z_]+:-[^}]*\}", str(value)), f"{name} must come from the environment"
    config = yaml.safe_load((REPO / "docker" / "leopard.yaml").read_text())
    assert config["fhir"] == ["http://hapi:8080/fhir"]
    url = make_url(config["warehouse"])
    assert url.host == "omop-db" and url.password is None, "the password comes from warehouse_password_env"
    assert config["warehouse_password_env"] in service["environment"]


# ---- docker/schedule.sh -------------------------------------------------------------------------


def _schedule(
    tmp_path: Path, codes: list[int], max_runs: int = 0
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run schedule.sh with a stand-in `leopard-etl` that exits with ``codes`` in turn."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "codes").write_text("".join(f"{c}\n" for c in codes))
    fake = bin_dir / "leopard-etl"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{tmp_path}/calls"\n'
        f'code=$(head -n 1 "{tmp_path}/codes"); sed -i 1d "{tmp_path}/codes"\n'
        'exit "${code:-99}"\n'
    )
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SCHEDULE_INTERVAL_SECONDS": "0",
        "SCHEDULE_RETRY_SECONDS": "0",
        "SCHEDULE_MAX_RUNS": str(max_runs),
    }
    proc = subprocess.run(
        ["sh", str(REPO / "docker" / "schedule.sh"), "run", "--config", "/config/leopard.yaml"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return proc, calls


@pytest.mark.parametrize(
    ("codes", "max_runs", "exit_code", "runs"),
    [
        ([0, 0], 2, 0, 2),  # ok, ok: ends only because of SCHEDULE_MAX_RUNS
        ([3, 5, 0], 3, 0, 3),  # unreachable -> retry, lock held -> skip: both go on
        ([0, 2, 0], 0, 2, 2),  # configuration error: stop, a person must fix it
        ([4, 0], 0, 4, 1),  # quarantine over threshold: stop
        ([70, 0], 0, 70, 1),  # internal error: stop
        ([1, 0], 0, 1, 1),  # anything else: stop with it
    ],
)
def test_schedule_loop_exit_codes(
    tmp_path: Path, codes: list[int], max_runs: int, exit_code: int, runs: int
) -> None:
    proc, calls = _schedule(tmp_path, codes, max_runs)
    assert proc.returncode == exit_code, proc.stderr
    assert calls == ["run --config /config/leopard.yaml"] * runs
    assert proc.stderr.count("leopard-etl-schedule: run") == runs, proc.stderr
