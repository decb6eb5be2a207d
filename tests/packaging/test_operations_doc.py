"""docs/operations.md "Scheduling": the cron line, the Kubernetes CronJob and the Airflow task
handle every exit code as the table there says. Each snippet is run (cron, the container
command, the Airflow task body with Airflow stubbed) against a stand-in `leopard-etl` that
exits with the codes given; Kubernetes' own part (podFailurePolicy) is checked as data.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from wheel_site import REPO

DOC = REPO / "docs" / "operations.md"


def _blocks(lang: str) -> list[str]:
    text = DOC.read_text()
    section = text[text.index("## Scheduling") : text.index("## Status")]
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def _fake_leopard(tmp_path: Path, codes: list[int]) -> Path:
    """A `leopard-etl` that records its arguments and exits with ``codes`` in turn."""
    (tmp_path / "codes").write_text("".join(f"{c}\n" for c in codes))
    fake = tmp_path / "leopard-etl"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{tmp_path}/calls"\n'
        f'code=$(head -n 1 "{tmp_path}/codes"); sed -i 1d "{tmp_path}/codes"\n'
        'exit "${code:-99}"\n'
    )
    fake.chmod(0o755)
    return fake


def _calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


# ---- cron -------------------------------------------------------------------------------------


def _cron_command() -> str:
    (block,) = _blocks("cron")
    lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0].startswith("MAILTO=")
    (job,) = lines[1:]
    fields = job.split(None, 6)  # m h dom mon dow user command (/etc/cron.d format)
    assert fields[:5] == ["15", "2", "*", "*", "*"] and fields[5] == "leopard"
    assert "%" not in fields[6], "cron turns % into a newline"
    return fields[6]


@pytest.mark.parametrize(
    ("codes", "runs", "alert"),
    [
        ([0], 1, None),
        ([5], 1, None),
        ([3, 0], 2, None),  # unreachable once, then ok: retried, no mail
        ([3, 3, 3], 3, "exit 3"),  # still unreachable after 3 tries: mail
        ([2], 1, "exit 2"),
        ([4], 1, "exit 4"),
        ([70], 1, "exit 70"),
    ],
)
def test_cron_line(tmp_path: Path, codes: list[int], runs: int, alert: str | None) -> None:
    fake = _fake_leopard(tmp_path, codes)
    secret = tmp_path / "wh"
    secret.write_text("pw")
    command = (
        _cron_command()
        .replace("/opt/leopard/bin/leopard-etl", str(fake))
        .replace("/run/secrets/leopard-wh", str(secret))
        .replace("/var/log/leopard/run.jsonl", str(tmp_path / "run.jsonl"))
        .replace("cd /srv/leopard", f"cd {tmp_path}")
        .replace("sleep 600", "sleep 0")
    )
    proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60, check=False)
    assert proc.stderr == ""
    assert len(_calls(tmp_path)) == runs
    assert _calls(tmp_path)[0] == "run --config /etc/leopard/leopard.yaml --incremental --json-logs"
    if alert is None:
        assert proc.stdout == "", "cron would mail this"
    else:
        assert alert in proc.stdout and proc.stdout.count("\n") == 1


# ---- Kubernetes -------------------------------------------------------------------------------


def _cronjob() -> dict[str, Any]:
    (block,) = _blocks("yaml")
    manifest = yaml.safe_load(block)
    assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "CronJob"
    return manifest


def test_cronjob_manifest_fails_fast_on_codes_a_person_must_fix() -> None:
    spec = _cronjob()["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy needs it
    assert job["backoffLimit"] >= 1  # exit 3 is retried
    (rule,) = job["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"] == {"containerName": "leopard-etl", "operator": "In", "values": [2, 4, 70]}
    (container,) = pod["containers"]
    assert container["name"] == "leopard-etl"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/config", "/out", "/tmp"} <= mounts
    for env in container["env"]:
        assert "value" not in env, f"{env['name']}: secrets come from a Secret, not the manifest"


@pytest.mark.parametrize(("code", "pod_exit"), [(0, 0), (5, 0), (3, 3), (2, 2), (4, 4), (70, 70)])
def test_cronjob_container_command(tmp_path: Path, code: int, pod_exit: int) -> None:
    (container,) = _cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    _fake_leopard(tmp_path, [code])
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["/bin/sh", "-c", *container["args"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == pod_exit
    assert _calls(tmp_path) == ["run --config /config/leopard.yaml --incremental --json-logs"]


# ---- Airflow ----------------------------------------------------------------------------------


class _Skip(Exception):
    pass


class _Fail(Exception):
    pass


class _Retry(Exception):
    pass


def _airflow_task(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Execute the DAG file with Airflow stubbed; return its namespace, the task body and its options."""
    tasks: list[tuple[Any, dict[str, Any]]] = []
    airflow = types.ModuleType("airflow")
    decorators = types.ModuleType("airflow.decorators")
    exceptions = types.ModuleType("airflow.exceptions")
    models = types.ModuleType("airflow.models")
    decorators.dag = lambda **kw: lambda f: f  # type: ignore[attr-defined]

    def task(**options: Any) -> Any:
        def register(f: Any) -> Any:
            tasks.append((f, options))
            return lambda: None

        return register

    decorators.task = task  # type: ignore[attr-defined]
    exceptions.AirflowSkipException = _Skip  # type: ignore[attr-defined]
    exceptions.AirflowFailException = _Fail  # type: ignore[attr-defined]
    exceptions.AirflowException = _Retry  # type: ignore[attr-defined]
    models.Variable = types.SimpleNamespace(get=lambda name: "pw")  # type: ignore[attr-defined]
    for name, module in [
        ("airflow", airflow),
        ("airflow.decorators", decorators),
        ("airflow.exceptions", exceptions),
        ("airflow.models", models),
    ]:
        monkeypatch.setitem(sys.modules, name, module)
    pendulum = types.ModuleType("pendulum")  # Airflow's dependency; only its two constructors are used
    pendulum.datetime = lambda *a, **kw: None  # type: ignore[attr-defined]
    pendulum.duration = lambda **kw: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pendulum", pendulum)
    (block,) = _blocks("python")
    namespace: dict[str, Any] = {"__name__": "leopard_dag"}
    exec(compile(block, str(DOC), "exec"), namespace)
    (body, options) = tasks[0]
    return namespace, body, options


@pytest.mark.parametrize(
    ("code", "outcome"), [(0, None), (5, _Skip), (3, _Retry), (2, _Fail), (4, _Fail), (70, _Fail)]
)
def test_airflow_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, outcome: type | None
) -> None:
    namespace, body, options = _airflow_task(monkeypatch)
    assert options["retries"] >= 1
    assert namespace["COMMAND"][1:] == [
        "run",
        "--config",
        "/etc/leopard/leopard.yaml",
        "--incremental",
        "--json-logs",
    ]
    namespace["COMMAND"] = [str(_fake_leopard(tmp_path, [code])), *namespace["COMMAND"][1:]]
    if outcome is None:
        body()
    else:
        with pytest.raises(outcome, match=f"exit {code}"):
            body()
    assert len(_calls(tmp_path)) == 1
